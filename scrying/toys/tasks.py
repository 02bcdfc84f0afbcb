"""Toy tasks with known ground truth.

Repeated random sequences: ``<bos> x_1 .. x_n x_1 .. x_n``. The second copy is predictable only
by induction (find the earlier occurrence of the current token, copy what followed it), which
needs a previous-token head feeding an induction head (Olsson et al. 2022).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scrying.axes import Float, Int, Tensor
from scrying.errors import ConfigError
from scrying.toys.vocab import SPECIALS

BOS_ID = SPECIALS.index("<bos>")


@dataclass(frozen=True, kw_only=True)
class RepeatedSequenceTask:
    """Random sequences of ``half_len`` content tokens, shown twice after ``<bos>``."""

    n_content: int = 64
    half_len: int = 20

    def __post_init__(self) -> None:
        if self.n_content < 2:
            raise ConfigError(f"RepeatedSequenceTask.n_content must be >= 2, got {self.n_content}")
        if self.half_len < 2:
            raise ConfigError(f"RepeatedSequenceTask.half_len must be >= 2, got {self.half_len}")

    @property
    def seq_len(self) -> int:
        return 1 + 2 * self.half_len

    def sample(self, batch: int, generator: torch.Generator) -> Int[Tensor, "batch pos"]:
        """A batch of sequences, deterministic given the generator's state."""
        half = torch.randint(len(SPECIALS), len(SPECIALS) + self.n_content, (batch, self.half_len), generator=generator)
        bos = torch.full((batch, 1), BOS_ID, dtype=torch.long)
        return torch.cat([bos, half, half], dim=1)

    def second_half_targets(self) -> slice:
        """Positions whose next-token prediction is determined by induction (x_2..x_n of copy 2)."""
        start = 1 + self.half_len  # position of the first token of the second copy
        return slice(start, self.seq_len - 1)


def induction_accuracy(logits: Float[Tensor, "batch pos d_vocab"], tokens: Int[Tensor, "batch pos"], half_len: int) -> float:
    """Top-1 accuracy on the predictable positions of the repeated half."""
    start = 1 + half_len
    preds = logits[:, start:-1].argmax(-1)
    return float((preds == tokens[:, start + 1 :]).float().mean())
