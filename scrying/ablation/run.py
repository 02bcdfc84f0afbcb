"""``scrying ablate`` as one library function: a prompt file in, a per-head table out.

Phases of :func:`run_ablation`:

1. **Check** (:func:`check_ablation_job`, no model): the prompt file, every line of it (answers
   present when the metric needs them), the output paths (writable, distinct). A refused job
   stops here, before a model loads or a file is written.
2. **Load** the model (:func:`~scrying.models.load_model` with the job's ``LoadConfig``), tokenize the prompts (answers must be single
   tokens).
3. **Sweep** every head (:func:`~scrying.ablation.sweep.head_sweep`); with ``out`` the per-prompt
   effects are saved head by head in a journal beside it (``OUT-STEM.effects.jsonl``,
   :mod:`~scrying.ablation.resume`), so a killed job resumes.
   With a :class:`~scrying.batch.RayConfig` the sweep runs on a Ray cluster instead, one layer
   per item, the same journal written by this process alone (:mod:`~scrying.ablation.sharded`).
4. **Write** the per-head table with bootstrap intervals (CSV) and the heatmap (HTML).

The CLI turns its arguments into an :class:`AblationJob` and prints the result; a notebook or a
cluster worker calls the same function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from scrying.ablation.config import AblationConfig
from scrying.ablation.plots import effect_heatmap
from scrying.ablation.resume import resume_sweep, sweep_journal, sweep_settings
from scrying.ablation.sharded import sharded_sweep
from scrying.ablation.sweep import SweepResult, head_sweep
from scrying.batch import PoolStats, RayConfig
from scrying.errors import ConfigError
from scrying.journal import check_settings_before_load
from scrying.models import LoadConfig, load_model
from scrying.preflight import check_distinct, check_output_file
from scrying.prompt_sets import PromptRecord, prompt_set, read_prompt_file
from scrying.stats import BootstrapConfig


@dataclass(frozen=True, kw_only=True)
class AblationJob:
    """One ablation job: the prompt file, the model spec, the sweep and its outputs."""

    prompts: Path
    model: str
    ablation: AblationConfig = field(default_factory=AblationConfig)
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    out: Path | None = None  # per-head CSV (+ the resumable effects journal beside it)
    html: Path | None = None  # the layer x head heatmap

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"AblationJob.model must be a model spec, got {self.model!r}")

    @property
    def journal(self) -> Path | None:
        """``results.csv`` -> ``results.effects.jsonl`` (the resumable per-prompt record)."""
        return None if self.out is None else self.out.with_name(self.out.stem + ".effects.jsonl")


@dataclass(frozen=True)
class AblationRun:
    """What a job produced: the per-head table, the number of prompts, the files written and,
    on a Ray cluster, the workers' throughput."""

    table: pd.DataFrame
    n_prompts: int
    written: tuple[Path, ...]
    stats: PoolStats | None = None


def check_ablation_job(job: AblationJob) -> list[PromptRecord]:
    """Phase 1: every check that needs no model; the prompt file's records."""
    records = read_prompt_file(job.prompts, need_answers=job.ablation.metric == "logit-diff")
    outputs = {"--out": job.out, "--out (effects)": job.journal, "--html": job.html}
    for option, path in outputs.items():
        if path is not None:
            check_output_file(path, option=option)
    check_distinct(outputs)
    return records


def run_ablation(job: AblationJob, load: LoadConfig | None = None, *, ray: RayConfig | None = None) -> AblationRun:
    """Run ``job`` (see the module docstring); the model loads with ``load``, as every batch
    job's does (:func:`~scrying.emergence.run.run_study`, :func:`~scrying.reversal.run.run_probe_job`);
    with ``ray``, on the workers of that Ray cluster."""
    records = check_ablation_job(job)
    stats = None
    if ray is not None:
        if job.journal is not None:  # other settings refused before any worker loads the model
            check_settings_before_load(job.journal, sweep_settings(job.model, job.prompts, job.ablation, len(records)),
                                      what="sweep")
        result, stats = sharded_sweep(job.model, job.prompts, records, job.ablation, job.journal, load or LoadConfig(), ray)
        return _write(job, result, len(records), stats)
    model = load_model(job.model, load or LoadConfig())
    prompts = prompt_set(model, records)
    if job.journal is not None:
        settings = sweep_settings(job.model, job.prompts, job.ablation, prompts.n_prompts, model=model)
        result = resume_sweep(model, prompts, job.ablation, sweep_journal(job.journal, settings))
    else:
        result = head_sweep(model, prompts, job.ablation)
    return _write(job, result, prompts.n_prompts, stats)


def _write(job: AblationJob, result: SweepResult, n_prompts: int, stats: PoolStats | None) -> AblationRun:
    """Phase 4: the table, its CSV and heatmap."""
    table = result.table(job.bootstrap)
    written = [job.journal] if job.journal is not None else []
    if job.out is not None:
        job.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(job.out, index=False)
        written.append(job.out)
    if job.html is not None:
        job.html.parent.mkdir(parents=True, exist_ok=True)
        effect_heatmap(table).write_html(job.html, include_plotlyjs=True)
        written.append(job.html)
    return AblationRun(table, n_prompts, tuple(written), stats)
