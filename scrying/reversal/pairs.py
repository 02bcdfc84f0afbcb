"""Pair files: one ``A is B`` fact a line, with a prompt template for each direction.

A line is a JSON object with non-empty strings ``a``, ``b``, ``relation``, ``forward`` (a
template containing ``{a}`` and not ``{b}``; its answer is ``b``) and ``reverse`` (containing
``{b}`` and not ``{a}``; its answer is ``a``). Each answer is appended to the filled template
after one space. Other keys are kept and copied into the results. Every line is checked before a
model is loaded; errors name the file and the line (``pairs.jsonl line 3: ...``).

Optional keys, read and not copied into the results:

* ``cardinality``: ``"one_to_one"`` (the default), ``"many_to_one"`` (a ``b`` has several ``a``,
  so the reverse prompt has several right answers: "The state of Texas has a city called") or
  ``"one_to_many"`` (the forward prompt has several). Every line of a relation declares the same,
  and the file must agree with it (:func:`check_cardinality`): in a direction declared to have
  one answer, no prompt of the file has two.
* ``also_true``: further right answers of the *many* direction taken from the fact tables (the
  other cities of the state that are not in the file); they count for exact match and are never
  distractors.
* ``hard_forward`` / ``hard_reverse``: wrong answers of that direction a model is likely to confuse
  with the right one, from the fact tables, most confusable first (the largest city of a state for
  its capital, neighbouring countries); see :func:`hard_distractors`.

**Hard negatives** (Issue 25: among random distractors, top-1 sits at ceiling in both directions
and cannot show an asymmetry): beside its random distractors, every prompt gets a second set of
as many, chosen by :func:`hard_distractors`.

Every random draw made for one prompt (its distractors, its causal-tracing noise) is seeded from
one key, :func:`draw_key` (the run's seed, the pair and the direction), so a prompt draws the
same whatever else is scored beside it: :func:`prompt_random` for Python's ``random`` and
:func:`prompt_generator` for torch.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from scrying.errors import InvalidInputError
from scrying.jsonl import read_jsonl

Direction = Literal["forward", "reverse"]
DIRECTIONS: tuple[Direction, Direction] = ("forward", "reverse")
REQUIRED = ("a", "b", "relation", "forward", "reverse")
Cardinality = Literal["one_to_one", "many_to_one", "one_to_many"]
CARDINALITIES: tuple[str, ...] = ("one_to_one", "many_to_one", "one_to_many")
#: the direction whose prompt has several right answers, per cardinality
MANY_DIRECTION: dict[str, Direction | None] = {"one_to_one": None, "many_to_one": "reverse", "one_to_many": "forward"}
LISTS = ("also_true", "hard_forward", "hard_reverse")


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
    cardinality: Cardinality = "one_to_one"
    also_true: tuple[str, ...] = ()
    hard_forward: tuple[str, ...] = ()
    hard_reverse: tuple[str, ...] = ()

    def many(self, direction: Direction) -> bool:
        """Does ``direction`` have several right answers (the relation's declared cardinality)?"""
        return MANY_DIRECTION[self.cardinality] == direction

    def hard(self, direction: Direction) -> tuple[str, ...]:
        """The fact tables' confusable wrong answers of ``direction`` (most confusable first)."""
        return self.hard_forward if direction == "forward" else self.hard_reverse

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
    cardinality = obj.get("cardinality", "one_to_one")
    if cardinality not in CARDINALITIES:
        raise InvalidInputError(f"{where}: 'cardinality' must be one of {', '.join(CARDINALITIES)}, got {cardinality!r}")
    lists = {}
    for key in LISTS:
        value = obj.get(key, [])
        if not isinstance(value, list) or not all(isinstance(x, str) and x.strip() for x in value):
            raise InvalidInputError(f"{where}: {key!r} must be a list of non-empty strings, got {value!r}")
        lists[key] = tuple(value)
    if lists["also_true"] and cardinality == "one_to_one":
        raise InvalidInputError(f"{where}: 'also_true' lists further right answers of a many direction, but the "
                                "relation is one_to_one; declare 'cardinality': 'many_to_one' or 'one_to_many'")
    extra = {k: v for k, v in obj.items() if k not in REQUIRED and k not in LISTS and k != "cardinality"}
    return Pair(obj["a"], obj["b"], obj["relation"], obj["forward"], obj["reverse"], where, extra,
                cardinality=cardinality, **lists)


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


def _asked(pair: Pair, direction: Direction) -> str:
    return pair.a if direction == "forward" else pair.b


def _answer(pair: Pair, direction: Direction) -> str:
    return pair.b if direction == "forward" else pair.a


def true_answers(pairs: list[Pair], index: int, direction: Direction) -> list[str]:
    """Every right answer of pair ``index``'s prompt in the file: its own answer first, then the
    other answers the file gives the same prompt (another ``a`` of the same ``b`` in reverse), in
    first-seen order."""
    pair = pairs[index]
    same = [_answer(p, direction) for p in pairs
            if p.relation == pair.relation and _asked(p, direction) == _asked(pair, direction)]
    return list(dict.fromkeys([_answer(pair, direction), *same]))


def known_true(pairs: list[Pair], index: int, direction: Direction) -> set[str]:
    """What must never be a distractor of this prompt: :func:`true_answers` and, in a many
    direction, the fact tables' further right answers (``also_true``) of every line of the prompt."""
    pair = pairs[index]
    out = set(true_answers(pairs, index, direction))
    if pair.many(direction):
        for p in pairs:
            if p.relation == pair.relation and _asked(p, direction) == _asked(pair, direction):
                out.update(p.also_true)
    return out


def candidates(pairs: list[Pair], index: int, direction: Direction) -> list[str]:
    """Distractors of pair ``index`` in ``direction``: the other answers of its relation in the
    file (first-seen order), leaving out every answer that is also true for this prompt
    (:func:`known_true`: in reverse, the other ``a`` of the same ``b``, and the fact tables'
    ``also_true``; forward, the other ``b`` of the same ``a``)."""
    pair = pairs[index]
    true = known_true(pairs, index, direction)
    pool = [_answer(p, direction) for p in pairs if p.relation == pair.relation]
    return [x for x in dict.fromkeys(pool) if x not in true]


def check_cardinality(pairs: list[Pair]) -> None:
    """Every line of a relation declares the same cardinality, and in a direction declared to
    have one answer no prompt has two in the file (the error names the relation, the prompt's
    subject and the cardinality to declare)."""
    declared: dict[str, Pair] = {}
    for pair in pairs:
        first = declared.setdefault(pair.relation, pair)
        if first.cardinality != pair.cardinality:
            raise InvalidInputError(
                f"{pair.where or pair.a}: relation {pair.relation!r} is declared {pair.cardinality!r} here but "
                f"{first.cardinality!r} at {first.where or first.a}; every line of a relation declares the same cardinality")
    for i, pair in enumerate(pairs):
        for direction in DIRECTIONS:
            answers = true_answers(pairs, i, direction)
            if len(answers) > 1 and not pair.many(direction):
                fits = "many_to_one" if direction == "reverse" else "one_to_many"
                raise InvalidInputError(
                    f"{pair.where or pair.a}: relation {pair.relation!r} is {pair.cardinality} but its {direction} prompt "
                    f"for {_asked(pair, direction)!r} has {len(answers)} answers in the file ({', '.join(answers)}); "
                    f"declare \"cardinality\": \"{fits}\" (any of them then counts as right)")


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


def hard_distractors(
    pairs: list[Pair], index: int, direction: Direction, random_set: list[str], first_token: Callable[[str], int]
) -> list[str]:
    """The hard distractors of one prompt, as many as ``random_set``; ``first_token`` maps an
    answer text (with its leading space) to its first token id.

    The rule, for a prompt with ``K`` random distractors, takes in order, leaving out every right
    answer (:func:`known_true`), the prompt's own subject and repeats, until it
    has ``K``:

    1. **The fact tables' confusables** listed with the pair (``hard_forward`` / ``hard_reverse``,
       most confusable first; :mod:`scrying.reversal.relations` writes them): the largest cities of a
       state or country for its capital (Birmingham for Alabama, Sydney for Australia), capitals and
       currencies of neighbouring countries, neighbouring countries for a capital's country, states
       that have a city of the same name (Portland, Maine for Portland, Oregon).
    2. **Answers sharing the first token**: the relation's other answers whose first token is the
       right answer's (``South Korea`` for ``South Africa``; the model's first-token preference
       cannot separate them).
    3. **The random set**, in its drawn order, to fill up to ``K``: the hard set is never smaller
       than the random set, so the two have the same chance level.
    """
    pair = pairs[index]
    true = known_true(pairs, index, direction)
    answer = pair.answer(direction)
    first = first_token(answer)
    sharing = [c for c in candidates(pairs, index, direction) if first_token(" " + c) == first]
    chosen: list[str] = []
    for x in (*pair.hard(direction), *sharing, *random_set):
        if x not in true and x not in chosen and x.casefold() != pair.subject(direction).casefold():
            chosen.append(x)
        if len(chosen) == len(random_set):
            break
    return chosen
