"""``scrying emergence``: score a family's outputs under nonlinear and continuous metrics and
give the verdict (mirage, glimmering, none, inconclusive), as files a person can read. The work
is done by :func:`scrying.emergence.run.run_study`; this module turns arguments into its config
and prints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scrying.cli.common import load_config
from scrying.emergence.item_scoring import ScoringConfig
from scrying.emergence.run import StudyRunConfig, run_study
from scrying.emergence.verdict import VerdictConfig
from scrying.stats import BootstrapConfig


def cmd_emergence(args: argparse.Namespace) -> int:
    """Options, input files and the output folder are checked (by the library) before any model
    is trained or loaded; the folder is made when the first result is written."""
    config = StudyRunConfig(
        out_dir=args.out_dir, outputs=args.outputs, family=args.family, task=args.task, references=args.references,
        n_items=args.n_items, seed=args.seed,
        scoring=ScoringConfig(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, progress=True),
        verdict=VerdictConfig(threshold=args.threshold, bootstrap=BootstrapConfig(n_resamples=args.n_bootstrap, seed=args.seed)),
    )
    result = run_study(config, load_config(args))
    summary, references, out = result.summary, result.references, result.out_dir
    for spec in result.skipped_references:
        sys.stderr.write(f"reference {spec} skipped: its model is not installed\n")
    sys.stdout.write(f"verdict: {summary.verdict} ({summary.n_items} items, {len(summary.models)} models)\n")
    for name, s in summary.metrics.items():
        jumps = {True: "jumps", False: "no jump", None: "undecided"}[s.jumps]
        sys.stdout.write(f"  {name}: breakthroughness {s.breakthroughness:.2f} [{s.ci[0]:.2f}, {s.ci[1]:.2f}] ({jumps})\n")
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
    p.add_argument("--family", type=Path, metavar="FAMILY.json|toy|toy-widths|tiny|pythia-sizes|pythia-410m-steps",
                   help='models to score: a JSON list of {"model": spec, "scale": number, "label"?}; a preset of '
                   'toy models scrying trains itself offline (cached): toy (checkpoints over training), toy-widths (sizes), '
                   'tiny (seconds); or a shipped hub family (needs a network): pythia-sizes, pythia-410m-steps '
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
    p.add_argument("--n-bootstrap", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_emergence)
