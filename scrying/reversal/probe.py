"""Resumable probes: one :class:`~scrying.journal.Journal` record per scored pair.

The results file is the journal: line 1 ``{"settings": ...}`` (the model's identity, a digest of
the pair files, the number of distractors and the seed), then one line per pair
``{"index", "a", "b", "relation", ..., "forward": {...}, "reverse": {...}}``
(:class:`~scrying.reversal.records.PairRecord`) written as soon as its chunk is scored. A killed
run resumes where it stopped; other settings are refused.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from scrying.axes import Model
from scrying.journal import Journal, Record, file_digest, model_identity
from scrying.reversal.pair_scoring import ReversalConfig, Scorer, score_pairs
from scrying.reversal.pairs import Pair, read_pairs
from scrying.reversal.records import PairRecord


def read_pair_files(paths: list[Path], *, bad: list[str] | None = None) -> list[Pair]:
    """The pairs of every file, in order (each line checked; errors name the file and line; with
    a ``bad`` list, bad lines are skipped and their errors appended there)."""
    return [pair for path in paths for pair in read_pairs(path, bad=bad)]


def probe_settings(model_spec: str, pair_files: list[Path], config: ReversalConfig, *, model: Model | None = None) -> dict[str, Any]:
    digest = hashlib.sha256("".join(file_digest(p) for p in pair_files).encode()).hexdigest()
    return {**model_identity(model_spec, model), "pairs_sha256": digest, **config.settings()}


def check_record(record: Record) -> None:
    """A results line reads as a :class:`~scrying.reversal.records.PairRecord` (raises
    :class:`~scrying.errors.InvalidInputError`, a ``ValueError``, naming the field)."""
    PairRecord.from_json(record)


def probe_journal(path: Path | str, settings: dict[str, Any]) -> Journal:
    return Journal(path, settings, key=lambda r: int(r["index"]), check=check_record, what="reversal probe")


def subset(pairs: list[Pair], every: int) -> list[int]:
    """Every ``every``-th pair of each relation (its 1st, ``every + 1``-th, ...), in file order."""
    seen: dict[str, int] = {}
    chosen = []
    for i, pair in enumerate(pairs):
        n = seen.get(pair.relation, 0)
        seen[pair.relation] = n + 1
        if n % every == 0:
            chosen.append(i)
    return chosen


def run_probe(scorer: Scorer, pairs: list[Pair], config: ReversalConfig, journal: Journal,
              chosen: list[int] | None = None) -> list[PairRecord]:
    """Score the pairs (``chosen``: only these positions; their distractors are still drawn from
    every pair) the journal has not finished, saving each; every scored pair's record in order."""
    chosen = list(range(len(pairs))) if chosen is None else chosen
    journal.resume_note(len(chosen), "pairs")
    skip = set(journal.done) | (set(range(len(pairs))) - set(chosen))
    for record in score_pairs(scorer, pairs, config, skip=skip):
        journal.append(record.to_json())
    return [PairRecord.from_json(journal.done[i], f"{journal.path.name} record {i}") for i in chosen]
