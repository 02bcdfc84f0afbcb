"""Score a model on task items, batched: teacher-forced log-probabilities and greedy outputs.

For each :class:`~scrying.emergence.tasks.Item` (``prompt``, ``target``, optional ``choices``):

1. **Tokenize.** The prompt with BOS (:func:`scrying.prompts.tokenize`), the target and each
   choice without BOS (``model.to_tokens(text, prepend_bos=False)``); a continuation that
   tokenizes to nothing is a :class:`~scrying.errors.PromptError` naming the item.
2. **Teacher forcing.** Each sequence ``prompt + continuation`` (the target, and every choice)
   is right-padded into batches of ``batch_size``, formed by the shared rule (sorted by length,
   :func:`scrying.continuations.batched_scores`), and run once. A choice's score is the sum over its
   tokens. The same logits say whether each target token is their argmax (``target_hits``,
   banned tokens excluded as in greedy decoding): per-token argmax accuracy, of which greedy
   exact match is the all-tokens case.
3. **Greedy decoding.** The prompts are batched by the same rule, right-padded, and each row
   advances from its own length (:func:`scrying.continuations.batched_greedy`). Decoding does not stop at an
   end-of-sequence token: every item gets its full ``max_new_tokens`` (default: its target's
   token count). With ``text_only`` (the default) the tokenizer's added tokens are never chosen.
4. **Sampling** (``samples > 0``): as many continuations per item drawn at temperature 1,
   seeded by ``sample_seed`` (:func:`scrying.emergence.sampling.sample_continuations`), scored
   as sampled exact match against ``p^L``.

:func:`score_item_by_item` is the plain reference (one item, one forward per sequence and per
decoding step, no padding); the tests check that :func:`score_items` equals it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from scrying.axes import Model
from scrying.continuations import (
    batched_greedy,
    batched_scores,
    continuation_tokens,
    forced_hits_one,
    forced_logprobs_one,
    greedy_one,
    non_text_tokens,
)
from scrying.emergence.sampling import sample_continuations
from scrying.emergence.tasks import Item
from scrying.errors import ConfigError, PromptError
from scrying.prompts import tokenize

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ScoringConfig:
    """How items are scored: ``batch_size`` sequences per forward; ``max_new_tokens`` greedy
    tokens per item (``None``: as many as the item's target has); ``text_only``: greedy decoding
    never picks a non-text token (:func:`scrying.continuations.non_text_tokens`)."""

    batch_size: int = 16
    max_new_tokens: int | None = None
    text_only: bool = True
    samples: int = 0
    sample_seed: int = 0
    progress: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 0:
            raise ConfigError(f"ScoringConfig.samples must be a non-negative integer, got {self.samples!r}")
        if isinstance(self.sample_seed, bool) or not isinstance(self.sample_seed, int):
            raise ConfigError(f"ScoringConfig.sample_seed must be an integer, got {self.sample_seed!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"ScoringConfig.batch_size must be a positive integer, got {self.batch_size!r}")
        if self.max_new_tokens is not None and (
            isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1
        ):
            raise ConfigError(
                f"ScoringConfig.max_new_tokens must be a positive integer or None, got {self.max_new_tokens!r}"
            )


@dataclass(frozen=True)
class ScoredItem:
    """An item's scores: per-token teacher-forced log-probabilities of the target, the greedy
    continuation (text and tokens), and each choice's total log-probability (if it has choices)."""

    item: str
    prompt: str
    target: str
    target_tokens: list[int]
    target_logprobs: list[float]
    output: str
    output_tokens: list[int]
    choice_logprobs: dict[str, float] | None = None
    samples: list[str] | None = None
    target_hits: list[bool] | None = None  # teacher-forced: is each target token the argmax?

    @property
    def target_logprob(self) -> float:
        """Log-probability of the whole target (sum over its tokens)."""
        return float(sum(self.target_logprobs))


@dataclass(frozen=True)
class _Tokenized:
    prompt: list[int]
    target: list[int]
    choices: dict[str, list[int]] | None
    n_new: int


def _tokenize_item(model: Model, item: Item, config: ScoringConfig) -> _Tokenized:
    prompt = tokenize(model, item.prompt, what=f"item {item.item!r}: prompt")[0].tolist()
    target = continuation_tokens(model, item.target, what=f"item {item.item!r}: target")
    choices = None
    if item.choices is not None:
        choices = {
            c: (target if c == item.target else continuation_tokens(model, c, what=f"item {item.item!r}: choice"))
            for c in item.choices
        }
    n_new = config.max_new_tokens or len(target)
    n_ctx = model.cfg.n_ctx
    longest = max([len(target), n_new] + [len(t) for t in (choices or {}).values()])
    if len(prompt) + longest > n_ctx:
        raise PromptError(
            f"item {item.item!r}: prompt ({len(prompt)} tokens) and its longest continuation "
            f"({longest} tokens) exceed the model's context of {n_ctx}"
        )
    return _Tokenized(prompt, target, choices, n_new)


@torch.no_grad()
def score_items(model: Model, items: list[Item], config: ScoringConfig) -> list[ScoredItem]:
    """Score every item (see the module docstring), ``config.batch_size`` sequences per forward
    (:func:`scrying.continuations.length_batches`); results are in the order of ``items``."""
    tokenized = [_tokenize_item(model, item, config) for item in items]
    # every teacher-forced sequence: (item index, choice or None for the target)
    sequences: list[tuple[int, str | None]] = []
    for i, t in enumerate(tokenized):
        sequences.append((i, None))
        sequences += [(i, c) for c in (t.choices or {}) if c != items[i].target]
    prompts = [tokenized[i].prompt for i, _ in sequences]
    conts = [tokenized[i].target if c is None else tokenized[i].choices[c] for i, c in sequences]
    n_forced = -(-len(sequences) // config.batch_size)
    n_greedy = -(-len(items) // config.batch_size)
    log.info("scoring %d items: %d teacher-forced and %d greedy batches", len(items), n_forced, n_greedy)
    banned = non_text_tokens(model) if config.text_only else None
    bar = tqdm(total=n_forced + n_greedy, desc="scoring", disable=not config.progress)
    forced = batched_scores(model, prompts, conts, batch_size=config.batch_size, banned=banned, after_batch=bar.update)
    logprobs = {key: values for key, (values, _) in zip(sequences, forced, strict=True)}
    hits = {key: flags for key, (_, flags) in zip(sequences, forced, strict=True)}
    outputs = batched_greedy(
        model, [t.prompt for t in tokenized], [t.n_new for t in tokenized],
        batch_size=config.batch_size, banned=banned, after_batch=bar.update,
    )
    bar.close()
    sampled: list[list[list[int]]] | list[None] = [None] * len(items)
    if config.samples:
        sampled = sample_continuations(model, [t.prompt for t in tokenized], [t.n_new for t in tokenized],
                                       n_samples=config.samples, seed=config.sample_seed,
                                       batch_size=config.batch_size, banned=banned)
    results = []
    for i, (item, t) in enumerate(zip(items, tokenized, strict=True)):
        others = {c: logprobs[(i, c)] for c in t.choices if c != item.target} if t.choices else None
        results.append(_scored(model, item, t, logprobs[(i, None)], others, outputs[i], sampled[i], hits[(i, None)]))
    return results


def _scored(
    model: Model,
    item: Item,
    t: _Tokenized,
    target_logprobs: list[float],
    other_choices: dict[str, list[float]] | None,
    output: list[int],
    samples: list[list[int]] | None = None,
    target_hits: list[bool] | None = None,
) -> ScoredItem:
    choice_logprobs = None
    if t.choices is not None:
        per_token = {**(other_choices or {}), item.target: target_logprobs}
        choice_logprobs = {c: float(sum(per_token[c])) for c in t.choices}
    return ScoredItem(
        item=item.item,
        prompt=item.prompt,
        target=item.target,
        target_tokens=t.target,
        target_logprobs=target_logprobs,
        output=model.tokenizer.decode(output),
        output_tokens=output,
        choice_logprobs=choice_logprobs,
        samples=None if samples is None else [model.tokenizer.decode(s) for s in samples],
        target_hits=target_hits,
    )


@torch.no_grad()
def score_item_by_item(model: Model, items: list[Item], config: ScoringConfig) -> list[ScoredItem]:
    """The reference for :func:`score_items`: one item at a time, one forward per sequence, and
    greedy decoding by a full forward per new token; no batching, no padding, full logits."""
    results = []
    for item in tqdm(items, desc="scoring", disable=not config.progress):
        t = _tokenize_item(model, item, config)
        others = {c: forced_logprobs_one(model, t.prompt, ids) for c, ids in (t.choices or {}).items() if c != item.target}
        banned = non_text_tokens(model) if config.text_only else None
        output = greedy_one(model, t.prompt, t.n_new, banned=banned)
        target = forced_logprobs_one(model, t.prompt, t.target)
        hits = forced_hits_one(model, t.prompt, t.target, banned=banned)
        results.append(_scored(model, item, t, target, others if t.choices else None, output, None, hits))
    return results
