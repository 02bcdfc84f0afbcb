"""Run a model family on a task and collect ``outputs.jsonl`` records, resumably.

A family file is a JSON list of ``{"model": spec, "scale": number}`` (optional ``"label"``):
registered names, local Hugging Face directories, GGUF files or hub names (what
:func:`scrying.models.load_model` takes). At least two models, distinct scales.

Phases of :func:`run_family`: (1) open the study's :class:`~scrying.journal.Journal`, whose
settings are the family and task (file digests, spec, item count, seed, decoding) and which
refuses a rerun with other settings; (2) for each model not yet in the journal, load it, score
every item batched (:func:`~scrying.emergence.item_scoring.score_items`), turn the scores into
:class:`~scrying.emergence.outputs.OutputRecord` lines and append them as one journal record, so
a killed study continues with the next model; (3) return every model's records in family order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from scrying.axes import Model
from scrying.emergence.item_scoring import ScoredItem, ScoringConfig, score_items
from scrying.emergence.outputs import OutputRecord, check_family, parse_output
from scrying.emergence.tasks import Item
from scrying.errors import InvalidInputError
from scrying.journal import Journal, Record, file_digest, model_fingerprint
from scrying.jsonl import read_json

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Member:
    model: str
    scale: float
    label: str


def read_family(path: Path | str, *, minimum: int = 2, what: str = "an emergence study") -> list[Member]:
    """The members of a family file (errors name the file and the entry); ``what`` needs at
    least ``minimum`` of them."""
    path = Path(path)
    data = read_json(path, what="family file")
    if not isinstance(data, list):
        raise InvalidInputError(f"family file {path.name}: expected a JSON list of {{\"model\": ..., \"scale\": ...}}")
    members = []
    for number, entry in enumerate(data, start=1):
        where = f"{path.name} entry {number}"
        if not isinstance(entry, dict) or not isinstance(entry.get("model"), str) or not entry["model"].strip():
            raise InvalidInputError(f"{where}: expected an object with a non-empty string 'model'")
        scale = entry.get("scale")
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale < 1e308:  # also NaN, inf and ints past float
            raise InvalidInputError(f"{where}: 'scale' must be a positive number, got {scale!r}")
        label = entry.get("label", entry["model"])
        if not isinstance(label, str):
            raise InvalidInputError(f"{where}: 'label' must be a string, got {label!r}")
        members.append(Member(entry["model"], float(scale), label))
    scales = [m.scale for m in members]
    if len(members) < minimum:
        raise InvalidInputError(f"family file {path.name}: {what} needs at least {minimum} models, got {len(members)}")
    if len(set(scales)) != len(scales):
        raise InvalidInputError(f"family file {path.name}: scales must differ, got {scales}")
    return members


def records_of(member: Member, scored: list[ScoredItem]) -> list[OutputRecord]:
    return [
        OutputRecord(
            model=member.model, scale=member.scale, item=s.item, target=s.target, output=s.output,
            target_logprobs=tuple(s.target_logprobs), label=member.label, choices=s.choice_logprobs,
            target_tokens=tuple(s.target_tokens), output_tokens=tuple(s.output_tokens),
            samples=None if s.samples is None else tuple(s.samples),
            target_hits=None if s.target_hits is None else tuple(s.target_hits),
        )
        for s in scored
    ]


def score_member(member: Member, items: list[Item], load: Callable[[str], Model], config: ScoringConfig) -> Record:
    """One member's journal record: loaded, every item scored, with its weights fingerprint."""
    model = load(member.model)
    records = records_of(member, score_items(model, items, config))
    return {"model": member.model, "model_fingerprint": model_fingerprint(model), "records": [r.to_json() for r in records]}


#: Scores the members it is given and yields ``(spec, journal record)`` in their order, as
#: :func:`score_member` does one by one (:mod:`scrying.emergence.sharded`: on Ray workers).
MemberScorer = Callable[[list[Member]], Iterable[tuple[str, Record]]]


def run_family(
    members: list[Member],
    items: list[Item],
    journal: Journal,
    load: Callable[[str], Model],
    config: ScoringConfig,
    *,
    scorer: MemberScorer | None = None,
) -> list[OutputRecord]:
    """Every member's output records, from the journal or by scoring (see the module docstring);
    ``scorer`` scores the members elsewhere (default: one after another, here)."""
    todo = [m for m in members if m.model not in journal.done]
    if len(todo) < len(members):
        logger.warning("resuming: %d of %d models already scored in %s", len(members) - len(todo), len(members), journal.path)
    if scorer is None:
        scored = ((m.model, score_member(m, items, load, config)) for m in tqdm(todo, desc="models", disable=not config.progress))
    else:
        scored = scorer(todo)
    for _, record in scored:
        journal.append(record)
    out = []
    for member in members:
        where = f"{journal.path.name} record of {member.model}"
        out += [parse_output(r, where) for r in journal.done[member.model]["records"]]
    check_family(out)
    return out


def study_settings(family: Path, task: str, n_items: int, seed: int, config: ScoringConfig) -> dict[str, Any]:
    task_path = Path(task)
    settings = {
        "family_sha256": file_digest(family),
        "task": task,
        "task_sha256": file_digest(task_path) if task_path.is_file() else None,
        "n_items": n_items,
        "seed": seed,
        "max_new_tokens": config.max_new_tokens,
        "text_only": config.text_only,
    }
    if config.samples:  # absent when greedy only, so journals written before sampling existed still resume
        settings |= {"samples": config.samples, "sample_seed": config.sample_seed}
    return settings
