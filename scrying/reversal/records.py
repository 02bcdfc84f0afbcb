"""A scored pair, typed: what one line of a probe's results file (and of the experiments'
``records-CONDITION.jsonl``) holds.

A line is ``{...extra, "index", "a", "b", "relation", "forward": {...}, "reverse": {...}}``: the
pair file's extra keys first, then the pair, then one object per direction (:class:`DirectionRecord`,
keys in field order). :meth:`PairRecord.to_json` writes exactly this and
:meth:`PairRecord.from_json` reads it back, checking every field; results files written before the
records were typed read unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from scrying.errors import InvalidInputError
from scrying.reversal.pairs import DIRECTIONS, Direction

_KINDS = {"prompt": str, "answer": str, "logprob": float, "mean_logprob": float, "n_tokens": int, "rank": int,
          "n_candidates": int, "exact": bool, "greedy": str}
_PAIR_KEYS = ("index", "a", "b", "relation", "forward", "reverse")


def _field(obj: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in obj:
        raise InvalidInputError(f"{where}: missing {key!r}")
    value = obj[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidInputError(f"{where}: {key!r} must be {kind.__name__}, got {value!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class DirectionRecord:
    """One direction of a pair: the prompt, the pair's own answer (stripped), its summed and
    per-token mean log-probability over ``n_tokens`` tokens, the ``rank`` of the best of the
    ``n_right`` right answers among ``n_candidates`` (the right answers and the random
    distractors: 1 + the distractors scoring strictly higher than it), whether greedy decoding said
    a right answer token for token (``exact``), the greedy text, the random distractors
    (stripped), the other right answers ranked (``right_answers``: in the many direction of a
    one-to-many relation), and the rank among the hard distractors (``hard_rank``, as many as the
    random ones; ``None`` in results written before hard negatives)."""

    prompt: str
    answer: str
    logprob: float
    mean_logprob: float
    n_tokens: int
    rank: int
    n_candidates: int
    exact: bool
    greedy: str
    distractors: tuple[str, ...]
    n_right: int = 1
    right_answers: tuple[str, ...] = ()
    hard_rank: int | None = None
    hard_distractors: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("distractors", "right_answers", "hard_distractors"):
            out[key] = list(out[key])
        if self.hard_rank is None:  # a record from before hard negatives writes back as it was read
            for key in ("n_right", "right_answers", "hard_rank", "hard_distractors"):
                del out[key]
        return out

    @classmethod
    def from_json(cls, obj: Any, where: str = "record") -> DirectionRecord:
        if not isinstance(obj, dict):
            raise InvalidInputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        values = {key: _field(obj, key, kind, where) for key, kind in _KINDS.items()}
        lists = {}
        for key in ("distractors", "right_answers", "hard_distractors"):
            value = obj.get(key, [])
            if not isinstance(value, list) or not all(isinstance(d, str) for d in value):
                raise InvalidInputError(f"{where}: {key!r} must be a list of strings, got {value!r}")
            lists[key] = tuple(value)
        n_right = _field(obj, "n_right", int, where) if "n_right" in obj else 1
        hard_rank = obj.get("hard_rank")
        if hard_rank is not None:
            hard_rank = _field(obj, "hard_rank", int, where)
        return cls(**values, n_right=n_right, hard_rank=hard_rank, **lists)


@dataclass(frozen=True, kw_only=True)
class PairRecord:
    """A scored pair: its position in the scored pair list (``index``), the fact, both
    directions, and the pair file's other keys (``extra``, copied through)."""

    index: int
    a: str
    b: str
    relation: str
    forward: DirectionRecord
    reverse: DirectionRecord
    extra: Mapping[str, Any] = field(default_factory=dict)

    def direction(self, direction: Direction) -> DirectionRecord:
        return self.forward if direction == "forward" else self.reverse

    def to_json(self) -> dict[str, Any]:
        return {**self.extra, "index": self.index, "a": self.a, "b": self.b, "relation": self.relation,
                "forward": self.forward.to_json(), "reverse": self.reverse.to_json()}

    @classmethod
    def from_json(cls, obj: Any, where: str = "record") -> PairRecord:
        """One results line (parsed JSON), checked; errors (:class:`~scrying.errors.InvalidInputError`,
        a ``ValueError``) name ``where`` and the field."""
        if not isinstance(obj, dict):
            raise InvalidInputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        index = _field(obj, "index", int, where)
        a, b, relation = (_field(obj, key, str, where) for key in ("a", "b", "relation"))
        sides = {d: DirectionRecord.from_json(_field(obj, d, dict, where), f"{where}, {d}") for d in DIRECTIONS}
        extra = {k: v for k, v in obj.items() if k not in _PAIR_KEYS}
        return cls(index=index, a=a, b=b, relation=relation, forward=sides["forward"], reverse=sides["reverse"],
                   extra=extra)


def read_results(path: Path | str) -> list[PairRecord]:
    """The records of a probe's results file (line 1, the settings header, is skipped), each
    checked; errors name the file and line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidInputError(f"cannot read results file {str(path)!r}: {err}") from err
    records = []
    for number, line in enumerate(lines[1:], start=2):
        where = f"{path.name} line {number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise InvalidInputError(f"{where}: not valid JSON ({err.msg})") from err
        records.append(PairRecord.from_json(obj, where))
    return records
