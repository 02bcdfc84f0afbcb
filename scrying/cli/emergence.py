"""``scrying emergence``: score a family's outputs under nonlinear and continuous metrics and
give the verdict (mirage, glimmering, none, inconclusive), as files a person can read."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scrying.emergence.outputs import read_outputs, score_outputs, write_outputs
from scrying.emergence.report import write_report
from scrying.emergence.verdict import VerdictConfig, emergence
from scrying.errors import InvalidInputError
from scrying.stats import BootstrapConfig


def cmd_emergence(args: argparse.Namespace) -> int:
    if args.outputs is None:
        raise InvalidInputError("give --outputs OUTPUTS.jsonl (one line per model and item)")
    config = VerdictConfig(threshold=args.threshold, bootstrap=BootstrapConfig(n_resamples=args.n_bootstrap, seed=args.seed))
    records = read_outputs(args.outputs)
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    write_outputs(records, out / "outputs.jsonl")
    scores = score_outputs(records)
    scores.to_csv(out / "metrics.csv", index=False)
    summary = emergence(scores, config)
    (out / "summary.json").write_text(json.dumps(summary.to_json(), indent=1, default=str), encoding="utf-8")
    write_report(summary, out / "report.html", title=f"Emergence study: {args.outputs.name}")
    sys.stdout.write(f"verdict: {summary.verdict} ({summary.n_items} items, {len(summary.models)} models)\n")
    for name, s in summary.metrics.items():
        jumps = {True: "jumps", False: "no jump", None: "undecided"}[s.jumps]
        sys.stdout.write(f"  {name}: breakthroughness {s.breakthroughness:.2f} [{s.ci[0]:.2f}, {s.ci[1]:.2f}] ({jumps})\n")
    sys.stdout.write(f"wrote {out / 'outputs.jsonl'}, metrics.csv, summary.json, report.html\n")
    return 0


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("emergence", help="emergence study: nonlinear vs continuous metrics across scale, with a verdict",
                       parents=parents)
    p.add_argument("--outputs", type=Path, metavar="OUTPUTS.jsonl",
                   help="model outputs, one line per model and item (model, scale, item, target, output, target_logprobs)")
    p.add_argument("--out-dir", type=Path, required=True, help="writes outputs.jsonl, metrics.csv, summary.json, report.html")
    p.add_argument("--threshold", type=float, default=2.0, help="normalised breakthroughness that counts as a jump (1 = ramp)")
    p.add_argument("--n-bootstrap", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_emergence)
