"""Sampled outputs for predict-and-compare: ``n`` continuations per item at temperature 1,
seeded, so sampled exact match can be set against ``p^L`` (Schaeffer et al. 2023, eq. 1: ``p^L``
is the probability of *sampling* every target token).

Phases of :func:`sample_continuations`:

1. **Rows.** Every prompt repeated ``n_samples`` times; rows are batched by the shared rule
   (:func:`scrying.continuations.length_batches`, sorted by length), right-padded, and each
   advances from its own length, as greedy decoding does
   (:func:`scrying.continuations.greedy_continuations`).
2. **Draw.** At each step the next token of every row is drawn from ``softmax(logits)`` over the
   vocabulary (``banned`` tokens removed) with one :class:`torch.Generator` seeded by ``seed``:
   the same seed, items and batch size give the same samples.
"""

from __future__ import annotations

import torch

from scrying.axes import Model
from scrying.continuations import decode_rows, length_batches
from scrying.errors import ConfigError


@torch.no_grad()
def _sample_rows(
    model: Model, prompts: list[list[int]], n_new: list[int], banned: list[int] | None, generator: torch.Generator
) -> list[list[int]]:
    def draw(logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if banned:
            logits[:, banned] = -torch.inf
        return torch.multinomial(torch.softmax(logits, -1).cpu(), 1, generator=generator)[:, 0]

    return decode_rows(model, prompts, n_new, draw)


def sample_continuations(
    model: Model,
    prompts: list[list[int]],
    n_new: list[int],
    *,
    n_samples: int,
    seed: int,
    batch_size: int,
    banned: list[int] | None = None,
) -> list[list[list[int]]]:
    """``n_samples`` sampled continuations of ``n_new[i]`` tokens after each prompt (see the
    module docstring); per prompt, a list of ``n_samples`` token lists."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ConfigError(f"n_samples must be a positive integer, got {n_samples!r}")
    rows = [(i, s) for i in range(len(prompts)) for s in range(n_samples)]
    generator = torch.Generator().manual_seed(seed)
    out: dict[tuple[int, int], list[int]] = {}
    for batch in length_batches([len(prompts[i]) for i, _ in rows], batch_size):
        drawn = _sample_rows(model, [prompts[rows[r][0]] for r in batch], [n_new[rows[r][0]] for r in batch], banned, generator)
        for r, tokens in zip(batch, drawn, strict=True):
            out[rows[r]] = tokens
    return [[out[(i, s)] for s in range(n_samples)] for i in range(len(prompts))]
