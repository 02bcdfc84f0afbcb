"""Reverse training's text transformations (Golovneva et al. 2024, "Reverse Training to Nurse the
Reversal Curse", arXiv 2403.13799, section 2): pure functions from a training string to its
reversed string. Reverse training trains on both: every string ``x`` and ``REVERSE(x)``, so that
"all words are used twice".

The paper's four kinds of reversal, of which the text ones live here:

* **token reversal**: the string's tokens in reverse order (:func:`token_reversal`, on token ids;
  for a word-level tokenizer it equals word reversal);
* **word reversal**: the string split into words at whitespace, the words put in reverse order
  and joined with spaces (:func:`word_reversal`); a word keeps its letters and any punctuation
  attached to it;
* **entity-preserving reversal**: word reversal in which the words of each entity keep their
  original order (:func:`entity_preserving_reversal`); the paper finds entities with an entity
  detector, here the caller names them (the experiments know their names and titles);
* **random-segment reversal**: the words cut into consecutive segments of a random length between
  1 and ``k`` words, the segments put in reverse order and the words inside a segment kept in order
  (:func:`random_segment_reversal`, seeded by the caller's ``random.Random``).

The paper's running example, with the person and the film marked as entities:
"Daphne Barrington is the director of A Journey Through Time" becomes
"A Journey Through Time of director the is Daphne Barrington".
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from scrying.errors import InvalidInputError


def token_reversal(tokens: Sequence[int]) -> list[int]:
    """The tokens in reverse order."""
    return list(tokens)[::-1]


def word_reversal(text: str) -> str:
    """The words of ``text`` (split at whitespace) in reverse order, joined with single spaces.

    >>> word_reversal("Paris is the capital of France .")
    '. France of capital the is Paris'
    """
    return " ".join(text.split()[::-1])


def entity_units(text: str, entities: Sequence[str]) -> list[str]:
    """``text`` cut into units: each occurrence of an entity (a run of whole words, matched
    longest first, left to right, never overlapping) is one unit, every other word is one unit.
    An entity that does not occur is an error naming it (a misspelt entity would silently give
    word reversal; one inside a longer entity occurs)."""
    words = text.split()
    spans = sorted({tuple(e.split()) for e in entities if e.split()}, key=len, reverse=True)
    units: list[str] = []
    found: set[tuple[str, ...]] = set()
    i = 0
    while i < len(words):
        for span in spans:
            if tuple(words[i : i + len(span)]) == span:
                units.append(" ".join(span))
                found.add(span)
                i += len(span)
                break
        else:
            units.append(words[i])
            i += 1
    def occurs(span: tuple[str, ...]) -> bool:
        return any(tuple(words[j : j + len(span)]) == span for j in range(len(words)))

    missing = [e for e in entities if e.split() and tuple(e.split()) not in found and not occurs(tuple(e.split()))]
    if missing:
        raise InvalidInputError(f"entity {missing[0]!r} does not occur as whole words in {text!r}")
    return units


def entity_preserving_reversal(text: str, entities: Sequence[str]) -> str:
    """Word reversal of ``text`` in which each entity's words keep their order.

    >>> entity_preserving_reversal("Daphne Barrington is the director of A Journey Through Time",
    ...                            ["Daphne Barrington", "A Journey Through Time"])
    'A Journey Through Time of director the is Daphne Barrington'
    """
    return " ".join(entity_units(text, entities)[::-1])


def random_segment_reversal(text: str, max_words: int, rng: random.Random) -> str:
    """The words cut into consecutive segments of ``rng.randint(1, max_words)`` words, the
    segments in reverse order, each segment's words in their order.

    >>> random_segment_reversal("a b c d", 1, random.Random(0))
    'd c b a'
    """
    if isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 1:
        raise InvalidInputError(f"random_segment_reversal: max_words must be a positive integer, got {max_words!r}")
    words = text.split()
    segments: list[list[str]] = []
    i = 0
    while i < len(words):
        n = rng.randint(1, max_words)
        segments.append(words[i : i + n])
        i += n
    return " ".join(" ".join(s) for s in segments[::-1])
