"""``scrying trace``: one prompt to an HTML + JSON graph, or a JSONL file of prompts in batch."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from scrying.attribution.basis import FeatureBasis
from scrying.attribution.batch import (
    BATCH_FIELDS,
    TraceBatchConfig,
    check_trace_batch,
    read_prompts,
    run_trace_batch,
)
from scrying.attribution.feature_graph import FeatureGraphConfig
from scrying.attribution.influence import PruneConfig
from scrying.attribution.trace import TraceConfig, trace, write_trace
from scrying.attribution.validation import ValidationConfig
from scrying.circuits.config import SelectionConfig
from scrying.cli.common import (
    add_model_args,
    add_ray_args,
    load_config,
    model_from_args,
    ray_from_args,
    throughput_lines,
)
from scrying.errors import InvalidInputError
from scrying.preflight import check_distinct, check_output_file
from scrying.prompts import check_text
from scrying.validation_report import has_unfreezing, unfreezing_against_real

__all__ = ["BATCH_FIELDS", "cmd_trace", "read_prompts", "register"]

logger = logging.getLogger(__name__)


def _config(args: argparse.Namespace) -> TraceConfig:
    """The trace options (in batch mode: the settings each line's options override)."""
    return TraceConfig(
        level=args.level,
        target=args.target,
        corrupt=args.corrupt,
        split_qkv=args.split_qkv,
        features=FeatureGraphConfig(max_feature_nodes=args.max_features, batch_size=args.batch_size, progress=args.verbose),
        prune=PruneConfig(node_threshold=args.node_threshold, edge_threshold=args.edge_threshold, max_feature_nodes=args.top_n),
        validation=ValidationConfig(top_k=args.validate_top),
        circuit=SelectionConfig(top_edges=args.top_edges),
    )


def _basis(args: argparse.Namespace) -> FeatureBasis | None:
    """The transcoder basis of ``--transcoders DIR`` (neuron graphs without it)."""
    if args.transcoders is None:
        return None
    from scrying.transcoders import TranscoderBasis, read_cards, read_labels, read_transcoders

    return TranscoderBasis(read_transcoders(args.transcoders), labels=read_labels(args.transcoders), cards=read_cards(args.transcoders))


def _context_windows(args: argparse.Namespace, model) -> tuple[torch.Tensor | None, str]:
    """``--contexts FILE...``: the first ``--context-windows`` windows of 64 tokens of the files'
    text, where the page's feature cards find each feature's top-activating contexts."""
    if not args.contexts:
        return None, ""
    from scrying.transcoders.corpus import read_texts
    from scrying.transcoders.train import first_windows

    what = f"--contexts {' '.join(map(str, args.contexts))}"
    windows = first_windows(model, read_texts(args.contexts), 64, args.context_windows, what=what)
    names = ", ".join(p.name for p in args.contexts)
    return windows, f"{len(windows)} windows of 64 tokens of {names}"


def _check_options(args: argparse.Namespace) -> None:
    """Options that belong to the other mode, or to the other level."""
    batch = args.prompts is not None
    if batch and args.prompt is not None:
        raise InvalidInputError("give a PROMPT or --prompts FILE.jsonl, not both")
    if not batch and args.prompt is None:
        raise InvalidInputError("give a PROMPT or --prompts FILE.jsonl")
    for option, value in (("--out", args.out), ("--json", args.json)) if batch else (("--out-dir", args.out_dir),):
        if value is not None:
            raise InvalidInputError(f"{option} is for {'one PROMPT' if batch else 'batch mode (--prompts)'}; "
                                    f"{'use --out-dir' if batch else 'use --out and --json'}")
    if args.transcoders is not None and args.level == "components":
        raise InvalidInputError("--transcoders is for --level neurons (component graphs have no features)")
    if args.contexts and (batch or args.level == "components"):
        raise InvalidInputError("--contexts is for one PROMPT at --level neurons (feature cards' contexts)")
    if args.context_windows < 1:
        raise InvalidInputError(f"--context-windows must be >= 1, got {args.context_windows}")
    if not batch and args.ray is not None:
        raise InvalidInputError("--ray is for batch mode (--prompts FILE.jsonl)")


def cmd_trace(args: argparse.Namespace) -> int:
    """Every input and output is checked, and the transcoders read, before the model loads."""
    _check_options(args)
    if args.prompts is not None:
        return _batch(args)
    check_text(args.prompt)
    config = _config(args)
    html_path = check_output_file(args.out or Path("graphs") / "trace.html", option="--out")
    json_path = check_output_file(args.json or html_path.with_suffix(".json"), option="--json")
    check_distinct({"--out": html_path, "--json": json_path})
    basis = _basis(args)
    if args.contexts:
        from scrying.transcoders import check_text_files

        check_text_files(args.contexts)
    model = model_from_args(args)
    windows, contexts_from = _context_windows(args, model)
    result = trace(model, args.prompt, config, model_name=args.model, basis=basis, validate=not args.no_validate,
                   card_windows=windows, contexts_from=contexts_from)
    shares = None
    if basis is not None:
        from scrying.transcoders.skip_share import graph_skip_shares

        shares = graph_skip_shares(model, result.graph, basis)
        result.pruned.metadata["skip_share"] = shares.to_json()
    for path in write_trace(result, html_path=html_path, json_path=json_path):
        sys.stdout.write(f"wrote {path}\n")
    sys.stdout.write(f"{len(result.pruned.nodes)} nodes after pruning (of {len(result.graph.nodes)})\n")
    if shares is not None:
        layers = ", ".join(f"{v:.2f}" for v in shares.by_layer)
        sys.stdout.write(f"skip connections' share of the MLP layers' attribution: {shares.share:.3f} (by layer: {layers})\n")
    if result.validation is None:
        sys.stdout.write("validation: skipped (--no-validate)\n")
    else:
        for line in result.validation.lines():
            sys.stdout.write(f"validation {line}\n")
        stored = result.validation.to_json()
        if has_unfreezing(stored):
            stages = unfreezing_against_real(stored)
            ranked = ", ".join(f"{name} {'undefined' if v['spearman'] is None else format(v['spearman'], '.2f')}"
                               for name, v in stages.items())
            sys.stdout.write(f"validation, each model against the real one (Spearman; where unfreezing closes the gap): {ranked}\n")
    for key, value in result.scores.items():
        shown = "undefined (error nodes mix unselected features and reconstruction error)" if value is None else f"{value:.3f}"
        sys.stdout.write(f"{key.replace('_', ' ')}: {shown}\n")
    return 0


def _batch(args: argparse.Namespace) -> int:
    """Arguments to a :class:`~scrying.attribution.batch.TraceBatchConfig`; the library checks
    the prompt file and every line's options before the model loads."""
    config = TraceBatchConfig(
        prompts=args.prompts, model=str(args.model), out_dir=args.out_dir, trace=_config(args),
        validate=not args.no_validate, transcoders=args.transcoders, shared_assets=args.shared_plotlyjs,
    )
    ray = ray_from_args(args)
    check_trace_batch(config)  # before the transcoders are read
    result = run_trace_batch(config, load_config(args), basis=_basis(args), ray=ray)
    sys.stdout.write(f"{result.n_prompts} graphs in {result.out_dir} ({result.n_new} new)\n")
    if ray is not None:
        sys.stdout.write("throughput:\n" + "".join(f"{line}\n" for line in throughput_lines(result.stats, "prompts")))
    return 0


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("trace", help="attribution graph of a prompt, written as HTML and JSON", parents=parents)
    p.add_argument("prompt", nargs="?", metavar="PROMPT")
    add_model_args(p)
    p.add_argument("--target", help="target token (default: the model's top-1 prediction)")
    p.add_argument("--level", choices=["neurons", "components"], default="neurons")
    p.add_argument("--corrupt", help="corrupted prompt, same token length (components level; without it the "
                   "baseline is a run on the prompt's mean input embedding, and the metric is the target's "
                   "log-probability)")
    p.add_argument("--split-qkv", action="store_true",
                   help="components level: score edges into each head's query, key and value inputs separately")
    p.add_argument("--out", type=Path, help="HTML file (default graphs/trace.html)")
    p.add_argument("--json", type=Path, help="JSON file (default: next to the HTML)")
    p.add_argument("--prompts", type=Path,
                   help="batch mode: JSONL with 'prompt' (+ 'target', 'corrupt', 'level', 'split_qkv', 'id')")
    p.add_argument("--out-dir", type=Path, help="batch mode output directory")
    p.add_argument("--shared-assets", "--shared-plotlyjs", dest="shared_plotlyjs", action="store_true",
                   help="batch mode: the viewer's script and style written once beside the pages, not inlined "
                   "(--shared-plotlyjs: its old name)")
    p.add_argument("--transcoders", type=Path, default=None,
                   help="neurons level: a transcoder directory (config.yaml + layer_<i>.safetensors); features are "
                   "its latents, error nodes hold MLP output minus reconstruction")
    p.add_argument("--contexts", type=Path, nargs="+", default=None, metavar="FILE",
                   help="UTF-8 text whose windows give each feature node's top-activating contexts on the page "
                        "(default: a transcoder set's labels.json; neurons show their output tokens only)")
    p.add_argument("--context-windows", type=int, default=256, metavar="N", help="windows of 64 tokens read from --contexts")
    p.add_argument("--max-features", type=int, default=200, help="feature nodes (neurons, or transcoder features with --transcoders) selected before pruning; the rest are error nodes")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--node-threshold", type=float, default=0.8)
    p.add_argument("--edge-threshold", type=float, default=0.98)
    p.add_argument("--top-n", type=int, default=None, help="keep at most this many feature nodes")
    p.add_argument("--top-edges", type=int, default=100,
                   help="components level: the circuit's top edges by |EAP-IG score|, before dead-node pruning")
    p.add_argument("--validate-top", type=int, default=ValidationConfig().top_k,
                   help="nodes (neurons) or edges (components) checked by intervention")
    p.add_argument("--no-validate", action="store_true",
                   help="neurons level: skip the check by intervention (most of a short prompt's time); the "
                   "components level's exact patching is part of its circuit and stays")
    add_ray_args(p)
    p.set_defaults(func=cmd_trace)
