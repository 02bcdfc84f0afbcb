"""scrying's transcoder feature graph against circuit-tracer 0.5.0: same model, transcoders, prompt.

One run prints (1) that both tools run the same model: the two tokenizations and the largest
logit difference on the prompt; (2) edge agreement on the edges both graphs have; (3) the time
ratio scrying / circuit-tracer of building the graph; (4) the peak-memory ratio.

    .venv/bin/python benchmarks/vs_circuit_tracer.py --transcoders /tmp/tc-quick \
        [--prompt "Fact: the capital of the state containing Dallas is" | --prompt-tokens 256]
        [--max-feature-nodes 200] [--batch-size 16] [--repeat 2] [--threads 2]
        [--ct-python /work/ct-venv/bin/python]

On a machine shared with a long job, start it under ``nice`` and with
``echo 1000 > /proc/self/oom_score_adj`` in the shell first: circuit-tracer's process peaks at
~8 GB while it loads, and the kernel's out-of-memory killer otherwise picks the largest process,
which may be the other job.

Each tool runs in its own subprocess (scrying: this file with ``--side scrying``; circuit-tracer:
``benchmarks/circuit_tracer_side.py`` under circuit-tracer's venv), so wall time and peak
resident memory (``ru_maxrss`` of the child: model load included) are its own. Both run on CPU,
fp32, with the same torch thread count. Time is the graph build alone (``attribute`` vs
``build_feature_graph``, model loaded, best of ``--repeat``), as wall time and as the process's
CPU time (user + sys over all threads; less sensitive to other jobs on a shared machine, which
stretch wall time); scrying's validation, pruning and export are not in it
(``benchmarks/feature_graph_profile.py`` times them). Memory is reported twice: the whole process's peak, and the rise of resident memory during the graph build above
what the loaded process held (sampled every 5 ms).

Settings that coincide: ``max_feature_nodes``, ``batch_size`` (targets per backward pass),
``max_logits`` / ``desired_logit_prob`` (both pick the top-probability tokens until their mass
reaches it, as many as ``max_logits``), demeaned logit targets, no feature nodes at position 0
(circuit-tracer's ``zero_positions``, scrying's ``exclude_bos``), frozen attention patterns and
norm scales (circuit-tracer also freezes Gemma 3's post-norms; scrying freezes every norm scale,
q/k norms included, which the frozen patterns make irrelevant), live skip connection.

Where the algorithms differ, and what is compared:

* **Feature selection.** circuit-tracer ranks active features by their influence on the logits
  through the rows computed so far (its phase 4 loop); scrying ranks by activation x gradient of
  the probability-weighted logits in the frozen model (one backward pass). The two sets of
  ``max_feature_nodes`` features overlap but differ: edges are compared among the features both
  keep, mapped by ``(layer, position, feature index)``.
* **Direct effects coincide.** Both graphs' edges are direct effects in the local replacement
  model with every transcoder feature cut from the gradient (circuit-tracer: the MLP output is
  detached except the skip; scrying: features are leaves), so an edge between two features both
  keep does not depend on the rest of the selection. Compared: feature -> feature,
  token -> feature, feature -> logit and token -> logit (common logit tokens).
* **Error nodes differ.** circuit-tracer's error node at (layer, position) is the reconstruction
  error alone (unselected features are dropped from the graph); scrying's lumps the unselected
  features with it, so nothing is dropped. Error-node edges are not compared.
* **Position 0.** circuit-tracer zeroes features *and* the error vector at position 0 (its MLP
  output still flows forward, detached); scrying keeps them in position 0's error node. scrying's
  default for transcoder graphs moves position 0's error and embedding nodes into the bias
  terms (``bos_error_as_bias``); the benchmark turns that off so the embedding edges of
  position 0 are compared too. Edges
  from other sources do not pass through position 0's MLP in either (all MLP outputs are cut),
  so they are unaffected.
* **Activation.** circuit-tracer's file loader knows ReLU and JumpReLU; the circuit-tracer side
  gives a set whose ``config.yaml`` says TopK (scrying's ``scrying`` block) circuit-tracer's own
  ``TopK`` module, so the activations agree (checked: feature values of common nodes).
  circuit-tracer's TopK keeps the k largest pre-activations even when negative, scrying's only
  the positive ones among them, so circuit-tracer may have a few more (negative) active
  features; they are not among the common nodes' edges unless both select them.
* **File names.** circuit-tracer resolves a local ``config.yaml``'s file names against the
  working directory, not the config's folder; the circuit-tracer side makes them absolute.
  Otherwise our files load with circuit-tracer's own loader unchanged.
* **Models.** circuit-tracer runs transformer-lens 3.2.1's ``HookedTransformer`` built from the
  Hugging Face directory scrying converted from the GGUF (weights and its tokenizer.json;
  transformers 4.57 converts this GGUF's tokenizer wrongly); scrying runs TransformerLens 4.3's
  ``TransformerBridge`` on the same directory. Different kernels: agreement is to float32
  rounding, reported as the largest logit difference. circuit-tracer 0.5.0's replacement model
  shares one rotary table across all layers (``_deduplicate_attention_buffers``), which gives
  Gemma 3's local layers the global layers' rotary base and moves the logits by ~5 on the Dallas
  prompt; the circuit-tracer side shares the tables per attention type instead
  (``circuit_tracer_side.replacement_model_class``), after which the logits agree to 3e-5.
* **Threads.** On a shared 2-core machine two torch threads per process oversubscribe the cores
  when another job runs, and OpenMP's spinning then inflates both wall and CPU time erratically;
  ``--threads 1`` gives steadier ratios there.

Agreement is reported as the largest |difference| over the largest |edge| of the compared set,
and as the fraction of edges within relative 1e-4 (``|a - b| <= 1e-4 max(|a|, |b|)``, with an
absolute floor for edges that are zero up to rounding of 1e-6 x the largest edge *of the same
kind*, feature -> feature, token -> feature, feature -> logit, token -> logit: one floor for all,
set by the largest edge (a token -> logit edge), would count most feature edges as zero).

circuit-tracer's venv (outside the repository; torch pinned to the local CPU wheel, since an
unpinned torch pulls a multi-GB CUDA build)::

    python3 -m venv /work/ct-venv
    /work/ct-venv/bin/pip install -c benchmarks/vs_circuit_tracer_constraints.txt \\
        torch==2.13.0 circuit-tracer==0.5.0 transformer-lens==3.2.1 transformers==4.57.3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from measure import PeakSampler, peak_rss_kb, prompt_of  # noqa: E402

DEFAULT_PROMPT = "Fact: the capital of the state containing Dallas is"
DEFAULT_CT_PYTHON = "/work/ct-venv/bin/python"
RTOL = 1e-4


# --------------------------------------------------------------------------- scrying's side
def scrying_side(args: argparse.Namespace) -> None:
    """Build scrying's feature graph (no validation) and write what the comparison needs."""
    import torch
    from safetensors.torch import save_file

    from scrying.attribution.feature_graph import FeatureGraphConfig, build_feature_graph
    from scrying.models import load_model
    from scrying.prompts import tokenize
    from scrying.transcoders import TranscoderBasis, read_transcoders

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = load_model(args.model)
    basis = TranscoderBasis(read_transcoders(args.transcoders))
    load_seconds = time.perf_counter() - t0
    config = FeatureGraphConfig(
        max_feature_nodes=args.max_feature_nodes,
        max_logits=args.max_logits,
        logit_probability=args.logit_probability,
        batch_size=args.batch_size,
        exclude_bos=True,
        bos_error_as_bias=False,  # keep position 0's error and embedding nodes, as circuit-tracer does
    )
    tokens = tokenize(model, args.prompt)
    with torch.no_grad():
        logits = model(tokens)[0].float()
    seconds, cpu_seconds, increments = [], [], []
    for _ in range(args.repeat):
        with PeakSampler() as mem:
            cpu = time.process_time()
            start = time.perf_counter()
            graph = build_feature_graph(model, args.prompt, None, config, basis=basis)
            seconds.append(time.perf_counter() - start)
            cpu_seconds.append(time.process_time() - cpu)
        increments.append(mem.peak - mem.before)

    kinds = {"feature": 0, "error": 1, "embedding": 2, "logit": 3}
    keys = torch.tensor([[kinds[n.kind], n.layer, n.pos, n.feature] for n in graph.nodes], dtype=torch.long)
    values = torch.tensor([n.activation if n.activation is not None else float("nan") for n in graph.nodes])
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(
        {
            "adjacency": graph.adjacency.contiguous().float(),
            "keys": keys.contiguous(),
            "values": values.float().contiguous(),
            "tokens": tokens[0].contiguous(),
            "logits": logits.contiguous(),
        },
        str(args.out / "scrying.safetensors"),
    )
    (args.out / "scrying.json").write_text(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "attribution_rss_increment_bytes": increments,
                "load_seconds": load_seconds,
                "peak_rss_kb": peak_rss_kb(),
                "threads": torch.get_num_threads(),
                "n_layers": int(model.cfg.n_layers),
                "n_pos": int(tokens.shape[-1]),
            }
        )
    )


# --------------------------------------------------------------------------- comparison
def edge_agreement(a, b, kinds, *, rtol: float = 1e-4, floor: float = 1e-6):
    """Which edges agree (``|a - b| <= max(rtol x max(|a|, |b|), floor x s)``) and which are
    nonzero (``max(|a|, |b|) > floor x s``), where ``s`` is the largest |edge| *of the edge's
    kind* (``kinds``: an integer per edge; -1 for none): one floor for every edge would be set by
    the largest kind (a token -> logit edge of ~10 against feature edges of ~1e-3) and call
    whole kinds zero."""
    import torch

    size = torch.maximum(a.abs(), b.abs())
    scale = torch.zeros_like(size)
    for k in kinds.unique().tolist():
        if k >= 0:
            here = kinds == k
            scale[here] = size[here].max()
    zero = floor * scale
    return (a - b).abs() <= torch.maximum(rtol * size, zero), size > zero


def compare(scry: dict, ct: dict) -> dict:
    """Edges of both graphs on the nodes both keep; see the module docstring."""
    import torch

    n_layers = int(scry["meta"]["n_layers"])
    n_pos = int(scry["meta"]["n_pos"])
    keys = scry["keys"].tolist()

    ct_sel = [tuple(r) for r in ct["selected"].tolist()]
    n_sel = len(ct_sel)
    n_err = n_layers * n_pos
    ct_logits = ct["logit_tokens"].tolist()
    # circuit-tracer's node order: selected features, error nodes (layer-major), tokens, logits.
    ct_index: dict[tuple, int] = {(0, ly, p, f): i for i, (ly, p, f) in enumerate(ct_sel)}
    for p in range(n_pos):
        ct_index[(2, -1, p)] = n_sel + n_err + p
    for j, t in enumerate(ct_logits):
        ct_index[(3, t)] = n_sel + n_err + n_pos + j

    def skey(k: tuple) -> tuple:
        kind, layer, pos, feat = k
        if kind == 0:
            return (0, layer, pos, feat)
        if kind == 2:
            return (2, -1, pos)
        if kind == 3:
            return (3, feat)
        return ("error", layer, pos)

    common = {skey(tuple(k)): (i, ct_index[skey(tuple(k))]) for i, k in enumerate(keys) if skey(tuple(k)) in ct_index}
    feats = [v for k, v in common.items() if k[0] == 0]
    toks = [v for k, v in common.items() if k[0] == 2]
    logit_nodes = [v for k, v in common.items() if k[0] == 3]
    targets = feats + logit_nodes
    sources = feats + toks
    s_rows = torch.tensor([s for s, _ in targets])
    c_rows = torch.tensor([c for _, c in targets])
    s_cols = torch.tensor([s for s, _ in sources])
    c_cols = torch.tensor([c for _, c in sources])
    a = scry["adjacency"][s_rows][:, s_cols].double()
    b = ct["adjacency"][c_rows][:, c_cols].double()

    scale = float(torch.maximum(a.abs(), b.abs()).max())
    diff = (a - b).abs()
    blocks = {
        "feature -> feature": (range(len(feats)), range(len(feats))),
        "token -> feature": (range(len(feats)), range(len(feats), len(sources))),
        "feature -> logit": (range(len(feats), len(targets)), range(len(feats))),
        "token -> logit": (range(len(feats), len(targets)), range(len(feats), len(sources))),
    }
    kinds = torch.full(a.shape, -1, dtype=torch.long)
    for k, (rows, cols) in enumerate(blocks.values()):
        kinds[torch.tensor(list(rows), dtype=torch.long)[:, None], torch.tensor(list(cols), dtype=torch.long)] = k
    ok, nonzero = edge_agreement(a, b, kinds, rtol=RTOL)

    s_vals = scry["values"][torch.tensor([s for s, _ in feats])].double()
    c_vals = ct["selected_values"][torch.tensor([c for _, c in feats])].double()
    by_kind = {}
    for k, name in enumerate(blocks):
        here = kinds == k
        block_diff = diff[here]
        block_size = torch.maximum(a.abs(), b.abs())[here]
        kind_scale = float(block_size.max()) if block_size.numel() else 0.0
        large = block_size >= 1e-3 * kind_scale  # relative differences of smaller edges are rounding
        rel = (block_diff / block_size)[large] if bool(large.any()) else torch.zeros(1)
        by_kind[name] = {
            "edges": int(here.sum()),
            "nonzero": int(nonzero[here].sum()),
            "within": int(ok[here].sum()),
            "largest_edge": kind_scale,
            "max_abs_diff": float(block_diff.max()) if block_diff.numel() else 0.0,
            "max_rel_diff": float(rel.max()),
        }
    return {
        "common_features": len(feats),
        "scrying_features": sum(1 for k in keys if k[0] == 0),
        "ct_features": n_sel,
        "common_logits": len(logit_nodes),
        "scrying_logits": sum(1 for k in keys if k[0] == 3),
        "ct_logits": len(ct_logits),
        "edges": int((kinds >= 0).sum()),
        "nonzero_edges": int(nonzero.sum()),
        "within": int(ok[kinds >= 0].sum()),
        "within_nonzero": int((ok & nonzero).sum()),
        "max_abs_diff": float(diff.max()),
        "max_edge": scale,
        "relative_max": float(diff.max()) / scale if scale else 0.0,
        "by_kind": by_kind,
        "activation_max_rel_diff": float(((s_vals - c_vals).abs() / c_vals.abs().clamp_min(1e-12)).max()) if len(feats) else 0.0,
    }


def _load(directory: Path, name: str) -> dict:
    from safetensors.torch import load_file

    data = dict(load_file(str(directory / f"{name}.safetensors")))
    data["meta"] = json.loads((directory / f"{name}.json").read_text())
    return data


def _run(cmd: list[str], what: str) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode:
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-6000:])
        raise SystemExit(f"{what} failed (exit {result.returncode})")
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--transcoders", type=Path, required=True, help="transcoder directory (config.yaml + layer_<i>.safetensors)")
    p.add_argument("--prompt", default=DEFAULT_PROMPT)
    p.add_argument("--prompt-tokens", type=int, help="instead of --prompt: about this many tokens of a fixed English "
                   "text (benchmarks/measure.py's)")
    p.add_argument("--model", default="gemma-3-270m", help="scrying model spec; circuit-tracer gets its local HF directory")
    p.add_argument("--max-feature-nodes", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-logits", type=int, default=5)
    p.add_argument("--logit-probability", type=float, default=0.95)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=2, help="graph builds per side; the fastest is compared")
    p.add_argument("--ct-python", default=DEFAULT_CT_PYTHON, help="python of circuit-tracer's venv")
    p.add_argument("--keep", type=Path, help="keep both sides' raw outputs (safetensors + JSON) in this directory")
    p.add_argument("--side", choices=["scrying"], help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.side == "scrying":
        scrying_side(args)
        return

    from scrying.models import local_hf_dir

    model_dir = local_hf_dir(args.model)
    if model_dir is None:
        raise SystemExit(f"{args.model!r} has no local Hugging Face directory for circuit-tracer")
    if args.prompt_tokens:
        from transformers import AutoTokenizer

        args.prompt = prompt_of(AutoTokenizer.from_pretrained(str(model_dir)), args.prompt_tokens)
    shared = [
        "--transcoders", str(args.transcoders), "--prompt", args.prompt,
        "--max-feature-nodes", str(args.max_feature_nodes), "--batch-size", str(args.batch_size),
        "--max-logits", str(args.max_logits), "--logit-probability", str(args.logit_probability),
        "--threads", str(args.threads), "--repeat", str(args.repeat),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        _run([sys.executable, __file__, "--side", "scrying", "--model", args.model, "--out", str(out), *shared], "scrying")
        _run([args.ct_python, str(HERE / "circuit_tracer_side.py"), "--model-dir", str(model_dir), "--out", str(out), *shared],
             "circuit-tracer")
        scry, ct = _load(out, "scrying"), _load(out, "circuit_tracer")
    report(args, model_dir, scry, ct)


def report(args: argparse.Namespace, model_dir: Path, scry: dict, ct: dict) -> None:
    sm, cm = scry["meta"], ct["meta"]
    w = sys.stdout.write
    shown = args.prompt if len(args.prompt) < 80 else args.prompt[:60] + "..."
    w(f"prompt {shown!r}: {sm['n_pos']} tokens (BOS included); transcoders {args.transcoders} "
      f"({cm['activation']} in circuit-tracer); model dir {model_dir}\n")
    w(f"settings (both): max_feature_nodes {args.max_feature_nodes}, batch_size {args.batch_size}, "
      f"max_logits {args.max_logits}, logit probability {args.logit_probability}, fp32 CPU, "
      f"{sm['threads']}/{cm['threads']} threads, no features at position 0 (scrying keeps its embedding node, "
      "bos_error_as_bias off); scrying validation off\n")
    same_tokens = scry["tokens"].tolist() == ct["tokens"].tolist()
    w(f"same model: tokens {'identical' if same_tokens else 'DIFFER'}; "
      f"max |logit difference| {float((scry['logits'] - ct['logits']).abs().max()):.3e} "
      f"(logit range {float(ct['logits'].abs().max()):.1f})\n")
    if not same_tokens:
        w(f"  scrying {scry['tokens'].tolist()}\n  circuit-tracer {ct['tokens'].tolist()}\n")
        return
    c = compare(scry, ct)
    w(f"nodes: features {c['common_features']} in both (scrying {c['scrying_features']}, circuit-tracer "
      f"{c['ct_features']} of {cm['n_active_features']} active), logits {c['common_logits']} in both "
      f"(scrying {c['scrying_logits']}, circuit-tracer {c['ct_logits']}); common feature activations: "
      f"max relative difference {c['activation_max_rel_diff']:.2e}\n")
    w(f"edge agreement (feature/token -> feature/logit among common nodes): {c['within']}/{c['edges']} "
      f"within relative {RTOL:g} ({c['within_nonzero']}/{c['nonzero_edges']} nonzero edges); "
      f"max |diff| {c['max_abs_diff']:.3e} = {c['relative_max']:.2e} x the largest edge ({c['max_edge']:.3e})\n")
    for name, k in c["by_kind"].items():
        w(f"  {name}: {k['within']}/{k['edges']} within ({k['nonzero']} nonzero above 1e-6 x this kind's largest edge, "
          f"{k['largest_edge']:.3e}), max |diff| {k['max_abs_diff']:.3e}, "
          f"max relative difference of an edge >= 1e-3 x this kind's largest {k['max_rel_diff']:.2e}\n")
    st, ct_t = min(sm["seconds"]), min(cm["seconds"])
    sc, cc = min(sm["cpu_seconds"]), min(cm["cpu_seconds"])
    w(f"time (graph build, best of {args.repeat}): wall scrying {st:.2f} s, circuit-tracer {ct_t:.2f} s, ratio "
      f"scrying/circuit-tracer {st / ct_t:.2f}; CPU (user+sys, all threads) scrying {sc:.2f} s, circuit-tracer "
      f"{cc:.2f} s, ratio {sc / cc:.2f}  (all runs, wall: scrying {[round(x, 2) for x in sm['seconds']]}, "
      f"circuit-tracer {[round(x, 2) for x in cm['seconds']]})\n")
    sp, cp = sm["peak_rss_kb"] / 1e6, cm["peak_rss_kb"] / 1e6
    si, ci = max(sm["attribution_rss_increment_bytes"]) / 1e9, max(cm["attribution_rss_increment_bytes"]) / 1e9
    rise = f"{si / ci:.2f}" if ci > 0 else "undefined"
    w(f"memory: the attribution phase's own rise (resident memory during the graph build, sampled every 5 ms) "
      f"scrying {si:.3f} GB, circuit-tracer {ci:.3f} GB, ratio {rise}; beside the whole process's peak (model load "
      f"included) scrying {sp:.2f} GB, circuit-tracer {cp:.2f} GB, ratio {sp / cp:.2f}\n")
    w(f"model load: scrying {sm['load_seconds']:.1f} s, circuit-tracer {cm['load_seconds']:.1f} s\n")


if __name__ == "__main__":
    main()
