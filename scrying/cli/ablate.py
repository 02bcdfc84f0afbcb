"""``scrying ablate``: per-head ablation effects with bootstrap intervals, as CSV and HTML."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scrying.ablation import AblationConfig, BootstrapConfig
from scrying.ablation.run import AblationJob, run_ablation
from scrying.cli.common import (
    add_model_args,
    add_ray_args,
    load_config,
    ray_from_args,
    throughput_lines,
)


def cmd_ablate(args: argparse.Namespace) -> int:
    """Arguments to an :class:`~scrying.ablation.run.AblationJob`; the library checks it before
    the model loads (:func:`~scrying.ablation.run.run_ablation`)."""
    job = AblationJob(
        prompts=args.prompts,
        model=str(args.model),
        ablation=AblationConfig(
            metric=args.metric, method=args.method, positions=args.positions, batch_size=args.batch_size,
            seed=args.seed, progress=True,
        ),
        bootstrap=BootstrapConfig(n_resamples=args.n_bootstrap, seed=args.seed),
        out=args.out,
        html=args.html,
    )
    ray = ray_from_args(args)
    run = run_ablation(job, load_config(args), ray=ray)
    table = run.table
    ranked = table.reindex(table.effect.abs().sort_values(ascending=False).index)
    sys.stdout.write(
        f"{run.n_prompts} prompts, clean {args.metric} {table.clean_metric.iloc[0]:.4f}; "
        f"heads with the largest effect ({args.method} ablation):\n"
    )
    cols = ["layer", "head", "effect", "ci_low", "ci_high"]
    sys.stdout.write(ranked[cols].head(args.top).to_string(index=False, float_format=lambda v: f"{v:.4f}") + "\n")
    for path in run.written:
        sys.stdout.write(f"{'per-prompt effects in' if path == job.journal else 'wrote'} {path}\n")
    if run.stats is not None:
        sys.stdout.write("throughput:\n" + "".join(f"{line}\n" for line in throughput_lines(run.stats, "layers")))
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
    add_ray_args(p)
    p.set_defaults(func=cmd_ablate)
