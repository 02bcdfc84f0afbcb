"""Toy tasks with known ground truth.

Repeated random sequences: ``<bos>`` then random tokens that repeat with a period. Once a token
has been seen, what follows it is predictable only by induction (find the earlier occurrence of
the current token, copy what followed it), which needs a previous-token head feeding an
induction head (Olsson et al. 2022).

With a fixed period (``min_period=None``: ``<bos> x_1 .. x_n x_1 .. x_n``) a model can cheat with
a purely positional head ("attend n-1 back") and never form a previous-token head. A random
period per sequence (``min_period`` .. ``half_len``) removes that shortcut, so the toy learns the
canonical two-head circuit; that is the default.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scrying.axes import Bool, Float, Int, Tensor
from scrying.errors import ConfigError
from scrying.toys.vocab import SPECIALS

BOS_ID = SPECIALS.index("<bos>")


@dataclass(frozen=True, kw_only=True)
class RepeatedSequenceTask:
    """Sequences of ``1 + 2 * half_len`` tokens repeating with a period in
    ``min_period .. half_len`` (exactly ``half_len`` when ``min_period`` is ``None``)."""

    n_content: int = 64
    half_len: int = 20
    min_period: int | None = 4

    def __post_init__(self) -> None:
        if self.n_content < 2:
            raise ConfigError(f"RepeatedSequenceTask.n_content must be >= 2, got {self.n_content}")
        if self.half_len < 2:
            raise ConfigError(f"RepeatedSequenceTask.half_len must be >= 2, got {self.half_len}")
        if self.min_period is not None and not 2 <= self.min_period <= self.half_len:
            raise ConfigError(
                f"RepeatedSequenceTask.min_period must be in 2..half_len ({self.half_len}), got {self.min_period}"
            )

    @property
    def seq_len(self) -> int:
        return 1 + 2 * self.half_len

    def sample_with_mask(self, batch: int, generator: torch.Generator) -> tuple[Int[Tensor, "batch pos"], Bool[Tensor, "batch pos"]]:
        """Sequences, and which positions' next token is determined by induction."""
        base = torch.randint(len(SPECIALS), len(SPECIALS) + self.n_content, (batch, self.half_len), generator=generator)
        if self.min_period is None:
            period = torch.full((batch, 1), self.half_len)
        else:
            period = torch.randint(self.min_period, self.half_len + 1, (batch, 1), generator=generator)
        body = torch.gather(base, 1, torch.arange(self.seq_len - 1)[None] % period)
        tokens = torch.cat([torch.full((batch, 1), BOS_ID, dtype=torch.long), body], dim=1)
        # token t (t >= 1) repeats token t - period; it is predictable from position t - 1 once
        # the token before it has been seen, i.e. for t >= period + 2.
        index = torch.arange(self.seq_len)[None]
        mask = index + 1 >= period + 2
        mask[:, -1] = False  # the last position has no next token
        return tokens, mask

    def sample(self, batch: int, generator: torch.Generator) -> Int[Tensor, "batch pos"]:
        """A batch of sequences, deterministic given the generator's state."""
        return self.sample_with_mask(batch, generator)[0]


def induction_accuracy(
    logits: Float[Tensor, "batch pos d_vocab"], tokens: Int[Tensor, "batch pos"], mask: Bool[Tensor, "batch pos"]
) -> float:
    """Top-1 accuracy of next-token predictions at the induction-determined positions."""
    correct = logits[:, :-1].argmax(-1) == tokens[:, 1:]
    return float(correct[mask[:, :-1]].float().mean())
