"""Where scrying's transcoder feature graph spends its time, and its peak memory on long prompts.

    .venv/bin/python benchmarks/feature_graph_profile.py --transcoders /tmp/tc-quick \
        [--profile-lengths 15 256] [--memory-lengths 256 1024] [--max-feature-nodes 200] [--batch-size 16]

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
    p.add_argument("--transcoders", type=Path, required=True)
    p.add_argument("--model", default="gemma-3-270m")
    p.add_argument("--profile-lengths", type=int, nargs="*", default=[15, 256])
    p.add_argument("--memory-lengths", type=int, nargs="*", default=[256, 1024])
    p.add_argument("--max-feature-nodes", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--validate-top", type=int, default=50, help="nodes checked by validation in the profile (trace's default)")
    p.add_argument("--memory-child", type=int, dest="length", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.length is not None:
        memory_child(args)
        return
    if args.profile_lengths:
        profile(args)
    if args.memory_lengths:
        memory(args)


if __name__ == "__main__":
    main()
