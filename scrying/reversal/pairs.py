"""Pair files: one ``A is B`` fact a line, with a prompt template for each direction.

A line is a JSON object with non-empty strings ``a``, ``b``, ``relation``, ``forward`` (a
template containing ``{a}`` and not ``{b}``; its answer is ``b``) and ``reverse`` (containing
``{b}`` and not ``{a}``; its answer is ``a``). Each answer is appended to the filled template
after one space. Other keys are kept and copied into the results. Every line is checked before a
model is loaded; errors name the file and the line (``pairs.jsonl line 3: ...``).

Every random draw made for one prompt (its distractors, its causal-tracing noise) is seeded from
one key, :func:`draw_key` (the run's seed, the pair and the direction), so a prompt draws the
same whatever else is scored beside it: :func:`prompt_random` for Python's ``random`` and
:func:`prompt_generator` for torch.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from scrying.errors import InvalidInputError
from scrying.jsonl import read_jsonl

Direction = Literal["forward", "reverse"]
DIRECTIONS: tuple[Direction, Direction] = ("forward", "reverse")
REQUIRED = ("a", "b", "relation", "forward", "reverse")


@dataclass(frozen=True)
class Pair:
    """One fact ``a -> b`` of a relation, its two templates, and where it came from."""

    a: str
    b: str
    relation: str
    forward: str
    reverse: str
    where: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def prompt(self, direction: Direction) -> str:
        """The filled template of ``direction`` (forward asks for ``b``, reverse for ``a``)."""
        template = self.forward if direction == "forward" else self.reverse
        return template.replace("{a}", self.a).replace("{b}", self.b)

    def answer(self, direction: Direction) -> str:
        """The answer text, with the one space that joins it to the prompt."""
        return " " + (self.b if direction == "forward" else self.a)

    def subject(self, direction: Direction) -> str:
        """The entity the prompt names (``a`` forward, ``b`` reverse)."""
        return self.a if direction == "forward" else self.b


def _check_template(obj: Mapping[str, Any], key: str, where: str) -> None:
    has, lacks = ("{a}", "{b}") if key == "forward" else ("{b}", "{a}")
    if has not in obj[key]:
        raise InvalidInputError(f"{where}: {key!r} template {obj[key]!r} must contain {has} (its answer is {'b' if key == 'forward' else 'a'})")
    if lacks in obj[key]:
        raise InvalidInputError(f"{where}: {key!r} template {obj[key]!r} must not contain {lacks} (it would give the answer away)")


def parse_pair(obj: Any, where: str) -> Pair:
    """One line's object as a :class:`Pair` (see the module docstring for what is checked)."""
    if not isinstance(obj, dict):
        raise InvalidInputError(f"{where}: expected a JSON object with {', '.join(REQUIRED)}, got {type(obj).__name__}")
    for key in REQUIRED:
        if key not in obj:
            raise InvalidInputError(f"{where}: missing {key!r}")
        if not isinstance(obj[key], str) or not obj[key].strip():
            raise InvalidInputError(f"{where}: {key!r} must be a non-empty string, got {obj[key]!r}")
    for key in ("forward", "reverse"):
        _check_template(obj, key, where)
    extra = {k: v for k, v in obj.items() if k not in REQUIRED}
    return Pair(obj["a"], obj["b"], obj["relation"], obj["forward"], obj["reverse"], where, extra)


def read_pairs(path: Path | str, *, bad: list[str] | None = None) -> list[Pair]:
    """Every pair of a JSONL pair file (at least one), every line checked. With a ``bad`` list,
    a bad line is skipped and its error (naming the file and line) appended there instead."""
    pairs = []
    for obj, where in read_jsonl(path, what="pair file", bad=bad):
        try:
            pairs.append(parse_pair(obj, where))
        except InvalidInputError as err:
            if bad is None:
                raise
            bad.append(str(err))
    if not pairs:
        first = f"; {bad[-1]}" if bad else ""
        raise InvalidInputError(f"pair file {str(path)!r} has no pairs (expected JSONL lines with {', '.join(REQUIRED)}){first}")
    return pairs


def candidates(pairs: list[Pair], index: int, direction: Direction) -> list[str]:
    """Distractors of pair ``index`` in ``direction``: the other answers of its relation in the
    file (first-seen order), leaving out every answer that is also true for this prompt (in
    reverse, the other ``a`` of the same ``b``; forward, the other ``b`` of the same ``a``)."""
    pair = pairs[index]
    same = [p for p in pairs if p.relation == pair.relation]
    if direction == "forward":
        true = {p.b for p in same if p.a == pair.a}
        pool = [p.b for p in same]
    else:
        true = {p.a for p in same if p.b == pair.b}
        pool = [p.a for p in same]
    return [x for x in dict.fromkeys(pool) if x not in true]


def draw_key(seed: int, pair: Pair, direction: Direction) -> str:
    """The one key a prompt's random draws are seeded from: ``SEED|RELATION|A|B|DIRECTION``."""
    return f"{seed}|{pair.relation}|{pair.a}|{pair.b}|{direction}"


def prompt_random(seed: int, pair: Pair, direction: Direction) -> random.Random:
    """Python's generator for one prompt, seeded with :func:`draw_key` (``random`` hashes a
    string seed with SHA-512)."""
    return random.Random(draw_key(seed, pair, direction))


def prompt_generator(seed: int, pair: Pair, direction: Direction) -> torch.Generator:
    """A torch generator for one prompt, seeded with the 63-bit BLAKE2b digest of
    :func:`draw_key` (a torch seed is one 64-bit integer)."""
    digest = hashlib.blake2b(draw_key(seed, pair, direction).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)
