"""The probe behind ``scrying reversal --pairs``, as one library function: the command line, the
notebooks and a cluster runner all call :func:`run_probe_job` with a :class:`ProbeJobConfig`.

Phases of :func:`run_probe_job`:

1. **Check, before any model loads**: the output paths (the results file, its summary beside it,
   the report; :mod:`scrying.preflight`), every line of every pair file (a bad line is skipped and
   named), each relation's declared cardinality against its lines, and the number of
   distractors against every relation (:func:`~scrying.reversal.pair_scoring.check_distractors`:
   with ``ReversalConfig.fit``, the default here, a relation with fewer candidates uses all it
   has and one line per such relation says so; without it, the error names the relation and the
   largest ``K`` allowed). A refused run writes nothing.
   Then, with the tokenizer alone where the model is a local folder (the model's own, loaded
   without its weights), pairs an answer of which tokenizes to nothing are skipped and named, and
   ``K`` is fitted to the pairs left (the notes are said here, once).
2. **Load** the model (``load``); the empty-answer check runs again on the model's tokenizer (for
   hub models it runs only here).
3. **Score** (with ``every > 1``, only every ``every``-th pair of each relation, a documented
   subset whose distractors are still drawn from the whole relation) the pairs the results file (a :class:`~scrying.journal.Journal`, created with its
   first record) has not finished (:func:`~scrying.reversal.probe.run_probe`; with a
   :class:`~scrying.batch.RayConfig`, chunk by chunk on the Ray workers,
   :mod:`~scrying.reversal.sharded`).
4. **Summarise**: per relation and direction with bootstrap intervals
   (:func:`~scrying.reversal.summary.summarize`), as ``RESULTS.summary.csv`` and ``.summary.md``.
5. **Look inside** (``lens``): over the pairs known forward and not in reverse, the logit lens
   and causal tracing (``RESULTS.lens.csv``, ``RESULTS.patching.csv``; their ``index`` is the
   pair's position in the results file).
6. **Report** (``html``): the HTML page, with attribution graphs of both directions of the first
   ``graphs`` such pairs written beside it (``REPORT_graphs/``) by the caller's ``trace_graph``
   (the attribution instrument's ``trace``: an instrument reaches another only through its
   caller or its public API).

Errors name the field (``ProbeJobConfig.model``), or the command-line option of the same name
where the command has always named it so (``--out``, ``--graphs``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from scrying.axes import Model
from scrying.batch import PoolStats, RayConfig
from scrying.continuations import continuation_tokens, non_text_tokens
from scrying.errors import ConfigError, InvalidInputError, PromptError
from scrying.models import LoadConfig, load_model, local_hf_dir
from scrying.preflight import check_distinct, check_output_file
from scrying.reversal.pair_scoring import ModelScorer, ReversalConfig, check_distractors, unscorable
from scrying.reversal.pairs import DIRECTIONS, Pair
from scrying.reversal.probe import probe_journal, probe_settings, read_pair_files, run_probe, subset
from scrying.reversal.records import PairRecord
from scrying.reversal.relations import packaged_relation_files
from scrying.reversal.report import write_report
from scrying.reversal.sharded import sharded_probe
from scrying.reversal.summary import known_one_way, markdown_table, summarize
from scrying.stats import BootstrapConfig

logger = logging.getLogger(__name__)

#: Writes the attribution graph of ``prompt`` with ``target`` as its answer to ``stem.html`` and
#: ``stem.json``: ``trace_graph(model, model_name, prompt, target, stem)``.
GraphTracer = Callable[[Model, str, str, str, Path], None]


@dataclass(frozen=True, kw_only=True)
class ProbeJobConfig:
    """One probe: ``pairs`` (pair files; ``"packaged"`` for the shipped relations), the ``model``
    spec, the results file ``out`` (a journal: a rerun resumes; the summary goes beside it), an
    optional ``html`` report with ``graphs`` attribution graphs, the ``lens`` flag, how pairs are
    scored (``scoring``; by default ``K = 20`` fitted to small relations) and the bootstrap of the
    summary."""

    pairs: tuple[str | Path, ...]
    model: str
    out: Path | None
    html: Path | None = None
    lens: bool = False
    graphs: int = 0
    every: int = 1
    scoring: ReversalConfig = field(default_factory=lambda: ReversalConfig(fit=True))
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.pairs, tuple) or not self.pairs:
            raise ConfigError(f"ProbeJobConfig.pairs must be a non-empty tuple of pair files, got {self.pairs!r}")
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"ProbeJobConfig.model must be a model spec (a non-empty string), got {self.model!r}")
        if self.out is None:
            raise ConfigError("--pairs needs --out RESULTS.jsonl")
        if isinstance(self.graphs, bool) or not isinstance(self.graphs, int) or self.graphs < 0:
            raise ConfigError(f"--graphs must be >= 0, got {self.graphs}")
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ConfigError(f"--every must be >= 1, got {self.every!r}")
        if self.graphs and self.html is None:
            raise ConfigError("--graphs N links the graphs from the report: give --html REPORT.html too")
        if not isinstance(self.scoring, ReversalConfig):
            raise ConfigError(f"ProbeJobConfig.scoring must be a ReversalConfig, got {type(self.scoring).__name__}")
        if not isinstance(self.bootstrap, BootstrapConfig):
            raise ConfigError(f"ProbeJobConfig.bootstrap must be a BootstrapConfig, got {type(self.bootstrap).__name__}")

    def stem(self) -> Path:
        """``out`` without its suffix: the summary, lens and patching files are ``STEM.*``."""
        assert self.out is not None  # checked in __post_init__
        return self.out.with_suffix("")

    def pair_files(self) -> list[Path]:
        files: list[Path] = []
        for spec in self.pairs:
            files.extend(packaged_relation_files() if str(spec) == "packaged" else [Path(spec)])
        return files


@dataclass(frozen=True)
class ProbeJobResult:
    """The summary table, every scored pair's record (in results-file order), the files written,
    the errors of the skipped pair-file lines and pairs, and, on a Ray cluster, the workers'
    throughput."""

    table: pd.DataFrame
    records: list[PairRecord]
    written: list[Path]
    skipped: list[str]
    stats: PoolStats | None = None


def _log_skipped(message: str) -> None:
    logger.warning("%s (skipped)", message)


def _log_note(message: str) -> None:
    logger.warning("%s", message)


def _check(config: ProbeJobConfig, trace_graph: GraphTracer | None) -> tuple[list[Path], list[Pair], list[str]]:
    """Phase 1, no model: the output paths, the pair files (bad lines skipped and returned), the
    number of distractors; the pair files, the pairs and the skipped lines' errors."""
    if config.graphs and trace_graph is None:
        raise ConfigError(f"--graphs {config.graphs} needs a trace_graph to draw them")
    beside = {"--out": config.out, "--out (summary)": Path(f"{config.stem()}.summary.csv"), "--html": config.html}
    for option, path in beside.items():
        if path is not None:
            check_output_file(path, option=option)
    check_distinct(beside)
    files = config.pair_files()
    bad: list[str] = []
    pairs = read_pair_files(files, bad=bad)
    check_distractors(pairs, config.scoring)  # errors now; notes once the pairs are final
    return files, pairs, bad


class _TokenizerScorer:
    """Just enough of a :class:`~scrying.reversal.pair_scoring.Scorer` to find empty answers with
    the tokenizer alone (the same text and rule as :func:`scrying.continuations.continuation_tokens`)."""

    def __init__(self, tokenizer: object):
        self.tokenizer = tokenizer

    def answer_tokens(self, text: str, *, what: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
        if not ids:
            raise PromptError(f"{what} {text!r} tokenizes to no tokens; expected some text")
        return list(ids)


def _drop_empty_answers(model_spec: str, load: LoadConfig, pairs: list[Pair]) -> dict[int, str]:
    """Before the weights load: the pairs an answer of which tokenizes to nothing, by the model's
    tokenizer (none found for a hub model, whose tokenizer comes with it)."""
    hf_dir = local_hf_dir(model_spec, load)
    if hf_dir is None:
        return {}
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(hf_dir), local_files_only=True)
    return unscorable(_TokenizerScorer(tokenizer), pairs)


def run_probe_job(
    config: ProbeJobConfig,
    load: LoadConfig | None = None,
    *,
    trace_graph: GraphTracer | None = None,
    on_skip: Callable[[str], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    ray: RayConfig | None = None,
) -> ProbeJobResult:
    """Run one probe (see the module docstring for its phases). ``trace_graph`` draws the
    attribution graphs (needed when ``config.graphs > 0``); ``on_skip`` hears each skipped line or
    pair as it is found, ``on_note`` each relation whose ``K`` was lowered to fit, before the
    model loads (default for both: logged as a warning). With ``ray``, the pairs are scored on
    that Ray cluster's workers (:mod:`~scrying.reversal.sharded`); this process still loads the
    model, for the checks, the lens and the graphs."""
    files, pairs, bad = _check(config, trace_graph)
    load = load or LoadConfig()
    empty = _drop_empty_answers(config.model, load, pairs)
    bad += list(empty.values())
    pairs = [p for i, p in enumerate(pairs) if i not in empty]
    if not pairs:
        raise InvalidInputError(f"no pair can be scored; {bad[-1]}")
    for note in check_distractors(pairs, config.scoring).notes:
        (on_note or _log_note)(note)
    logger.info("loading %s", config.model)
    model = load_model(config.model, load)
    scorer = ModelScorer(model, config.scoring.batch_size, banned=non_text_tokens(model))
    dropped = unscorable(scorer, pairs)
    bad += list(dropped.values())
    pairs = [p for i, p in enumerate(pairs) if i not in dropped]
    if not pairs:
        raise InvalidInputError(f"no pair can be scored; {bad[-1]}")
    for message in bad:
        (on_skip or _log_skipped)(message)
    settings = probe_settings(config.model, files, config.scoring, model=model)
    if config.every > 1:
        settings["every"] = config.every
    journal = probe_journal(config.out, settings)
    chosen = subset(pairs, config.every)
    stats = None
    if ray is None:
        records = run_probe(scorer, pairs, config.scoring, journal, chosen)
    else:
        records, stats = sharded_probe(pairs, config.scoring, journal, chosen, load, ray)
    table = summarize(records, config.bootstrap)
    stem = config.stem()
    table.to_csv(f"{stem}.summary.csv", index=False)
    Path(f"{stem}.summary.md").write_text(markdown_table(table), encoding="utf-8")
    written = [config.out, Path(f"{stem}.summary.csv"), Path(f"{stem}.summary.md")]
    gap = [records[j].index for j in known_one_way(records)]  # positions in the pair list
    lens = patching = None
    if config.lens:
        lens, patching = _look_inside(model, pairs, gap)
        lens.to_csv(f"{stem}.lens.csv", index=False)
        patching.to_csv(f"{stem}.patching.csv", index=False)
        written += [Path(f"{stem}.lens.csv"), Path(f"{stem}.patching.csv")]
    if config.html is not None:
        graphs = None
        if config.graphs and trace_graph is not None:
            graphs = trace_graphs(trace_graph, model, config.model, pairs, gap[: config.graphs], config.html)
        write_report(table, records, config.html, title=f"Reversal-curse probe: {config.model}", lens=lens,
                     patching=patching, graphs=graphs)
        written.append(config.html)
    return ProbeJobResult(table, records, written, bad, stats)


def _look_inside(model: Model, pairs: list[Pair], gap: list[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The logit lens and causal tracing over ``pairs[gap]``, their ``index`` mapped back to the
    pairs' positions in the results file."""
    from scrying.reversal.causal_tracing import causal_trace_table
    from scrying.reversal.lens import lens_table

    chosen = [pairs[i] for i in gap]
    lens = lens_table(model, chosen)
    lens["index"] = [gap[i] for i in lens["index"]]
    patching = causal_trace_table(model, chosen)
    patching["index"] = [gap[i] for i in patching["index"]]
    return lens, patching


def trace_graphs(
    trace_graph: GraphTracer, model: Model, model_name: str, pairs: list[Pair], chosen: list[int], html: Path
) -> dict[str, str]:
    """The attribution graph of each direction of the chosen pairs, with the true answer's first
    token as the target, written beside the report (``REPORT_graphs/pairI-DIRECTION.html`` and
    ``.json``); label -> relative link."""
    folder = html.parent / f"{html.stem}_graphs"
    folder.mkdir(parents=True, exist_ok=True)
    links = {}
    for i in chosen:
        for direction in DIRECTIONS:
            pair = pairs[i]
            first = continuation_tokens(model, pair.answer(direction), what="answer")[0]
            target = model.tokenizer.decode([first])
            stem = folder / f"pair{i}-{direction}"
            trace_graph(model, model_name, pair.prompt(direction), target, stem)
            label = f"{pair.relation}, {direction}: {pair.prompt(direction)!r} → {target!r}"
            links[label] = f"{folder.name}/{stem.name}.html"
    return links
