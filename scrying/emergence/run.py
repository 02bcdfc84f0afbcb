"""The study behind ``scrying emergence``, as one library function: the command line, the
notebooks and a cluster runner all call :func:`run_study` with a :class:`StudyRunConfig`.

Phases of :func:`run_study`:

1. **Check, before any model is trained or loaded**: the output folder
   (:func:`scrying.preflight.check_output_dir`); then either the outputs file (read and checked
   line by line), or the family (a family file, a shipped family, or a toy preset and the task it
   trains on), the task's items and the references file. A refused run writes nothing.
2. **Score** (a family): a toy preset is trained (cached under ``load.cache_dir``) and its
   ``family.json`` written; every member not yet in ``journal.jsonl`` is loaded and scored
   (:func:`~scrying.emergence.study.run_family`; with a :class:`~scrying.batch.RayConfig`, one
   member per item on the Ray workers, :mod:`~scrying.emergence.sharded`), then the reference models
   (:func:`~scrying.emergence.references.score_references`; one not installed is skipped and
   named); a toy preset's head-detector curves go to ``mechanism.csv``.
3. **Verdict and files**: ``outputs.jsonl``, ``metrics.csv``, ``summary.json`` (the verdict,
   its one-sentence finding, predict-and-compare and the scaling law:
   :func:`~scrying.emergence.verdict.emergence`), ``references.jsonl`` and ``references.csv``,
   and ``report.html``.
4. **Seeds** (a toy preset with ``train_seeds``): phases 2-3 once per training seed into
   ``seed-N/`` (the same items), then the verdict over seeds and the curves' bands
   (:func:`~scrying.emergence.seeds.over_seeds`) into ``seeds.json`` and ``report.html``.

Errors name the field (``StudyRunConfig.n_items``), or the command-line option of the same
name where the command has always named it so (``--out-dir``, ``--family``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import pandas as pd

from scrying.axes import Model
from scrying.batch import RayConfig
from scrying.emergence.item_scoring import ScoringConfig
from scrying.emergence.outputs import OutputRecord, read_outputs, score_outputs, write_outputs
from scrying.emergence.references import reference_curves, score_references
from scrying.emergence.report import write_report
from scrying.emergence.seeds import SeedsSummary, over_seeds, write_seeds_report
from scrying.emergence.sharded import ray_scorer
from scrying.emergence.study import Member, read_family, run_family, study_settings
from scrying.emergence.tasks import DEFAULT_WORDS, Item, task_from_spec
from scrying.emergence.toy_family import (
    PRESETS,
    family_items,
    head_curves,
    toy_family,
    training_task,
)
from scrying.emergence.verdict import EmergenceSummary, VerdictConfig, emergence
from scrying.errors import ConfigError, InvalidInputError
from scrying.journal import Journal, file_digest
from scrying.models import LoadConfig, load_model
from scrying.preflight import check_output_dir

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class StudyRunConfig:
    """One study: ``out_dir``, and either ``outputs`` (an outputs file to rescore) or ``family``
    (a family file, a shipped family name or a toy preset) with its ``task``, optional
    ``references`` (a family file of real models, outside the verdict), the built-in task's
    ``n_items`` and ``seed``; how items are scored (``scoring``) and judged (``verdict``)."""

    out_dir: Path
    outputs: Path | None = None
    family: Path | None = None
    task: str | None = None
    references: Path | None = None
    n_items: int = 200
    seed: int = 0
    train_seed: int | None = None
    train_seeds: tuple[int, ...] = ()
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    verdict: VerdictConfig = field(default_factory=VerdictConfig)

    def __post_init__(self) -> None:
        if (self.outputs is None) == (self.family is None):
            raise ConfigError("give either --outputs OUTPUTS.jsonl or --family FAMILY.json --task TASK")
        if self.family is not None and self.task is None:
            raise ConfigError("--family needs --task (addition:K, multiplication:K, induction[:N] or TASK.jsonl)")
        if isinstance(self.n_items, bool) or not isinstance(self.n_items, int) or self.n_items < 1:
            raise ConfigError(f"StudyRunConfig.n_items must be a positive integer, got {self.n_items!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"StudyRunConfig.seed must be an integer, got {self.seed!r}")
        if self.train_seed is not None and (isinstance(self.train_seed, bool) or not isinstance(self.train_seed, int)):
            raise ConfigError(f"StudyRunConfig.train_seed must be an integer or None, got {self.train_seed!r}")
        if not isinstance(self.train_seeds, tuple) or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in self.train_seeds
        ) or len(set(self.train_seeds)) != len(self.train_seeds):
            raise ConfigError(f"StudyRunConfig.train_seeds must be a tuple of distinct integers, got {self.train_seeds!r}")
        if self.train_seeds and (self.family is None or str(self.family) not in PRESETS):
            raise ConfigError(f"--train-seeds trains a toy preset ({', '.join(PRESETS)}) once per seed; got --family {self.family}")
        if not isinstance(self.scoring, ScoringConfig):
            raise ConfigError(f"StudyRunConfig.scoring must be a ScoringConfig, got {type(self.scoring).__name__}")
        if not isinstance(self.verdict, VerdictConfig):
            raise ConfigError(f"StudyRunConfig.verdict must be a VerdictConfig, got {type(self.verdict).__name__}")

    @property
    def source(self) -> str:
        """What the study scored, in words (the report's title)."""
        if self.outputs is not None:
            return self.outputs.name
        assert self.family is not None  # one of the two, checked in __post_init__
        return f"{self.family.name}, task {self.task}"

    @property
    def scale_title(self) -> str:
        """The scale axis in words, with its unit."""
        if self.family is not None and str(self.family) in PRESETS:
            return "training compute 6ND (FLOPs, log axis)"
        if self.family is not None and str(self.family) == "real":
            return "parameters (model cards, log axis)"
        return "scale (as the family file gives it, log axis)"


@dataclass(frozen=True)
class StudyRunResult:
    """The verdict and its numbers, the reference curves (if any), the output folder, and the
    reference models skipped because they are not installed."""

    summary: EmergenceSummary
    references: pd.DataFrame | None
    out_dir: Path
    skipped_references: list[str]
    seeds: SeedsSummary | None = None


def packaged_family(family: Path) -> Path:
    """A family file, or the name of one shipped with scrying (``pythia-sizes``,
    ``pythia-410m-steps``: hub models, for users with a network)."""
    shipped = resources.files("scrying.data").joinpath("families", f"{family}.json")
    if not family.exists() and family.suffix == "" and shipped.is_file():
        return Path(str(shipped))
    if not family.exists():
        folder = resources.files("scrying.data").joinpath("families")
        names = sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))
        raise InvalidInputError(
            f"--family {str(family)!r} is neither a family file nor a known family; expected FAMILY.json, a toy "
            f"preset ({', '.join(PRESETS)}) or a shipped family ({', '.join(names)})"
        )
    return family


@dataclass(frozen=True)
class _Study:
    """What a family run scores, every part checked before a model is trained or loaded."""

    preset: bool
    family_file: Path | None  # None for a toy preset (its family file is written once trained)
    members: list[Member]
    items: list[Item]
    references: list[Member]


def _check_study(config: StudyRunConfig) -> _Study:
    assert config.family is not None and config.task is not None  # checked in __post_init__
    references = read_family(config.references, minimum=1, what="a references file") if config.references else []
    if str(config.family) in PRESETS and not config.family.exists():
        training_task(config.task)  # the toys train on it: refused here rather than after training
        task_from_spec(config.task, n_items=config.n_items, seed=config.seed)
        return _Study(True, None, [], [], references)
    family_file = packaged_family(config.family)
    members = read_family(family_file)
    items = task_from_spec(config.task, n_items=config.n_items, seed=config.seed, vocabulary=DEFAULT_WORDS)
    return _Study(False, family_file, members, items, references)


@dataclass(frozen=True)
class _Scored:
    records: list[OutputRecord]
    references: list[OutputRecord]
    skipped: list[str]
    mechanism: pd.DataFrame | None


def _score_family(config: StudyRunConfig, study: _Study, load: LoadConfig, ray: RayConfig | None) -> _Scored:
    """Phase 2: the family (a preset scrying trains itself, or a family file) and the references."""
    assert config.family is not None and config.task is not None
    out = config.out_dir
    members, items, family_file = study.members, study.items, study.family_file
    if study.preset:
        train_seed = config.seed if config.train_seed is None else config.train_seed
        family = toy_family(load.cache_dir / "toy-family", str(config.family), task=config.task, seed=train_seed)
        members = family.members
        items = family_items(family, config.task, config.n_items, config.seed)
        family_file = out / "family.json"
        out.mkdir(parents=True, exist_ok=True)
        family_file.write_text(json.dumps([{"model": m.model, "scale": m.scale, "label": m.label} for m in members], indent=1))
    assert family_file is not None
    settings = study_settings(family_file, config.task, config.n_items, config.seed, config.scoring)
    if config.references:
        settings["references_sha256"] = file_digest(config.references)
    journal = Journal(out / "journal.jsonl", settings, key=lambda r: r["model"], what="study")
    journal.resume_note(len(members) + len(study.references), "models")

    def loader(spec: str) -> Model:
        return load_model(spec, load)

    scorer = ray_scorer(items, load, config.scoring, ray) if ray is not None else None
    records = run_family(members, items, journal, loader, config.scoring, scorer=scorer)
    reference_records, skipped = score_references(study.references, items, journal, loader, config.scoring)
    mechanism = None
    if study.preset:
        mechanism = head_curves(members)
        mechanism.to_csv(out / "mechanism.csv", index=False)
    return _Scored(records, reference_records, list(skipped), mechanism)


def run_study(config: StudyRunConfig, load: LoadConfig | None = None, *, ray: RayConfig | None = None) -> StudyRunResult:
    """Run one study (see the module docstring for its phases); models load with ``load``, and a
    toy preset trains into ``load.cache_dir``. With ``train_seeds``, the result is the first
    seed's, and the over-seeds summary is in ``seeds.json``. With ``ray``, the family's members
    are scored on that Ray cluster's workers (:mod:`~scrying.emergence.sharded`; the references
    here)."""
    out = check_output_dir(config.out_dir, option="--out-dir")
    if config.train_seeds:
        return _run_seeds(config, load, ray)
    if config.outputs is not None:
        scored = _Scored(read_outputs(config.outputs), [], [], None)
    else:
        scored = _score_family(config, _check_study(config), load or LoadConfig(), ray)
    for spec in scored.skipped:
        logger.info("reference %s skipped: its model is not installed", spec)
    out.mkdir(parents=True, exist_ok=True)
    write_outputs(scored.records, out / "outputs.jsonl")
    scores = score_outputs(scored.records)
    scores.to_csv(out / "metrics.csv", index=False)
    summary = emergence(scores, config.verdict)
    (out / "summary.json").write_text(json.dumps(summary.to_json(), indent=1, default=str), encoding="utf-8")
    references = None
    if scored.references:
        write_outputs(scored.references, out / "references.jsonl")
        references = reference_curves(score_outputs(scored.references), config.verdict.bootstrap)
        references.to_csv(out / "references.csv", index=False)
    write_report(summary, out / "report.html", title=f"Emergence study: {config.source}", mechanism=scored.mechanism,
                 references=references, scale_title=config.scale_title)
    return StudyRunResult(summary, references, out, scored.skipped)


def _run_seeds(config: StudyRunConfig, load: LoadConfig | None, ray: RayConfig | None) -> StudyRunResult:
    """Phase 4: one study per training seed, then the verdict over seeds."""
    _check_study(config)
    results = {
        seed: run_study(replace(config, out_dir=config.out_dir / f"seed-{seed}", train_seeds=(), train_seed=seed), load, ray=ray)
        for seed in config.train_seeds
    }
    summary = over_seeds({seed: r.summary for seed, r in results.items()})
    (config.out_dir / "seeds.json").write_text(json.dumps(summary.to_json(), indent=1), encoding="utf-8")
    summary.bands.to_csv(config.out_dir / "bands.csv", index=False)
    write_seeds_report(summary, config.out_dir / "report.html", title=f"Emergence study over seeds: {config.source}",
                       scale_title=config.scale_title)
    first = results[config.train_seeds[0]]
    return StudyRunResult(first.summary, first.references, config.out_dir, first.skipped_references, summary)
