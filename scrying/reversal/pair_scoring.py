"""Scoring pairs in both directions, batched: answer log-probability, rank among distractors,
greedy exact match.

Phases of :func:`score_pairs` (per chunk of pairs, so that a journal can save each chunk):

1. **Candidates**: for each pair and direction, the right answers in the file (the pair's own;
   in the *many* direction of a relation declared ``many_to_one`` or ``one_to_many``, every
   answer the file gives the same prompt: :func:`scrying.reversal.pairs.true_answers`), ``K``
   random distractors drawn (seeded per pair and direction:
   :func:`scrying.reversal.pairs.prompt_random`) from the other answers of the same relation
   (:func:`scrying.reversal.pairs.candidates`: answers also true for the prompt are never
   distractors), and ``K`` hard distractors
   (:func:`scrying.reversal.pairs.hard_distractors`). ``K = None`` takes all of them;
   with :attr:`ReversalConfig.fit`, a relation with fewer candidates than ``K`` uses all it has
   (:func:`relation_distractors`).
2. **Teacher forcing**: every ``prompt + " " + candidate`` row of the chunk, right-padded in
   batches by the shared rule (:func:`scrying.continuations.batched_logprobs`); a candidate's score is
   the sum of its tokens' log-probabilities; the rank is
   ``1 + #{distractors scoring strictly higher than the best right answer}``, among the random
   set (``rank``) and among the hard set (``hard_rank``). With one right answer this is the
   answer's rank.
3. **Greedy decoding**: as many greedy tokens as the longest right answer has
   (:func:`scrying.continuations.batched_greedy`); exact match is token-for-token equality of
   the greedy tokens' start with a right answer (with one answer: equality). In a many direction
   the right answers for exact match also include the fact tables' ``also_true``.

Each pair's result is a :class:`~scrying.reversal.records.PairRecord`.

A :class:`Scorer` turns texts into these numbers; :class:`ModelScorer` is the one for models,
and tests pass constructed scorers whose ranks and accuracies are known exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from tqdm.auto import tqdm

from scrying.axes import Model
from scrying.continuations import batched_greedy, batched_logprobs, continuation_tokens
from scrying.errors import ConfigError, InvalidInputError
from scrying.prompts import tokenize
from scrying.reversal.pairs import (
    DIRECTIONS,
    Direction,
    Pair,
    candidates,
    check_cardinality,
    hard_distractors,
    known_true,
    prompt_random,
    true_answers,
)
from scrying.reversal.records import DirectionRecord, PairRecord

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ReversalConfig:
    """How pairs are scored: ``distractors`` per prompt (None: every other answer of the
    relation), whether a relation with fewer candidates uses all it has (``fit``, with a note)
    or is refused before any scoring, rows per forward pass, the seed that draws distractors,
    pairs per chunk."""

    distractors: int | None = 20
    fit: bool = False
    batch_size: int = 64
    seed: int = 0
    chunk_pairs: int = 16
    progress: bool = False

    def __post_init__(self) -> None:
        if self.distractors is not None and (isinstance(self.distractors, bool) or not isinstance(self.distractors, int)
                                             or self.distractors < 1):
            raise ConfigError(f"ReversalConfig.distractors must be >= 1 or None, got {self.distractors}")
        if self.batch_size < 1:
            raise ConfigError(f"ReversalConfig.batch_size must be >= 1, got {self.batch_size}")
        if self.chunk_pairs < 1:
            raise ConfigError(f"ReversalConfig.chunk_pairs must be >= 1, got {self.chunk_pairs}")

    def settings(self) -> dict[str, Any]:
        """What must match for two runs' records to belong together."""
        return {"distractors": self.distractors, "fit": self.fit, "seed": self.seed}


@runtime_checkable
class AnswerTokenizer(Protocol):
    """An answer's tokens (with its joining space): all :func:`unscorable` needs, so that it runs
    on a tokenizer before the model loads."""

    def answer_tokens(self, text: str, *, what: str) -> list[int]: ...


@runtime_checkable
class Scorer(Protocol):
    """Texts to numbers: what :func:`score_pairs` needs from a model."""

    def answer_tokens(self, text: str, *, what: str) -> list[int]: ...

    def logprobs(self, prompts: list[str], answers: list[str]) -> list[list[float]]: ...

    def greedy(self, prompts: list[str], n_new: list[int]) -> list[list[int]]: ...

    def decode(self, tokens: list[int]) -> str: ...


class ModelScorer:
    """A :class:`Scorer` for a hooked model: prompts with BOS, answers without, rows batched
    ``batch_size`` at a time by the shared rule (:func:`scrying.continuations.length_batches`)."""

    def __init__(self, model: Model, batch_size: int = 64, *, banned: list[int] | None = None):
        self.model = model
        self.batch_size = batch_size
        self.banned = banned  # tokens greedy decoding never chooses (scrying.continuations.non_text_tokens)

    def answer_tokens(self, text: str, *, what: str) -> list[int]:
        return continuation_tokens(self.model, text, what=what)

    def _prompt(self, text: str) -> list[int]:
        return tokenize(self.model, text, what=f"prompt {text!r}")[0].tolist()

    def logprobs(self, prompts: list[str], answers: list[str]) -> list[list[float]]:
        rows = [(self._prompt(p), self.answer_tokens(a, what="answer")) for p, a in zip(prompts, answers, strict=True)]
        return batched_logprobs(self.model, [p for p, _ in rows], [a for _, a in rows], batch_size=self.batch_size)

    def greedy(self, prompts: list[str], n_new: list[int]) -> list[list[int]]:
        return batched_greedy(self.model, [self._prompt(p) for p in prompts], n_new, batch_size=self.batch_size,
                              banned=self.banned)

    def decode(self, tokens: list[int]) -> str:
        return self.model.tokenizer.decode(tokens)


def distractors(pairs: list[Pair], index: int, direction: Direction, config: ReversalConfig,
                k: int | None = None) -> list[str]:
    """The random distractors of one prompt: all candidates, or ``K`` drawn with a seed of their
    own (``k``: the relation's ``K`` from :func:`relation_distractors`; default ``config``'s, or
    with ``fit`` at most the prompt's candidates)."""
    pool = candidates(pairs, index, direction)
    if k is None:
        k = config.distractors
        if k is not None and config.fit:
            k = relation_distractors(pairs, config).k[pairs[index].relation]
    if k is None:
        return pool
    return prompt_random(config.seed, pairs[index], direction).sample(pool, k)


@dataclass(frozen=True)
class DistractorFit:
    """``K`` per relation (``None``: all candidates) and one note per relation whose ``K`` was
    lowered to fit (``ReversalConfig.fit``)."""

    k: dict[str, int | None]
    notes: list[str]


def relation_distractors(pairs: list[Pair], config: ReversalConfig) -> DistractorFit:
    """``K`` for every relation, checked against its prompt with the fewest candidates (no model
    needed: run before one loads). Too few candidates is an error naming the relation, that
    prompt and the largest ``K`` allowed, unless ``config.fit``: then that relation uses them all
    and a note says so. A relation with no candidate at all is always an error."""
    fewest: dict[str, tuple[int, Direction, str]] = {}
    for i, pair in enumerate(pairs):
        for direction in DIRECTIONS:
            n = len(candidates(pairs, i, direction))
            if pair.relation not in fewest or n < fewest[pair.relation][0]:
                fewest[pair.relation] = (n, direction, pair.where or pair.a)
    ks: dict[str, int | None] = {}
    notes = []
    for relation, (n, direction, where) in fewest.items():
        if n == 0:
            raise InvalidInputError(
                f"relation {relation!r} has no other {direction} answer for {where} to rank it against; "
                "a relation needs at least two different answers in each direction")
        if config.distractors is None or n >= config.distractors:
            ks[relation] = config.distractors
        elif config.fit:
            ks[relation] = n
            notes.append(f"relation {relation!r} has only {n} other {direction} answers for {where}: "
                         f"{n} distractors per prompt instead of {config.distractors}")
        else:
            raise InvalidInputError(
                f"{config.distractors} distractors asked, but relation {relation!r} has only {n} "
                f"other {direction} answers for {where} (use --distractors {n} or fewer, or 0 for all)"
            )
    return DistractorFit(ks, notes)


def check_distractors(pairs: list[Pair], config: ReversalConfig) -> DistractorFit:
    """Before any model: each relation's declared cardinality agrees with its lines
    (:func:`~scrying.reversal.pairs.check_cardinality`) and ``K`` fits each relation
    (:func:`relation_distractors`)."""
    fit = relation_distractors(pairs, config)
    check_cardinality(pairs)
    return fit


def check_inputs(scorer: Scorer, pairs: list[Pair], config: ReversalConfig) -> DistractorFit:
    """Before any scoring: :func:`check_distractors`, and every answer tokenizing to something
    (errors name the relation, or the file line); ``K`` per relation."""
    fit = check_distractors(pairs, config)
    for pair in pairs:
        for direction in DIRECTIONS:
            scorer.answer_tokens(pair.answer(direction), what=f"{pair.where}: answer" if pair.where else "answer")
    return fit


def unscorable(scorer: AnswerTokenizer, pairs: list[Pair]) -> dict[int, str]:
    """Pairs an answer of which tokenizes to nothing, with the error naming it (a batch names
    these and scores the rest; :func:`check_inputs` refuses them)."""
    out = {}
    for i, pair in enumerate(pairs):
        for direction in DIRECTIONS:
            try:
                scorer.answer_tokens(pair.answer(direction), what=f"{pair.where}: answer" if pair.where else "answer")
            except InvalidInputError as err:
                out.setdefault(i, str(err))
    return out


@dataclass(frozen=True)
class _Row:
    pair: int
    direction: Direction
    prompt: str
    right: tuple[str, ...]  # the right answers ranked (the pair's own first), with the joining space
    exact: tuple[str, ...]  # the right answers exact match accepts
    random: tuple[str, ...]  # the random distractors
    hard: tuple[str, ...]  # the hard distractors

    def texts(self) -> list[str]:
        """Every candidate to score, once each."""
        return list(dict.fromkeys((*self.right, *self.random, *self.hard)))


def _rank(scores: dict[str, float], right: tuple[str, ...], wrong: tuple[str, ...]) -> int:
    best = max(scores[x] for x in right)
    return 1 + sum(scores[x] > best for x in wrong)


def _direction_record(row: _Row, logprobs: dict[str, list[float]], greedy: list[int], exact: list[list[int]],
                      scorer: Scorer) -> DirectionRecord:
    sums = {text: sum(lp) for text, lp in logprobs.items()}
    own = row.right[0]
    return DirectionRecord(
        prompt=row.prompt,
        answer=own.strip(),
        logprob=sums[own],
        mean_logprob=sums[own] / len(logprobs[own]),
        n_tokens=len(logprobs[own]),
        rank=_rank(sums, row.right, row.random),
        n_candidates=len(row.right) + len(row.random),
        exact=any(greedy[: len(t)] == t for t in exact),
        greedy=scorer.decode(greedy),
        distractors=tuple(c.strip() for c in row.random),
        n_right=len(row.right),
        right_answers=tuple(c.strip() for c in row.right[1:]),
        hard_rank=_rank(sums, row.right, row.hard),
        hard_distractors=tuple(c.strip() for c in row.hard),
    )


def _row(scorer: Scorer, pairs: list[Pair], i: int, d: Direction, config: ReversalConfig, k: int | None) -> _Row:
    pair = pairs[i]
    right = true_answers(pairs, i, d) if pair.many(d) else [pair.answer(d).strip()]
    exact = sorted(known_true(pairs, i, d)) if pair.many(d) else right
    random_set = distractors(pairs, i, d, config, k)

    def first(text: str) -> int:
        return scorer.answer_tokens(text, what="answer")[0]

    hard = hard_distractors(pairs, i, d, random_set, first)
    return _Row(i, d, pair.prompt(d), tuple(" " + x for x in right), tuple(" " + x for x in exact),
                tuple(" " + x for x in random_set), tuple(" " + x for x in hard))


def score_chunk(scorer: Scorer, pairs: list[Pair], indices: list[int], config: ReversalConfig,
                ks: dict[str, int | None] | None = None) -> list[PairRecord]:
    """One record per pair of ``indices``, both directions scored (``ks``: ``K`` per relation,
    default :func:`relation_distractors`)."""
    if ks is None:
        ks = relation_distractors(pairs, config).k
    rows = [_row(scorer, pairs, i, d, config, ks[pairs[i].relation]) for i in indices for d in DIRECTIONS]
    flat = [(r.prompt, c) for r in rows for c in r.texts()]
    scored = scorer.logprobs([p for p, _ in flat], [c for _, c in flat])
    exact = [[scorer.answer_tokens(t, what="answer") for t in r.exact] for r in rows]
    greedy = scorer.greedy([r.prompt for r in rows], [max(len(t) for t in e) for e in exact])
    sides: dict[tuple[int, Direction], DirectionRecord] = {}
    start = 0
    for row, answers, decoded in zip(rows, exact, greedy, strict=True):
        texts = row.texts()
        part = dict(zip(texts, scored[start : start + len(texts)], strict=True))
        start += len(texts)
        sides[row.pair, row.direction] = _direction_record(row, part, decoded, answers, scorer)
    return [
        PairRecord(index=i, a=pairs[i].a, b=pairs[i].b, relation=pairs[i].relation, forward=sides[i, "forward"],
                   reverse=sides[i, "reverse"], extra=dict(pairs[i].extra))
        for i in indices
    ]


def score_pairs(
    scorer: Scorer, pairs: list[Pair], config: ReversalConfig, *, skip: set[int] | frozenset[int] = frozenset()
) -> Iterator[PairRecord]:
    """Records of every pair not in ``skip``, a chunk at a time (see the module docstring)."""
    ks = check_inputs(scorer, pairs, config).k
    todo = [i for i in range(len(pairs)) if i not in skip]
    bar = tqdm(total=len(todo), desc="pairs", unit="pair", disable=not config.progress)
    try:
        for start in range(0, len(todo), config.chunk_pairs):
            chunk = todo[start : start + config.chunk_pairs]
            yield from score_chunk(scorer, pairs, chunk, config, ks)
            bar.update(len(chunk))
    finally:
        bar.close()
