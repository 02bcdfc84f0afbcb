"""``scrying reversal``: probe a model on facts in both directions (``--pairs``), or run the
controlled reversal-curse experiment (``--experiment toy``). The work is done by
:func:`scrying.reversal.run.run_probe_job` and :func:`scrying.reversal.experiment.run_experiment`
(:func:`scrying.reversal.finetune.run_finetune`); this module turns arguments into their configs
and prints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scrying.axes import Model
from scrying.cli.common import (
    add_model_args,
    add_ray_args,
    load_config,
    ray_from_args,
    throughput_lines,
)
from scrying.errors import InvalidInputError
from scrying.reversal.pair_scoring import ReversalConfig
from scrying.reversal.run import ProbeJobConfig, run_probe_job
from scrying.reversal.summary import text_table
from scrying.stats import BootstrapConfig


def _skipped(message: str) -> None:
    # one line each, the error line's form; the rest of the batch goes on
    sys.stderr.write(f"scrying: error: {message} (skipped)\n")


def _note(message: str) -> None:
    sys.stderr.write(f"scrying: note: {message}\n")


def _attribution_graph(model: Model, model_name: str, prompt: str, target: str, stem: Path) -> None:
    """``scrying trace`` at neuron level, written to ``stem.html`` and ``stem.json``."""
    from scrying.attribution.trace import TraceConfig, trace, write_trace

    result = trace(model, prompt, TraceConfig(target=target), model_name=model_name)
    write_trace(result, html_path=stem.with_suffix(".html"), json_path=stem.with_suffix(".json"))


DEFAULT_DISTRACTORS = 20


def _distractors(asked: int | None) -> int | None:
    """``--distractors``: not given, the default ``K`` (fitted to small relations); 0, all."""
    if asked is None:
        return DEFAULT_DISTRACTORS
    return None if asked == 0 else asked


def cmd_probe(args: argparse.Namespace) -> int:
    """Pair files, options and outputs are checked (by the library) before the model loads."""
    config = ProbeJobConfig(
        pairs=tuple(args.pairs), model=args.model, out=args.out, html=args.html, lens=args.lens, graphs=args.graphs,
        every=args.every, scoring=ReversalConfig(distractors=_distractors(args.distractors), fit=args.distractors is None,
                               batch_size=args.batch_size, seed=args.seed, progress=True),
        bootstrap=BootstrapConfig(n_resamples=args.n_bootstrap, seed=args.seed),
    )
    result = run_probe_job(config, load_config(args), trace_graph=_attribution_graph, on_skip=_skipped,
                           on_note=_note, ray=ray_from_args(args))
    sys.stdout.write(text_table(result.table))
    sys.stdout.write(f"wrote {', '.join(map(str, result.written))}\n")
    if result.stats is not None:
        sys.stdout.write("throughput:\n" + "".join(f"{line}\n" for line in throughput_lines(result.stats, "chunks")))
    if result.skipped:
        sys.stderr.write(f"scrying: error: {len(result.skipped)} bad line(s) skipped, named above; "
                         f"the other {len(result.records)} pairs were scored\n")
        return 2
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from scrying.reversal.experiment import experiment_preset, run_experiment
    from scrying.reversal.finetune import FinetuneConfig, run_finetune

    if args.out_dir is None:
        raise InvalidInputError("--experiment needs --out-dir DIR")
    if args.ray is not None:
        raise InvalidInputError("--ray is for --pairs (the experiment trains one model)")
    if args.experiment == "toy":
        result = run_experiment(experiment_preset(args.preset), args.out_dir, progress=True)
    else:
        config = FinetuneConfig(model=args.model, steps=args.steps, seed=args.seed, bootstrap=BootstrapConfig(seed=args.seed),
                                target_forward_top1=args.target_forward_top1, eval_every=args.eval_every)
        result = run_finetune(config, args.out_dir, load_config(args), progress=True)
    sys.stdout.write(result.text())
    sys.stdout.write(f"wrote {args.out_dir / 'summary.json'}, {args.out_dir / 'summary.md'}\n")
    return 0


def cmd_reversal(args: argparse.Namespace) -> int:
    if (args.pairs is None) == (args.experiment is None):
        raise InvalidInputError("give either --pairs FILE.jsonl --out RESULTS.jsonl or --experiment toy --out-dir DIR")
    return cmd_probe(args) if args.pairs is not None else cmd_experiment(args)


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("reversal", parents=parents,
                       help="reversal curse: does the model that knows 'A is B' know 'B is A'?")
    p.add_argument("--pairs", nargs="+", metavar="FILE.jsonl",
                   help="pair files (a, b, relation, forward template with {a}, reverse template with {b}); "
                   "'packaged' for the shipped relations")
    add_model_args(p)
    p.add_argument("--distractors", "-k", type=int, default=None,
                   help="random distractors per prompt, drawn from the relation's other answers, and as many hard ones "
                   "(0: all of them; default 20, or all a relation has where it has fewer, with a note; a K given here "
                   "that a relation cannot fill stops the run before the model loads)")
    p.add_argument("--out", type=Path, metavar="RESULTS.jsonl",
                   help="one line per pair with forward and reverse results (a rerun resumes); "
                   "the summary goes to RESULTS.summary.csv and .summary.md")
    p.add_argument("--html", type=Path, metavar="REPORT.html", help="also write a self-contained report")
    p.add_argument("--lens", action="store_true",
                   help="over the pairs known forward (top-1) and not in reverse, per layer and direction: the logit lens "
                   "(RESULTS.lens.csv) and causal tracing of the subject tokens (RESULTS.patching.csv); both in the report")
    p.add_argument("--graphs", type=int, default=0, metavar="N",
                   help="with --html: attribution graphs of both directions of the first N pairs known forward and not "
                   "in reverse, linked from the report (REPORT_graphs/)")
    p.add_argument("--every", type=int, default=1, metavar="N",
                   help="score only every N-th pair of each relation (a subset for a slow machine; distractors are "
                   "still drawn from the whole relation)")
    p.add_argument("--batch-size", type=int, default=64, help="rows per forward pass")
    p.add_argument("--n-bootstrap", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--experiment", choices=["toy", "finetune"], help="the controlled experiment instead of a probe")
    p.add_argument("--preset", default="default", help="with --experiment toy: default or tiny")
    p.add_argument("--steps", type=int, default=40, help="with --experiment finetune: optimizer steps per condition")
    p.add_argument("--target-forward-top1", type=float, default=None, metavar="T",
                   help="with --experiment finetune: stop a condition once its held-out forward top-1 reaches T "
                   "(measured every --eval-every steps; --steps is then the most it runs)")
    p.add_argument("--eval-every", type=int, default=20, metavar="N",
                   help="with --target-forward-top1: optimizer steps between two measurements")
    p.add_argument("--out-dir", type=Path, help="with --experiment: where results go")
    add_ray_args(p)
    p.set_defaults(func=cmd_reversal)

