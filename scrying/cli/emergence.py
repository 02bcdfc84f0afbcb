"""``scrying emergence``: score a family's outputs under nonlinear and continuous metrics and
give the verdict (mirage, glimmering, none, inconclusive), as files a person can read. The work
is done by :func:`scrying.emergence.run.run_study`; this module turns arguments into its config
and prints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scrying.cli.common import add_ray_args, load_config, ray_from_args
from scrying.emergence.item_scoring import ScoringConfig
from scrying.emergence.run import StudyRunConfig, run_study
from scrying.emergence.verdict import VerdictConfig
from scrying.stats import BootstrapConfig


def cmd_emergence(args: argparse.Namespace) -> int:
    """Options, input files and the output folder are checked (by the library) before any model
    is trained or loaded; the folder is made when the first result is written."""
    config = StudyRunConfig(
        out_dir=args.out_dir, outputs=args.outputs, family=args.family, task=args.task, references=args.references,
        n_items=args.n_items, seed=args.seed, train_seeds=tuple(args.train_seeds or ()),
        scoring=ScoringConfig(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, samples=args.samples,
                              sample_seed=args.seed, progress=True),
        verdict=VerdictConfig(threshold=args.threshold, tolerance=args.tolerance,
                              bootstrap=BootstrapConfig(n_resamples=args.n_bootstrap, seed=args.seed)),
    )
    result = run_study(config, load_config(args), ray=ray_from_args(args))
    summary, references, out = result.summary, result.references, result.out_dir
    for spec in result.skipped_references:
        sys.stderr.write(f"reference {spec} skipped: its model is not installed\n")
    if result.seeds is not None:
        sys.stdout.write(f"over {len(result.seeds.seeds)} seeds: {result.seeds.verdict}: {result.seeds.finding}\n")
        for seed, s in result.seeds.seeds.items():
            sys.stdout.write(f"  seed {seed}: {s.verdict}\n")
        sys.stdout.write(f"wrote {out / 'seeds.json'}, bands.csv, report.html and seed-N/ (one study per seed)\n")
        return 0
    sys.stdout.write(f"verdict: {summary.verdict} ({summary.n_items} items, {len(summary.models)} models)\n")
    sys.stdout.write(f"finding: {summary.finding}\n")
    for name, s in summary.metrics.items():
        jumps = {True: "jumps", False: "no jump", None: "undecided"}[s.jumps]
        sys.stdout.write(f"  {name}: breakthroughness {s.breakthroughness:.2f} [{s.ci[0]:.2f}, {s.ci[1]:.2f}] ({jumps})\n")
    if summary.prediction is not None:
        pr = summary.prediction
        sys.stdout.write(f"  predict-and-compare ({pr.mode}): smooth fit^L reproduces {pr.measured}: "
                         f"{pr.smooth_reproduces}; measured {pr.continuous}^L: {pr.direct_reproduces}\n")
    if summary.scaling is not None:
        law = summary.scaling
        sys.stdout.write(f"  scaling law: per-token loss ~ scale^-{law.alpha:.3f} [{law.alpha_ci[0]:.3f}, "
                         f"{law.alpha_ci[1]:.3f}], R^2 {law.r2:.2f}\n")
    if references is not None:
        for ref in references[references.metric == "exact_match"].itertuples(index=False):
            sys.stdout.write(f"  reference {ref.label}: exact match {ref.mean:.3f} [{ref.ci_low:.3f}, {ref.ci_high:.3f}]\n")
    sys.stdout.write(f"wrote {out / 'outputs.jsonl'}, metrics.csv, summary.json, report.html\n")
    return 0


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("emergence", help="emergence study: nonlinear vs continuous metrics across scale, with a verdict",
                       parents=parents)
    p.add_argument("--outputs", type=Path, metavar="OUTPUTS.jsonl",
                   help="model outputs, one line per model and item (model, scale, item, target, output, target_logprobs)")
    p.add_argument("--family", type=Path, metavar="FAMILY.json|toy|toy-widths|tiny|real|pythia-sizes|pythia-410m-steps",
                   help='models to score: a JSON list of {"model": spec, "scale": number, "label"?}; a preset of '
                   'toy models scrying trains itself offline (cached): toy (checkpoints over training), toy-widths (sizes), '
                   'tiny (minutes cold: 3 min 49 s measured on 2 cores; then cached); real: SmolLM2-135M, Gemma 3 270M, Qwen2.5-Coder 0.5B and 1.5B, offline (scale = parameters); or a shipped hub family (needs a network): pythia-sizes, pythia-410m-steps '
                   '(training checkpoints, loaded as NAME@stepN)')
    p.add_argument("--task", help="with --family: addition:K, multiplication:K, induction[:HALF_LEN] or TASK.jsonl "
                   "(a toy preset trains on the task: induction, addition:K or multiplication:K)")
    p.add_argument("--references", type=Path, metavar="REFS.json",
                   help="with --family: real models scored on the same items and drawn as separate markers (family "
                   "format, one entry is enough; a model that is not installed is skipped); not part of the verdict")
    p.add_argument("--n-items", type=int, default=200, help="items of a built-in task")
    p.add_argument("--device", default="cpu", help="torch device for the models (default: cpu)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=None, help="greedy tokens per item (default: the target's length)")
    p.add_argument("--out-dir", type=Path, required=True,
                   help="writes outputs.jsonl, metrics.csv, summary.json, report.html (and journal.jsonl: a rerun resumes)")
    p.add_argument("--threshold", type=float, default=2.0, help="normalised breakthroughness that counts as a jump (1 = ramp)")
    p.add_argument("--tolerance", type=float, default=0.1,
                   help="largest gap in accuracy between predicted and measured exact match that is not a miss")
    p.add_argument("--samples", type=int, default=0,
                   help="outputs sampled per item at temperature 1 (seeded by --seed): sampled exact match vs p^L")
    p.add_argument("--train-seeds", type=int, nargs="+", metavar="SEED",
                   help="with a toy preset: train and score it once per seed (seed-N/), verdict over seeds and bands")
    p.add_argument("--n-bootstrap", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    add_ray_args(p)
    p.set_defaults(func=cmd_emergence)
