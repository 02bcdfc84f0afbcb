"""``scrying trace``: one prompt to an HTML + JSON graph, or a JSONL file of prompts in batch."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tqdm.auto import tqdm

from scrying.attribution.neurons import NeuronGraphConfig
from scrying.attribution.pruning import PruneConfig
from scrying.attribution.trace import TraceConfig, trace, write_trace
from scrying.attribution.validation import ValidationConfig
from scrying.cli.common import add_model_args, model_from_args
from scrying.errors import InvalidInputError
from scrying.prompt_files import read_prompt_lines
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
        neurons=NeuronGraphConfig(max_feature_nodes=args.max_features, batch_size=args.batch_size, progress=args.verbose),
        prune=PruneConfig(node_threshold=args.node_threshold, edge_threshold=args.edge_threshold, top_n=args.top_n),
        validation=ValidationConfig(top_k=args.validate_top),
    )


def read_prompts(path: Path) -> list[dict]:
    """JSONL lines with ``prompt`` and optional ``target``, ``corrupt``, ``level``, ``split_qkv``,
    ``id``."""
    rows = []
    for number, line in enumerate(read_prompt_lines(path)):
        row = dict(line.fields, where=line.where)
        row.setdefault("id", f"{number:04d}")
        for key in ("target", "corrupt", "level"):
            if key in row and not isinstance(row[key], str):
                raise InvalidInputError(f"{line.where}: {key!r} must be a string, got {row[key]!r}")
        if "split_qkv" in row and not isinstance(row["split_qkv"], bool):
            raise InvalidInputError(f"{line.where}: 'split_qkv' must be true or false, got {row['split_qkv']!r}")
        rows.append(row)
    return rows


def cmd_trace(args: argparse.Namespace) -> int:
    if args.prompts is not None:
        return _batch(args)
    if args.prompt is None:
        raise InvalidInputError("give a PROMPT or --prompts FILE.jsonl")
    check_text(args.prompt)
    if args.corrupt is not None:
        check_text(args.corrupt, what="corrupt prompt")
    config = _config(args)
    model = model_from_args(args)
    result = trace(model, args.prompt, config, model_name=args.model)
    html_path = args.out or Path("graphs") / "trace.html"
    json_path = args.json or html_path.with_suffix(".json")
    for path in write_trace(result, html_path=html_path, json_path=json_path):
        sys.stdout.write(f"wrote {path}\n")
    validation = result.validation
    sys.stdout.write(
        f"{len(result.pruned.nodes)} nodes after pruning (of {len(result.graph.nodes)}); "
        f"validation Spearman (predicted vs measured, top {len(validation['rows'])}): {validation['spearman']:.3f}\n"
    )
    for key, value in result.scores.items():
        sys.stdout.write(f"{key.replace('_', ' ')}: {value:.3f}\n")
    return 0


def _batch(args: argparse.Namespace) -> int:
    rows = read_prompts(args.prompts)
    out_dir = args.out_dir or Path("graphs") / args.prompts.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    index = out_dir / "index.jsonl"
    done = set()
    if index.exists():
        done = {json.loads(line)["id"] for line in index.read_text().splitlines() if line.strip()}
    todo = [r for r in rows if str(r["id"]) not in done]
    if done:
        logger.warning("resuming: %d of %d prompts already traced in %s", len(rows) - len(todo), len(rows), out_dir)
    model = model_from_args(args) if todo else None
    for row in tqdm(todo, desc="trace", disable=not todo):
        try:
            config = _config(
                args,
                prompt_target=row.get("target"),
                corrupt=row.get("corrupt"),
                level=row.get("level"),
                split_qkv=row.get("split_qkv"),
            )
            result = trace(model, row["prompt"], config, model_name=args.model)
        except InvalidInputError as err:
            raise type(err)(f"{row['where']}: {err}") from err
        stem = out_dir / str(row["id"])
        write_trace(
            result,
            html_path=stem.with_suffix(".html"),
            json_path=stem.with_suffix(".json"),
            shared_plotlyjs=args.shared_plotlyjs,
        )
        record = {"id": str(row["id"]), "prompt": row["prompt"], "spearman": result.validation["spearman"], **result.scores, "seconds": result.seconds}
        with index.open("a", encoding="utf-8") as handle:  # one line per finished prompt: resumable
            handle.write(json.dumps(record) + "\n")
    sys.stdout.write(f"{len(rows)} graphs in {out_dir} ({len(todo)} new)\n")
    return 0


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("trace", help="attribution graph of a prompt, written as HTML and JSON", parents=parents)
    p.add_argument("prompt", nargs="?", metavar="PROMPT")
    add_model_args(p)
    p.add_argument("--target", help="target token (default: the model's top-1 prediction)")
    p.add_argument("--level", choices=["neurons", "components"], default="neurons")
    p.add_argument("--corrupt", help="corrupted prompt, same token length (components level)")
    p.add_argument("--split-qkv", action="store_true",
                   help="components level: score edges into each head's query, key and value inputs separately")
    p.add_argument("--out", type=Path, help="HTML file (default graphs/trace.html)")
    p.add_argument("--json", type=Path, help="JSON file (default: next to the HTML)")
    p.add_argument("--prompts", type=Path,
                   help="batch mode: JSONL with 'prompt' (+ 'target', 'corrupt', 'level', 'split_qkv', 'id')")
    p.add_argument("--out-dir", type=Path, help="batch mode output directory")
    p.add_argument("--shared-plotlyjs", action="store_true", help="batch mode: one plotly.min.js beside the pages")
    p.add_argument("--max-features", type=int, default=200, help="neuron nodes kept before pruning")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--node-threshold", type=float, default=0.8)
    p.add_argument("--edge-threshold", type=float, default=0.98)
    p.add_argument("--top-n", type=int, default=None, help="keep at most this many feature nodes")
    p.add_argument("--validate-top", type=int, default=12, help="nodes checked by intervention")
    p.set_defaults(func=cmd_trace)
