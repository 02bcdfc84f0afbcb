"""``scrying ablate``: per-head ablation effects with bootstrap intervals, as CSV and HTML."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scrying.ablation import (
    AblationConfig,
    BootstrapConfig,
    effect_heatmap,
    head_sweep,
    prompt_set,
    read_prompt_file,
)
from scrying.ablation.resume import resume_sweep, sweep_journal, sweep_settings
from scrying.cli.common import add_model_args, model_from_args
from scrying.preflight import check_distinct, check_output_file


def journal_path(out: Path) -> Path:
    """``results.csv`` -> ``results.effects.jsonl`` (the resumable per-prompt record)."""
    return out.with_name(out.stem + ".effects.jsonl")


def cmd_ablate(args: argparse.Namespace) -> int:
    """The prompt file, the options and the output paths are checked before the model loads."""
    config = AblationConfig(
        metric=args.metric,
        method=args.method,
        positions=args.positions,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=True,
    )
    bootstrap = BootstrapConfig(n_resamples=args.n_bootstrap, seed=args.seed)
    records = read_prompt_file(args.prompts, need_answers=args.metric == "logit-diff")
    outputs = {"--out": args.out, "--out (effects)": journal_path(args.out) if args.out else None, "--html": args.html}
    for option, path in outputs.items():
        if path is not None:
            check_output_file(path, option=option)
    check_distinct(outputs)
    model = model_from_args(args)
    prompts = prompt_set(model, records)
    if args.out:  # per-prompt effects saved head by head: an interrupted run resumes
        path = journal_path(args.out)
        settings = sweep_settings(str(args.model), args.prompts, config, prompts.n_prompts, model=model)
        result = resume_sweep(model, prompts, config, sweep_journal(path, settings))
        sys.stdout.write(f"per-prompt effects in {path}\n")
    else:
        result = head_sweep(model, prompts, config)
    table = result.table(bootstrap)
    ranked = table.reindex(table.effect.abs().sort_values(ascending=False).index)
    sys.stdout.write(
        f"{len(records)} prompts, clean {args.metric} {table.clean_metric.iloc[0]:.4f}; "
        f"heads with the largest effect ({args.method} ablation):\n"
    )
    cols = ["layer", "head", "effect", "ci_low", "ci_high"]
    sys.stdout.write(ranked[cols].head(args.top).to_string(index=False, float_format=lambda v: f"{v:.4f}") + "\n")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
        sys.stdout.write(f"wrote {args.out}\n")
    if args.html:
        args.html.parent.mkdir(parents=True, exist_ok=True)
        effect_heatmap(table).write_html(args.html, include_plotlyjs=True)
        sys.stdout.write(f"wrote {args.html}\n")
    return 0


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "ablate", help="ablate every attention head; per-head effect with bootstrap intervals", parents=parents
    )
    p.add_argument("--prompts", type=Path, required=True, metavar="FILE.jsonl",
                   help="JSONL lines with 'prompt' (and 'correct', 'incorrect' for logit-diff)")
    add_model_args(p)
    p.add_argument("--metric", choices=["logit-diff", "logprob", "loss", "kl"], default="logit-diff")
    p.add_argument("--method", choices=["zero", "mean", "resample"], default="mean")
    p.add_argument("--positions", choices=["all", "last"], default="all")
    p.add_argument("--batch-size", type=int, default=64, help="rows (heads x prompts) per forward")
    p.add_argument("--n-bootstrap", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=10, help="rows to print")
    p.add_argument("--out", type=Path, help="write the per-head table as CSV (and per-prompt effects, "
                   "saved head by head so that a rerun resumes, as OUT-STEM.effects.jsonl)")
    p.add_argument("--html", type=Path, help="write the layer x head heatmap as HTML")
    p.set_defaults(func=cmd_ablate)
