"""Scoring pairs in both directions, batched: answer log-probability, rank among distractors,
greedy exact match.

Phases of :func:`score_pairs` (per chunk of pairs, so that a journal can save each chunk):

1. **Candidates**: for each pair and direction, the true answer and ``K`` distractors drawn
   (seeded per pair and direction: :func:`scrying.reversal.pairs.prompt_random`) from the other
   answers of the same relation
   (:func:`scrying.reversal.pairs.candidates`: answers also true for the prompt are never
   distractors). ``K = None`` takes all of them.
2. **Teacher forcing**: every ``prompt + " " + candidate`` row of the chunk, right-padded in
   batches by the shared rule (:func:`scrying.continuations.batched_logprobs`); a candidate's score is
   the sum of its tokens' log-probabilities; the answer's rank is
   ``1 + #{distractors scoring strictly higher}``.
3. **Greedy decoding**: as many greedy tokens as the answer has
   (:func:`scrying.continuations.batched_greedy`); exact match is token-for-token equality.

Each pair's result is a :class:`~scrying.reversal.records.PairRecord`.

A :class:`Scorer` turns texts into these numbers; :class:`ModelScorer` is the one for models,
and tests pass constructed scorers whose ranks and accuracies are known exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from tqdm.auto import tqdm

from scrying.axes import Model
from scrying.continuations import batched_greedy, batched_logprobs, continuation_tokens
from scrying.errors import ConfigError, InvalidInputError
from scrying.prompts import tokenize
from scrying.reversal.pairs import DIRECTIONS, Direction, Pair, candidates, prompt_random
from scrying.reversal.records import DirectionRecord, PairRecord


@dataclass(frozen=True, kw_only=True)
class ReversalConfig:
    """How pairs are scored: ``distractors`` per prompt (None: every other answer of the
    relation), rows per forward pass, the seed that draws distractors, pairs per chunk."""

    distractors: int | None = 20
    batch_size: int = 64
    seed: int = 0
    chunk_pairs: int = 16
    progress: bool = False

    def __post_init__(self) -> None:
        if self.distractors is not None and self.distractors < 1:
            raise ConfigError(f"ReversalConfig.distractors must be >= 1 or None, got {self.distractors}")
        if self.batch_size < 1:
            raise ConfigError(f"ReversalConfig.batch_size must be >= 1, got {self.batch_size}")
        if self.chunk_pairs < 1:
            raise ConfigError(f"ReversalConfig.chunk_pairs must be >= 1, got {self.chunk_pairs}")

    def settings(self) -> dict[str, Any]:
        """What must match for two runs' records to belong together."""
        return {"distractors": self.distractors, "seed": self.seed}


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


def distractors(pairs: list[Pair], index: int, direction: Direction, config: ReversalConfig) -> list[str]:
    """The distractors of one prompt: all candidates, or ``K`` drawn with a seed of their own."""
    pool = candidates(pairs, index, direction)
    k = config.distractors
    if k is None:
        return pool
    return prompt_random(config.seed, pairs[index], direction).sample(pool, k)


def check_distractors(pairs: list[Pair], config: ReversalConfig) -> None:
    """``K`` no larger than any prompt's candidates (no model needed: run before one loads). The
    error names the relation, its prompt with the fewest candidates, and the largest ``K`` allowed."""
    if config.distractors is None:
        return
    fewest: dict[str, tuple[int, Direction, str]] = {}
    for i, pair in enumerate(pairs):
        for direction in DIRECTIONS:
            n = len(candidates(pairs, i, direction))
            if pair.relation not in fewest or n < fewest[pair.relation][0]:
                fewest[pair.relation] = (n, direction, pair.where or pair.a)
    for relation, (n, direction, where) in fewest.items():
        if n < config.distractors:
            raise InvalidInputError(
                f"{config.distractors} distractors asked, but relation {relation!r} has only {n} "
                f"other {direction} answers for {where} (use --distractors {n} or fewer, or 0 for all)"
            )


def check_inputs(scorer: Scorer, pairs: list[Pair], config: ReversalConfig) -> None:
    """Before any scoring: :func:`check_distractors`, and every answer tokenizing to something
    (errors name the relation, or the file line)."""
    check_distractors(pairs, config)
    for pair in pairs:
        for direction in DIRECTIONS:
            scorer.answer_tokens(pair.answer(direction), what=f"{pair.where}: answer" if pair.where else "answer")


def unscorable(scorer: Scorer, pairs: list[Pair]) -> dict[int, str]:
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
    candidates: tuple[str, ...]  # the answer first, then the distractors


def _direction_record(row: _Row, logprobs: list[list[float]], greedy: list[int], answer: list[int], scorer: Scorer) -> DirectionRecord:
    sums = [sum(lp) for lp in logprobs]
    true = sums[0]
    return DirectionRecord(
        prompt=row.prompt,
        answer=row.candidates[0].strip(),
        logprob=true,
        mean_logprob=true / len(logprobs[0]),
        n_tokens=len(logprobs[0]),
        rank=1 + sum(s > true for s in sums[1:]),
        n_candidates=len(sums),
        exact=greedy == answer,
        greedy=scorer.decode(greedy),
        distractors=tuple(c.strip() for c in row.candidates[1:]),
    )


def score_chunk(scorer: Scorer, pairs: list[Pair], indices: list[int], config: ReversalConfig) -> list[PairRecord]:
    """One record per pair of ``indices``, both directions scored."""
    rows = [
        _Row(i, d, pairs[i].prompt(d), (pairs[i].answer(d), *(" " + x for x in distractors(pairs, i, d, config))))
        for i in indices
        for d in DIRECTIONS
    ]
    flat = [(r.prompt, c) for r in rows for c in r.candidates]
    scored = scorer.logprobs([p for p, _ in flat], [c for _, c in flat])
    answers = [scorer.answer_tokens(r.candidates[0], what="answer") for r in rows]
    greedy = scorer.greedy([r.prompt for r in rows], [len(a) for a in answers])
    sides: dict[tuple[int, Direction], DirectionRecord] = {}
    start = 0
    for row, answer, decoded in zip(rows, answers, greedy, strict=True):
        part = scored[start : start + len(row.candidates)]
        start += len(row.candidates)
        sides[row.pair, row.direction] = _direction_record(row, part, decoded, answer, scorer)
    return [
        PairRecord(index=i, a=pairs[i].a, b=pairs[i].b, relation=pairs[i].relation, forward=sides[i, "forward"],
                   reverse=sides[i, "reverse"], extra=dict(pairs[i].extra))
        for i in indices
    ]


def score_pairs(
    scorer: Scorer, pairs: list[Pair], config: ReversalConfig, *, skip: set[int] | frozenset[int] = frozenset()
) -> Iterator[PairRecord]:
    """Records of every pair not in ``skip``, a chunk at a time (see the module docstring)."""
    check_inputs(scorer, pairs, config)
    todo = [i for i in range(len(pairs)) if i not in skip]
    bar = tqdm(total=len(todo), desc="pairs", unit="pair", disable=not config.progress)
    try:
        for start in range(0, len(todo), config.chunk_pairs):
            chunk = todo[start : start + config.chunk_pairs]
            yield from score_chunk(scorer, pairs, chunk, config)
            bar.update(len(chunk))
    finally:
        bar.close()
