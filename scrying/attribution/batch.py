"""``scrying trace --prompts`` as one library function: a JSONL file of prompts in, one graph
per prompt (HTML + JSON) and an index out, in this process or on a Ray cluster.

Phases of :func:`run_trace_batch`:

1. **Check, before any model loads**: the prompt file (:func:`read_prompts`: ids unique and file
   names), every line's options merged into the batch's :class:`TraceConfig`
   (:func:`record_config`), and the output folder.
2. **Load**: the pool's workers load the model once each (:func:`scrying.batch.open_pool`: here,
   or one Ray actor per worker); the index ``OUT_DIR/index.jsonl`` is a
   :class:`~scrying.journal.Journal` whose settings (:func:`batch_settings`) hold the workers'
   weights fingerprint, so a rerun with other settings or weights is refused.
3. **Trace** the prompts the index has not finished (:class:`TraceWork`, sharded over the
   workers); each graph comes back to this process, which alone writes ``ID.html``, ``ID.json``
   and the prompt's index line, in file order, so a killed run resumes with only the missing
   prompts. A line that fails once traced is named (``p.jsonl line 2: ...``); the graphs before
   it are kept.
"""

from __future__ import annotations

import logging
import string
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from scrying.attribution.basis import FeatureBasis
from scrying.attribution.trace import TraceConfig, TraceResult, trace, write_trace
from scrying.axes import Model
from scrying.batch import PoolStats, RayConfig, log_throughput, open_pool
from scrying.errors import ConfigError, InvalidInputError
from scrying.journal import Journal, check_settings_before_load, file_digest, model_fingerprint
from scrying.models import LoadConfig, load_model
from scrying.preflight import check_output_dir
from scrying.prompt_sets import PromptRecord, read_prompt_file

logger = logging.getLogger(__name__)

#: The keys a trace batch file may carry besides ``prompt``, with their types.
BATCH_FIELDS = {"target": str, "corrupt": str, "level": str, "split_qkv": bool, "id": (str, int)}

_ID_CHARS = frozenset(string.ascii_letters + string.digits + "._-")  # an id is a file name: these, 1-200, no leading dot


def _is_file_name(key: str) -> bool:
    return 1 <= len(key) <= 200 and key[0] != "." and all(c in _ID_CHARS for c in key)


def prompt_id(record: PromptRecord, number: int) -> str:
    """A line's id: its ``id``, else its index (``0000``, ``0001``, ...)."""
    return str(record.get("id", f"{number:04d}"))


def read_prompts(path: Path) -> list[PromptRecord]:
    """The batch file's records (:func:`~scrying.prompt_sets.read_prompt_file`), ids unique
    (default: the line's index, ``0000``, ``0001``, ...)."""
    records = read_prompt_file(path, fields=BATCH_FIELDS)
    seen: dict[str, str] = {}
    for number, record in enumerate(records):
        key = prompt_id(record, number)
        if not _is_file_name(key):
            raise InvalidInputError(
                f"{record.where}: id {key!r} is not a file name; expected letters, digits, '.', '_' or '-' "
                "(not starting with '.')"
            )
        if key in seen:
            raise InvalidInputError(f"{record.where}: id {key!r} is already used by {seen[key]}")
        seen[key] = record.where
    return records


@dataclass(frozen=True, kw_only=True)
class TraceBatchConfig:
    """One batch: the ``prompts`` file, the ``model`` spec, the ``out_dir`` (default
    ``graphs/PROMPTS-STEM``), the ``trace`` settings each line's options override, whether the
    neurons level is ``validate``\\ d, the ``transcoders`` folder the basis came from (part of the
    settings), the viewer's assets written once beside the pages (``shared_assets``) and a
    progress bar."""

    prompts: Path
    model: str
    out_dir: Path | None = None
    trace: TraceConfig = field(default_factory=TraceConfig)
    validate: bool = True
    transcoders: Path | None = None
    shared_assets: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"TraceBatchConfig.model must be a model spec, got {self.model!r}")
        if not isinstance(self.trace, TraceConfig):
            raise ConfigError(f"TraceBatchConfig.trace must be a TraceConfig, got {type(self.trace).__name__}")
        if self.transcoders is not None and self.trace.level == "components":
            raise ConfigError("--transcoders is for --level neurons (component graphs have no features)")

    @property
    def folder(self) -> Path:
        return self.out_dir if self.out_dir is not None else Path("graphs") / self.prompts.stem


@dataclass(frozen=True)
class TraceBatchResult:
    """The output folder, the number of prompts and of those traced by this run, and the
    workers' throughput."""

    out_dir: Path
    n_prompts: int
    n_new: int
    stats: PoolStats


def record_config(config: TraceBatchConfig, record: PromptRecord) -> TraceConfig:
    """The batch's :class:`TraceConfig` with the line's own options; errors name the line."""
    if record.get("level") not in (None, "neurons", "components"):
        raise InvalidInputError(f"{record.where}: 'level' must be 'neurons' or 'components', got {record.get('level')!r}")
    changes = {k: record.get(k) for k in ("target", "corrupt", "level", "split_qkv") if record.get(k) is not None}
    try:
        line = replace(config.trace, **changes)
    except InvalidInputError as err:
        raise type(err)(f"{record.where}: {err}") from err
    if config.transcoders is not None and line.level == "components":
        raise InvalidInputError(f"{record.where}: level 'components' cannot use --transcoders")
    return line


def batch_settings(config: TraceBatchConfig, identity: dict[str, Any]) -> dict[str, Any]:
    """What must match for two runs' graphs to share one output directory: the model (spec and
    weights fingerprint, ``identity``), the prompt file and every option that changes a graph
    (not speed or page layout)."""
    t = config.trace
    return {
        **identity,
        "prompts_sha256": file_digest(config.prompts),
        "level": t.level,
        "target": t.target,
        "corrupt": t.corrupt,
        "split_qkv": t.split_qkv,
        "max_features": t.features.max_feature_nodes,
        "node_threshold": t.prune.node_threshold,
        "edge_threshold": t.prune.edge_threshold,
        "top_n": t.prune.max_feature_nodes,
        "validate_top": t.validation.top_k,
        **({"validate": False} if not config.validate else {}),
        "top_edges": t.circuit.top_edges,
        **({"transcoders": str(config.transcoders)} if config.transcoders is not None else {}),
    }


@dataclass(frozen=True)
class TraceWork:
    """The work of one trace batch, sent to every worker: the model to load, the feature basis
    (transcoders, loaded once by the caller) and whether to validate. An item's payload is
    ``(where, prompt, TraceConfig)``; its result the :class:`TraceResult`."""

    model: str
    load_config: LoadConfig
    basis: FeatureBasis | None = None
    validate: bool = True

    def load(self) -> Model:
        logger.info("loading %s", self.model)
        return load_model(self.model, self.load_config)

    def fingerprint(self, state: Model) -> str:
        return model_fingerprint(state)

    def run(self, state: Model, payload: tuple[str, str, TraceConfig]) -> TraceResult:
        where, prompt, config = payload
        try:
            return trace(state, prompt, config, model_name=self.model, basis=self.basis, validate=self.validate)
        except InvalidInputError as err:
            raise type(err)(f"{where}: {err}") from err


def index_record(name: str, prompt: str, result: TraceResult) -> dict[str, Any]:
    """A prompt's line in ``index.jsonl``."""
    checked = result.validation
    return {"id": name, "prompt": prompt,
            "validation": checked.headline if checked is not None else None,
            "spearman": checked.main.spearman.value if checked is not None else None,
            **result.scores, "seconds": result.seconds}


def check_trace_batch(config: TraceBatchConfig) -> tuple[list[PromptRecord], list[TraceConfig], Path]:
    """Phase 1, no model: the prompt file's records, every line's :class:`TraceConfig` and the
    output folder (checked writable, not made)."""
    records = read_prompts(config.prompts)
    configs = [record_config(config, record) for record in records]
    return records, configs, check_output_dir(config.folder, option="--out-dir")


def run_trace_batch(
    config: TraceBatchConfig,
    load: LoadConfig | None = None,
    *,
    basis: FeatureBasis | None = None,
    ray: RayConfig | None = None,
) -> TraceBatchResult:
    """Trace every prompt of ``config.prompts`` the index has not finished (see the module
    docstring); on the Ray cluster ``ray`` names, else in this process."""
    records, configs, out_dir = check_trace_batch(config)
    work = TraceWork(config.model, load or LoadConfig(), basis, config.validate)
    check_settings_before_load(out_dir / "index.jsonl", batch_settings(config, {"model": config.model}), what="trace batch")
    with open_pool(work, ray) as pool:
        index = Journal(out_dir / "index.jsonl", batch_settings(config, pool.identity), key=lambda r: str(r["id"]),
                        what="trace batch")
        names = [prompt_id(r, n) for n, r in enumerate(records)]
        prompts = {name: r.prompt for name, r in zip(names, records, strict=True)}
        todo = [(names[n], (r.where, r.prompt, configs[n])) for n, r in enumerate(records) if names[n] not in index.done]
        index.resume_note(len(records), "prompts")
        for name, result in pool.results(todo, progress=config.progress, desc="trace"):
            # an id may hold dots ("qwen-1.5b"): appended to, never a suffix to replace
            write_trace(result, html_path=out_dir / f"{name}.html", json_path=out_dir / f"{name}.json",
                        shared_plotlyjs=config.shared_assets)
            index.append(index_record(str(name), prompts[name], result))  # one line per finished prompt
        log_throughput(pool.stats, "prompts")
    return TraceBatchResult(out_dir, len(records), len(todo), pool.stats)
