"""Where scrying's transcoder feature graph spends its time, and its peak memory on long prompts.

    .venv/bin/python benchmarks/feature_graph_profile.py --transcoders /tmp/tc-quick \
        [--profile-lengths 15 256] [--memory-lengths 256 1024] [--max-feature-nodes 200] [--batch-size 16]
    .venv/bin/python benchmarks/feature_graph_profile.py [--transcoders DIR | --random-transcoders] \
        --validation-lengths 15 --profile-lengths --memory-lengths [--old-path]

**Validation cost** (``--validation-lengths``): ``trace`` of a prompt of about N tokens without
validation (``trace(..., validate=False)``, what ``scrying trace --no-validate`` runs) and with
it (``ValidationConfig()``'s defaults), wall time, after one warm-up trace, the median of
``--repeats`` runs of each (alternated; this shared 2-core machine's speed drifts by 20% over
minutes, so one run says little near a target); the validation's
phases (intervened passes per unfreezing stage, the activation x gradient baseline, and a clean run
where validation makes its own: ``trace`` shares the build's)
timed by wrapping the module's functions. Neurons without ``--transcoders``;
``--random-transcoders`` builds a seeded random TopK set, by default of the ``default`` preset's
shape (4,096 features, TopK-32 and a skip connection per layer; ``--random-features 8192
--random-k 64``: the ``recipe``'s); the costs of a trained set, not its graph.
``--old-path`` also times the path validation took before it read target columns alone: each
stage and scale through :func:`~scrying.attribution.replacement.intervention_pass`
(``last_only``, the whole vocabulary at the last position, every pass from the first block,
dense features), 8 rows a pass, and prints the ratio.

**Profile** (one process, model loaded once, one unprofiled graph build first to warm up): ``trace`` (build, scores, pruning, validation) and
``write_trace`` (JSON + HTML) under cProfile on a prompt of about N tokens, split into phases by
cumulative time: clean run, logit targets, feature selection (its forward and backward), the
shared forward pass of the edges, the logits read at the last position, the backward passes and
their bookkeeping, scores + pruning, validation, export.

**Memory**: for each length, a fresh process builds the graph (``build_feature_graph``, no
validation) and reports its peak resident memory (``ru_maxrss``, model load included), the rise
during the build (sampled every 5 ms) and the build's wall time.

Prompts of N tokens are cut from a fixed English text (BOS included in N;
``benchmarks/measure.py``, with the memory sampler).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from measure import PeakSampler, peak_rss_kb, prompt_of  # noqa: E402


def _settings(args):
    from scrying.attribution.feature_graph import FeatureGraphConfig

    return FeatureGraphConfig(max_feature_nodes=args.max_feature_nodes, batch_size=args.batch_size)


def _load(args):
    import torch

    from scrying.models import load_model
    from scrying.transcoders import TranscoderBasis, read_transcoders

    torch.set_num_threads(args.threads)
    return load_model(args.model), TranscoderBasis(read_transcoders(args.transcoders))


def _cum(stats: pstats.Stats, name: str, file_part: str = "", caller: str | None = None) -> float:
    """Cumulative seconds of functions named ``name`` (in a file containing ``file_part``),
    only the calls made from ``caller`` when given."""
    total = 0.0
    for (file, _, func), (_, _, _, ct, callers) in stats.stats.items():  # type: ignore[attr-defined]
        if func != name or file_part not in file:
            continue
        if caller is None:
            total += ct
        else:
            total += sum(v[3] for (cf, _, cfunc), v in callers.items() if cfunc == caller)
    return total


def profile(args) -> None:
    from scrying.attribution.feature_graph import build_feature_graph
    from scrying.attribution.trace import TraceConfig, trace, write_trace
    from scrying.prompts import tokenize

    model, basis = _load(args)
    from scrying.attribution.validation import ValidationConfig

    config = TraceConfig(features=_settings(args), validation=ValidationConfig(top_k=args.validate_top))
    for n in args.profile_lengths:
        prompt = prompt_of(model.tokenizer, n)
        n_pos = tokenize(model, prompt).shape[-1]
        build_feature_graph(model, prompt, None, config.features, basis=basis)  # warm-up, not profiled
        prof = cProfile.Profile()
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            prof.enable()
            result = trace(model, prompt, config, basis=basis)
            write_trace(result, html_path=Path(tmp) / "g.html", json_path=Path(tmp) / "g.json")
            prof.disable()
            total = time.perf_counter() - start
        st = pstats.Stats(prof)
        build = _cum(st, "build_feature_graph")
        # clean_run is wrapped by torch.no_grad(): its caller in the build is the wrapper.
        clean = _cum(st, "decorate_context", "_contextlib", caller="build_feature_graph")
        targets = _cum(st, "logit_targets")
        select = _cum(st, "select_features")
        fwd = _cum(st, "final_resid", caller="build_feature_graph")
        logit_reads = _cum(st, "frozen_demeaned_logits")
        bwd = _cum(st, "backward", "_tensor.py", caller="build_feature_graph")
        rows = {
            "graph build": build,
            "  clean run": clean,
            "  logit targets": targets,
            "  feature selection (1 forward + 1 backward)": select,
            "  edges: the shared forward pass (batch copies, up to the last block)": fwd,
            "  edges: logit targets at the last position (frozen final norm, their unembedding columns)": logit_reads,
            "  edges: backward passes (one per batch of targets)": bwd,
            "  edges: the rest (bookkeeping; build minus the above, approximate)": build - clean - targets - select - fwd - logit_reads - bwd,
            "scores (replacement, completeness)": _cum(st, "labelled_scores"),
            "pruning": _cum(st, "prune", "influence") + _cum(st, "pruned_graph"),
            "validation": _cum(st, "validate_feature_graph"),
            "export (JSON + HTML)": _cum(st, "write_trace"),
        }
        sys.stdout.write(f"profile, {n_pos} tokens, {args.max_feature_nodes} feature nodes, batch {args.batch_size}, "
                         f"validation of the top {args.validate_top} nodes: "
                         f"{total:.1f} s in all (under cProfile)\n")
        for k, v in rows.items():
            sys.stdout.write(f"  {k:<72} {v:7.2f} s  {100 * v / total:5.1f}%\n")


def _random_set(model, seed: int = 0, n_features: int = 4096, k: int = 32):
    """A seeded random TopK transcoder set (default: the ``default`` preset's shape; the
    ``recipe``'s is 8,192 features, TopK-64) with a skip connection (timing only)."""
    import torch

    from scrying.transcoders import Transcoder, TranscoderSet, TranscoderSpec

    gen = torch.Generator().manual_seed(seed)
    d = model.cfg.d_model
    out = []
    for _ in range(model.cfg.n_layers):
        tc = Transcoder(TranscoderSpec(d_model=d, n_features=n_features, activation="topk", k=k, skip=True))
        tc.load_tensors({name: torch.randn(p.shape, generator=gen) / d**0.5 for name, p in tc.tensors().items()})
        out.append(tc)
    return TranscoderSet(out, "random")


def validation_cost(args) -> None:
    import torch

    import scrying.attribution.validation as validation
    from scrying.attribution.trace import TraceConfig, trace
    from scrying.attribution.validation import ValidationConfig
    from scrying.models import load_model
    from scrying.prompts import tokenize
    from scrying.transcoders import TranscoderBasis, read_transcoders

    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    if args.transcoders is not None:
        basis, what = TranscoderBasis(read_transcoders(args.transcoders)), f"transcoders {args.transcoders}"
    elif args.random_transcoders:
        basis = TranscoderBasis(_random_set(model, n_features=args.random_features, k=args.random_k))
        what = f"random TopK-{args.random_k} transcoders, {args.random_features:,} features (timing only)"
    else:
        basis, what = None, "neurons"
    phases: dict[str, list[float]] = {}  # name -> [wall, CPU] seconds

    def timed(name, fn, label=None):
        def wrapper(*a, **k):
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*a, **k)
            finally:
                key = label(*a, **k) if label else name
                spent = phases.setdefault(key, [0.0, 0.0])
                spent[0] += time.perf_counter() - start
                spent[1] += time.process_time() - cpu
        return wrapper

    originals = {n: getattr(validation, n) for n in ("clean_run", "_measure", "_real_gradient")}
    validation.clean_run = timed("  clean run", originals["clean_run"])
    validation._measure = timed("", originals["_measure"], lambda *a, **k: f"  intervened passes, unfrozen {sorted(a[6]) or 'nothing'}, {len(a[4])} scale(s)")
    validation._real_gradient = timed("  activation x gradient baseline (1 forward + 1 backward)", originals["_real_gradient"])
    validation.validate_feature_graph = timed("validation", validation.validate_feature_graph)
    import scrying.attribution.trace as trace_module

    trace_module.validate_feature_graph = validation.validate_feature_graph
    vconfig = ValidationConfig()
    with_v = TraceConfig(features=_settings(args), validation=vconfig)
    for n in args.validation_lengths:
        prompt = prompt_of(model.tokenizer, n)
        n_pos = tokenize(model, prompt).shape[-1]
        trace(model, prompt, with_v, basis=basis, validate=False)  # warm-up
        bare, fulls = [], []
        phases.clear()
        for _ in range(args.repeats):  # alternated, so that a slow spell of the machine hits both
            start, cpu = time.perf_counter(), time.process_time()
            trace(model, prompt, with_v, basis=basis, validate=False)
            bare.append((time.perf_counter() - start, time.process_time() - cpu))
            start, cpu = time.perf_counter(), time.process_time()
            result = trace(model, prompt, with_v, basis=basis)
            fulls.append((time.perf_counter() - start, time.process_time() - cpu))
        bare.sort()
        fulls.sort()
        mid = args.repeats // 2
        sys.stdout.write(f"validation cost, {n_pos} tokens, {what}, {args.max_feature_nodes} feature nodes, "
                         f"validation of the top {result.validation.main.n} nodes at scales {vconfig.scales}, "
                         f"chunk {vconfig.chunk}, {args.threads} threads, median of {args.repeats} runs "
                         f"(phases: mean per run):\n")
        sys.stdout.write(f"  {'(wall s, CPU s of all threads)':<86}\n")
        sys.stdout.write(f"  {'trace without validation':<80} {bare[mid][0]:7.2f} {bare[mid][1]:7.2f}\n")
        sys.stdout.write(f"  {'trace with validation':<80} {fulls[mid][0]:7.2f} {fulls[mid][1]:7.2f}\n")
        sys.stdout.write(f"  {'trace with validation, every run (wall s)':<80} {' '.join(f'{w:.2f}' for w, _ in fulls)}\n")
        for k, (wall, cpu) in phases.items():
            sys.stdout.write(f"  {k:<80} {wall / args.repeats:7.2f} {cpu / args.repeats:7.2f}\n")
        if args.old_path:
            old, old_cpu = _old_path(model, result, basis, vconfig)
            new = sum(v[0] for k, v in phases.items() if "intervened passes" in k)
            new_cpu = sum(v[1] for k, v in phases.items() if "intervened passes" in k)
            sys.stdout.write(f"  old path (intervention_pass, last_only, whole vocabulary, 8 rows a pass), the same "
                             f"interventions: {old:.2f} s wall, {old_cpu:.2f} s CPU; new {new:.2f} s wall, {new_cpu:.2f} s CPU: "
                             f"ratio new/old {new / old:.3f} wall, {new_cpu / old_cpu:.3f} CPU\n")


def _old_path(model, result, basis, vconfig) -> tuple[float, float]:
    """Seconds the interventions of the last validation took on the path validation used before
    (every stage and scale through ``intervention_pass(last_only=True)``, 8 rows a pass)."""
    import torch

    from scrying.attribution.replacement import Intervention, clean_run, intervention_pass
    from scrying.attribution.validation import stages
    from scrying.metrics import demeaned_logit
    from scrying.prompts import tokenize

    graph = result.graph
    clean = clean_run(model, tokenize(model, graph.prompt), basis or None)
    nodes = [graph.nodes[graph.index[i]] for i in result.validation.main.table.node_id]
    target = next(n for n in graph.nodes if n.kind == "logit" and n.is_target)
    live = torch.zeros_like(clean.features, dtype=torch.bool)
    for node in (n for n in graph.nodes if n.kind == "feature"):
        live[node.layer, node.pos, node.feature] = True
    steps = stages(clean.basis)
    start, cpu = time.perf_counter(), time.process_time()
    for i, (_, unfrozen) in enumerate(steps):
        for scale in vconfig.scales if i in (0, len(steps) - 1) else vconfig.scales[:1]:
            rows = [Intervention()] + [
                Intervention(features={(n.layer, n.pos, n.feature): scale * float(clean.features[n.layer, n.pos, n.feature])})
                for n in nodes
            ]
            for lo in range(0, len(rows), 8):
                logits, _ = intervention_pass(model, clean, rows[lo : lo + 8], live=live, unfrozen=unfrozen, last_only=True)
                demeaned_logit(logits[:, -1].double(), target.feature)
    return time.perf_counter() - start, time.process_time() - cpu


def memory_child(args) -> None:
    import torch

    from scrying.attribution.feature_graph import build_feature_graph
    from scrying.prompts import tokenize

    model, basis = _load(args)
    prompt = prompt_of(model.tokenizer, args.length)
    n_pos = tokenize(model, prompt).shape[-1]
    with PeakSampler() as mem:
        start = time.perf_counter()
        graph = build_feature_graph(model, prompt, None, _settings(args), basis=basis)
        seconds = time.perf_counter() - start
    del graph
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    sys.stdout.write(json.dumps({
        "n_pos": n_pos, "seconds": seconds, "rise_bytes": mem.peak - mem.before,
        "before_bytes": mem.before, "peak_rss_kb": peak_rss_kb(),
    }) + "\n")


def memory(args) -> None:
    for n in args.memory_lengths:
        cmd = [sys.executable, __file__, "--memory-child", str(n), "--transcoders", str(args.transcoders),
               "--model", args.model, "--max-feature-nodes", str(args.max_feature_nodes),
               "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
        result = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
        if result.returncode:
            sys.stdout.write(f"memory, {n} tokens: failed (exit {result.returncode})\n{result.stderr[-2000:]}\n")
            continue
        r = json.loads(result.stdout.strip().splitlines()[-1])
        sys.stdout.write(
            f"memory, {r['n_pos']} tokens: peak RSS {r['peak_rss_kb'] / 1e6:.2f} GB (model load included), "
            f"rise during the graph build {r['rise_bytes'] / 1e9:.2f} GB over {r['before_bytes'] / 1e9:.2f} GB; "
            f"build {r['seconds']:.1f} s\n"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--transcoders", type=Path, help="a transcoder directory (profile and memory need one)")
    p.add_argument("--random-transcoders", action="store_true", help="validation cost: a random TopK set")
    p.add_argument("--random-features", type=int, default=4096, help="with --random-transcoders (the recipe: 8192)")
    p.add_argument("--random-k", type=int, default=32, help="with --random-transcoders (the recipe: 64)")
    p.add_argument("--validation-lengths", type=int, nargs="*", default=[], help="validation cost at these lengths")
    p.add_argument("--repeats", type=int, default=3, help="validation cost: timed traces of each kind (the median is reported)")
    p.add_argument("--old-path", action="store_true", help="validation cost: also time the old intervention path")
    p.add_argument("--model", default="gemma-3-270m")
    p.add_argument("--profile-lengths", type=int, nargs="*", default=[15, 256])
    p.add_argument("--memory-lengths", type=int, nargs="*", default=[256, 1024])
    p.add_argument("--max-feature-nodes", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--validate-top", type=int, default=100, help="nodes checked by validation in the profile (trace's default)")
    p.add_argument("--memory-child", type=int, dest="length", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.length is not None:
        memory_child(args)
        return
    if args.validation_lengths:
        validation_cost(args)
    if (args.profile_lengths or args.memory_lengths) and args.transcoders is None:
        p.error("--profile-lengths and --memory-lengths need --transcoders (or pass them empty)")
    if args.profile_lengths:
        profile(args)
    if args.memory_lengths:
        memory(args)


if __name__ == "__main__":
    main()
