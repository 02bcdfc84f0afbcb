"""``scrying reversal``: probe a model on facts in both directions (``--pairs``), or run the
controlled reversal-curse experiment (``--experiment toy``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scrying.axes import Model
from scrying.cli.common import add_model_args, load_config, model_from_args
from scrying.errors import InvalidInputError
from scrying.reversal.pairs import DIRECTIONS, Pair
from scrying.reversal.probe import probe_journal, probe_settings, read_pair_files, run_probe
from scrying.reversal.relations import packaged_relation_files
from scrying.reversal.report import write_report
from scrying.reversal.scoring import ModelScorer, ReversalConfig, unscorable
from scrying.reversal.summary import known_one_way, markdown_table, summarize, text_table
from scrying.scoring import continuation_tokens, non_text_tokens
from scrying.stats import BootstrapConfig


def _pair_files(specs: list[str]) -> list[Path]:
    files: list[Path] = []
    for spec in specs:
        files.extend(packaged_relation_files() if spec == "packaged" else [Path(spec)])
    return files


def _skip_bad(bad: list[str]) -> None:
    for message in bad:  # one line each, the error line's form, the rest of the batch goes on
        sys.stderr.write(f"scrying: error: {message} (skipped)\n")


def cmd_probe(args: argparse.Namespace) -> int:
    if args.out is None:
        raise InvalidInputError("--pairs needs --out RESULTS.jsonl")
    if args.graphs and args.html is None:
        raise InvalidInputError("--graphs N links the graphs from the report: give --html REPORT.html too")
    files = _pair_files(args.pairs)
    bad: list[str] = []
    pairs = read_pair_files(files, bad=bad)  # every line checked before the model loads
    config = ReversalConfig(distractors=None if args.distractors == 0 else args.distractors,
                            batch_size=args.batch_size, seed=args.seed, progress=True)
    model = model_from_args(args)
    scorer = ModelScorer(model, config.batch_size, banned=non_text_tokens(model))
    dropped = unscorable(scorer, pairs)
    bad += list(dropped.values())
    pairs = [p for i, p in enumerate(pairs) if i not in dropped]
    if not pairs:
        raise InvalidInputError(f"no pair can be scored; {bad[-1]}")
    _skip_bad(bad)
    journal = probe_journal(args.out, probe_settings(args.model, files, config, model=model))
    records = run_probe(scorer, pairs, config, journal)
    table = summarize(records, BootstrapConfig(n_resamples=args.n_bootstrap, seed=args.seed))
    stem = args.out.with_suffix("")
    table.to_csv(f"{stem}.summary.csv", index=False)
    Path(f"{stem}.summary.md").write_text(markdown_table(table), encoding="utf-8")
    written = [str(args.out), f"{stem}.summary.csv", f"{stem}.summary.md"]
    gap = known_one_way(records)
    lens = patching = None
    if args.lens:
        from scrying.reversal.lens import lens_table
        from scrying.reversal.patching import causal_trace_table

        lens = lens_table(model, [pairs[i] for i in gap])
        lens["index"] = [gap[i] for i in lens["index"]]  # positions in the results file
        lens.to_csv(f"{stem}.lens.csv", index=False)
        patching = causal_trace_table(model, [pairs[i] for i in gap])
        patching["index"] = [gap[i] for i in patching["index"]]
        patching.to_csv(f"{stem}.patching.csv", index=False)
        written += [f"{stem}.lens.csv", f"{stem}.patching.csv"]
    if args.html is not None:
        graphs = _trace_graphs(args, model, pairs, gap[: args.graphs], args.html) if args.graphs else None
        write_report(table, records, args.html, title=f"Reversal-curse probe: {args.model}", lens=lens,
                     patching=patching, graphs=graphs)
        written.append(str(args.html))
    sys.stdout.write(text_table(table))
    sys.stdout.write(f"wrote {', '.join(written)}\n")
    if bad:
        sys.stderr.write(f"scrying: error: {len(bad)} bad line(s) skipped, named above; the other {len(pairs)} pairs were scored\n")
        return 2
    return 0


def _trace_graphs(args: argparse.Namespace, model: Model, pairs: list[Pair], chosen: list[int], html: Path) -> dict[str, str]:
    """The attribution graph (``scrying trace``, neuron level) of each direction of the chosen
    pairs, with the true answer's first token as the target, written beside the report."""
    from scrying.attribution.trace import TraceConfig, trace, write_trace

    folder = html.parent / f"{html.stem}_graphs"
    folder.mkdir(parents=True, exist_ok=True)
    links = {}
    for i in chosen:
        for direction in DIRECTIONS:
            pair = pairs[i]
            first = continuation_tokens(model, pair.answer(direction), what="answer")[0]
            target = model.tokenizer.decode([first])
            result = trace(model, pair.prompt(direction), TraceConfig(target=target), model_name=args.model)
            stem = folder / f"pair{i}-{direction}"
            write_trace(result, html_path=stem.with_suffix(".html"), json_path=stem.with_suffix(".json"))
            label = f"{pair.relation}, {direction}: {pair.prompt(direction)!r} → {target!r}"
            links[label] = f"{folder.name}/{stem.name}.html"
    return links


def cmd_experiment(args: argparse.Namespace) -> int:
    from scrying.reversal.experiment import PRESETS, run_experiment
    from scrying.reversal.finetune import FinetuneConfig, run_finetune

    if args.out_dir is None:
        raise InvalidInputError("--experiment needs --out-dir DIR")
    if args.experiment == "toy":
        if args.preset not in PRESETS:
            raise InvalidInputError(f"--preset {args.preset!r}: expected one of {', '.join(PRESETS)}")
        result = run_experiment(PRESETS[args.preset], args.out_dir, progress=True)
    else:
        config = FinetuneConfig(model=args.model, steps=args.steps, seed=args.seed)
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
    p.add_argument("--distractors", "-k", type=int, default=20,
                   help="distractors per prompt, drawn from the relation's other answers (0: all of them; default 20)")
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
    p.add_argument("--batch-size", type=int, default=64, help="rows per forward pass")
    p.add_argument("--n-bootstrap", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--experiment", choices=["toy", "finetune"], help="the controlled experiment instead of a probe")
    p.add_argument("--preset", default="default", help="with --experiment toy: default or tiny")
    p.add_argument("--steps", type=int, default=40, help="with --experiment finetune: optimizer steps per condition")
    p.add_argument("--out-dir", type=Path, help="with --experiment: where results go")
    p.set_defaults(func=cmd_reversal)

