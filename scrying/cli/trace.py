"""``scrying trace``: one prompt to an HTML + JSON graph, or a JSONL file of prompts in batch."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from scrying.attribution.basis import FeatureBasis
from scrying.attribution.feature_graph import FeatureGraphConfig
from scrying.attribution.influence import PruneConfig
from scrying.attribution.trace import TraceConfig, trace, write_trace
from scrying.attribution.validation import ValidationConfig
from scrying.axes import Model
from scrying.circuits.config import SelectionConfig
from scrying.cli.common import add_model_args, model_from_args
from scrying.errors import InvalidInputError
from scrying.journal import Journal, file_digest, model_identity
from scrying.preflight import check_distinct, check_output_dir, check_output_file
from scrying.prompt_sets import PromptRecord, read_prompt_file
from scrying.prompts import check_text

logger = logging.getLogger(__name__)


def _config(
    args: argparse.Namespace,
    *,
    prompt_target: str | None = None,
    corrupt: str | None = None,
    level: str | None = None,
    split_qkv: bool | None = None,
) -> TraceConfig:
    return TraceConfig(
        level=level or args.level,
        target=prompt_target if prompt_target is not None else args.target,
        corrupt=corrupt if corrupt is not None else args.corrupt,
        split_qkv=split_qkv if split_qkv is not None else args.split_qkv,
        features=FeatureGraphConfig(max_feature_nodes=args.max_features, batch_size=args.batch_size, progress=args.verbose),
        prune=PruneConfig(node_threshold=args.node_threshold, edge_threshold=args.edge_threshold, max_feature_nodes=args.top_n),
        validation=ValidationConfig(top_k=args.validate_top),
        circuit=SelectionConfig(top_edges=args.top_edges),
    )


#: The keys a trace batch file may carry besides ``prompt``, with their types.
BATCH_FIELDS = {"target": str, "corrupt": str, "level": str, "split_qkv": bool, "id": (str, int)}


_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")


def read_prompts(path: Path) -> list[PromptRecord]:
    """The batch file's records (:func:`~scrying.prompt_sets.read_prompt_file`), ids unique
    (default: the line's index, ``0000``, ``0001``, ...)."""
    records = read_prompt_file(path, fields=BATCH_FIELDS)
    seen: dict[str, str] = {}
    for number, record in enumerate(records):
        key = _id(record, number)
        if not _ID.fullmatch(key):
            raise InvalidInputError(
                f"{record.where}: id {key!r} is not a file name; expected letters, digits, '.', '_' or '-' "
                "(not starting with '.')"
            )
        if key in seen:
            raise InvalidInputError(f"{record.where}: id {key!r} is already used by {seen[key]}")
        seen[key] = record.where
    return records


def _id(record: PromptRecord, number: int) -> str:
    return str(record.get("id", f"{number:04d}"))


def batch_settings(args: argparse.Namespace, model: Model) -> dict[str, Any]:
    """What must match for two runs' graphs to share one output directory: the model, the
    prompt file and every option that changes a graph (not speed or page layout)."""
    return {
        **model_identity(str(args.model), model),
        "prompts_sha256": file_digest(args.prompts),
        "level": args.level,
        "target": args.target,
        "corrupt": args.corrupt,
        "split_qkv": args.split_qkv,
        "max_features": args.max_features,
        "node_threshold": args.node_threshold,
        "edge_threshold": args.edge_threshold,
        "top_n": args.top_n,
        "validate_top": args.validate_top,
        **({"validate": False} if args.no_validate else {}),
        "top_edges": args.top_edges,
        **({"transcoders": str(args.transcoders)} if args.transcoders is not None else {}),
    }


def _basis(args: argparse.Namespace) -> FeatureBasis | None:
    """The transcoder basis of ``--transcoders DIR`` (neuron graphs without it)."""
    if args.transcoders is None:
        return None
    from scrying.transcoders import TranscoderBasis, read_labels, read_transcoders

    return TranscoderBasis(read_transcoders(args.transcoders), labels=read_labels(args.transcoders))


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
    model = model_from_args(args)
    result = trace(model, args.prompt, config, model_name=args.model, basis=basis, validate=not args.no_validate)
    for path in write_trace(result, html_path=html_path, json_path=json_path):
        sys.stdout.write(f"wrote {path}\n")
    sys.stdout.write(f"{len(result.pruned.nodes)} nodes after pruning (of {len(result.graph.nodes)})\n")
    if result.validation is None:
        sys.stdout.write("validation: skipped (--no-validate)\n")
    else:
        for line in result.validation.lines():
            sys.stdout.write(f"validation {line}\n")
    for key, value in result.scores.items():
        shown = "undefined (error nodes mix unselected features and reconstruction error)" if value is None else f"{value:.3f}"
        sys.stdout.write(f"{key.replace('_', ' ')}: {shown}\n")
    return 0


def _record_config(args: argparse.Namespace, record: PromptRecord) -> TraceConfig:
    if record.get("level") not in (None, "neurons", "components"):
        raise InvalidInputError(f"{record.where}: 'level' must be 'neurons' or 'components', got {record.get('level')!r}")
    try:
        config = _config(
            args,
            prompt_target=record.get("target"),
            corrupt=record.get("corrupt"),
            level=record.get("level"),
            split_qkv=record.get("split_qkv"),
        )
    except InvalidInputError as err:
        raise type(err)(f"{record.where}: {err}") from err
    if args.transcoders is not None and config.level == "components":
        raise InvalidInputError(f"{record.where}: level 'components' cannot use --transcoders")
    return config


def _batch(args: argparse.Namespace) -> int:
    records = read_prompts(args.prompts)
    configs = [_record_config(args, record) for record in records]  # every line's options, before the model
    out_dir = check_output_dir(args.out_dir or Path("graphs") / args.prompts.stem, option="--out-dir")
    basis = _basis(args)
    model = model_from_args(args)
    index = Journal(out_dir / "index.jsonl", batch_settings(args, model), key=lambda r: str(r["id"]), what="trace batch")
    todo = [(n, r) for n, r in enumerate(records) if _id(r, n) not in index.done]
    index.resume_note(len(records), "prompts")
    for number, record in tqdm(todo, desc="trace", disable=not todo):
        try:
            result = trace(model, record.prompt, configs[number], model_name=args.model, basis=basis, validate=not args.no_validate)
        except InvalidInputError as err:
            raise type(err)(f"{record.where}: {err}") from err
        name = _id(record, number)  # may hold dots ("qwen-1.5b"): appended to, never a suffix to replace
        write_trace(
            result,
            html_path=out_dir / f"{name}.html",
            json_path=out_dir / f"{name}.json",
            shared_plotlyjs=args.shared_plotlyjs,
        )
        checked = result.validation
        index.append(  # one line per finished prompt: resumable
            {"id": _id(record, number), "prompt": record.prompt,
             "validation": checked.headline if checked is not None else None,
             "spearman": checked.main.spearman.value if checked is not None else None,
             **result.scores, "seconds": result.seconds}
        )
    sys.stdout.write(f"{len(records)} graphs in {out_dir} ({len(todo)} new)\n")
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
    p.add_argument("--max-features", type=int, default=200, help="neuron nodes kept before pruning")
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
    p.set_defaults(func=cmd_trace)
