"""``scrying emergence``: score a family's outputs under nonlinear and continuous metrics and
give the verdict (mirage, glimmering, none, inconclusive), as files a person can read."""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path

import pandas as pd

from scrying.axes import Model
from scrying.cli.common import load_config
from scrying.emergence.outputs import read_outputs, score_outputs, write_outputs
from scrying.emergence.references import reference_curves, score_references
from scrying.emergence.report import write_report
from scrying.emergence.scoring import ScoringConfig
from scrying.emergence.study import read_family, run_family, study_settings
from scrying.emergence.tasks import DEFAULT_WORDS, task_from_spec
from scrying.emergence.toy_family import PRESETS, family_items, head_curves, toy_family
from scrying.emergence.verdict import VerdictConfig, emergence
from scrying.errors import InvalidInputError
from scrying.journal import Journal, file_digest
from scrying.models import load_model
from scrying.stats import BootstrapConfig


def packaged_family(family: Path) -> Path:
    """A family file, or the name of one shipped with scrying (``pythia-sizes``,
    ``pythia-410m-steps``: hub models, for users with a network)."""
    shipped = resources.files("scrying.data").joinpath("families", f"{family}.json")
    if not family.exists() and family.suffix == "" and shipped.is_file():
        return Path(str(shipped))
    return family


def _family_records(args: argparse.Namespace, out: Path) -> tuple[list, pd.DataFrame | None, list]:
    """Score the family (a preset scrying trains itself, or a family file) and the reference
    models; with a toy preset also the head detector's curves across its checkpoints."""
    if args.task is None:
        raise InvalidInputError("--family needs --task (addition:K, multiplication:K, induction[:N] or TASK.jsonl)")
    scoring = ScoringConfig(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, progress=True)
    load = load_config(args)
    preset = str(args.family) in PRESETS and not args.family.exists()
    references = read_family(args.references, minimum=1, what="a references file") if args.references else []
    if preset:
        family = toy_family(load.cache_dir / "toy-family", str(args.family), task=args.task, seed=args.seed)
        members = family.members
        items = family_items(family, args.task, args.n_items, args.seed)
        family_file = out / "family.json"
        family_file.write_text(json.dumps([{"model": m.model, "scale": m.scale, "label": m.label} for m in members], indent=1))
    else:
        family_file = packaged_family(args.family)
        members = read_family(family_file)
        items = task_from_spec(args.task, n_items=args.n_items, seed=args.seed, vocabulary=DEFAULT_WORDS)
    settings = study_settings(family_file, args.task, args.n_items, args.seed, scoring)
    if args.references:
        settings["references_sha256"] = file_digest(args.references)
    journal = Journal(out / "journal.jsonl", settings, key=lambda r: r["model"], what="study")
    def loader(spec: str) -> Model:
        return load_model(spec, load)

    records = run_family(members, items, journal, loader, scoring)
    reference_records, skipped = score_references(references, items, journal, loader, scoring)
    for spec in skipped:
        sys.stderr.write(f"reference {spec} skipped: its model is not installed\n")
    mechanism = None
    if preset:
        mechanism = head_curves(members)
        mechanism.to_csv(out / "mechanism.csv", index=False)
    return records, mechanism, reference_records


def cmd_emergence(args: argparse.Namespace) -> int:
    if (args.outputs is None) == (args.family is None):
        raise InvalidInputError("give either --outputs OUTPUTS.jsonl or --family FAMILY.json --task TASK")
    config = VerdictConfig(threshold=args.threshold, bootstrap=BootstrapConfig(n_resamples=args.n_bootstrap, seed=args.seed))
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    if args.outputs is not None:
        records, mechanism, reference_records = read_outputs(args.outputs), None, []
    else:
        records, mechanism, reference_records = _family_records(args, out)
    source = args.outputs.name if args.outputs is not None else f"{args.family.name}, task {args.task}"
    write_outputs(records, out / "outputs.jsonl")
    scores = score_outputs(records)
    scores.to_csv(out / "metrics.csv", index=False)
    summary = emergence(scores, config)
    (out / "summary.json").write_text(json.dumps(summary.to_json(), indent=1, default=str), encoding="utf-8")
    references = None
    if reference_records:
        write_outputs(reference_records, out / "references.jsonl")
        references = reference_curves(score_outputs(reference_records), config.bootstrap)
        references.to_csv(out / "references.csv", index=False)
    write_report(summary, out / "report.html", title=f"Emergence study: {source}", mechanism=mechanism,
                 references=references)
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
