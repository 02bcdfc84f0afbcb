"""Metrics of the logits that circuits are found for (one value per prompt; higher = behaviour).

Sign convention used throughout :mod:`scrying.circuits`: an edge's score and its patched effect
are both ``metric(edge corrupted) - metric(clean)``, so edges the behaviour depends on have
negative scores; rankings use ``|score|``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scrying.axes import Float, Int, Tensor
from scrying.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class LogitDiff:
    """``logit[correct] - logit[incorrect]`` at ``position`` (one token id per prompt, or one
    for all prompts)."""

    correct: tuple[int, ...]
    incorrect: tuple[int, ...]
    position: int = -1

    def __post_init__(self) -> None:
        if not self.correct or len(self.correct) != len(self.incorrect):
            raise ConfigError(
                f"LogitDiff.correct and .incorrect must be non-empty and equally long, got "
                f"{len(self.correct)} and {len(self.incorrect)}"
            )

    def __call__(
        self, logits: Float[Tensor, "row pos d_vocab"], prompts: Int[Tensor, " row"]
    ) -> Float[Tensor, " row"]:
        last = logits[:, self.position]
        correct = torch.tensor(self.correct, device=logits.device)
        incorrect = torch.tensor(self.incorrect, device=logits.device)
        idx = prompts if len(self.correct) > 1 else torch.zeros_like(prompts)
        rows = torch.arange(last.shape[0], device=logits.device)
        return last[rows, correct[idx]] - last[rows, incorrect[idx]]


@dataclass(frozen=True, kw_only=True)
class TargetLogProb:
    """Log-probability of ``target`` (one id per prompt, or one for all) at ``position``."""

    target: tuple[int, ...]
    position: int = -1

    def __post_init__(self) -> None:
        if not self.target:
            raise ConfigError("TargetLogProb.target must be non-empty")

    def __call__(
        self, logits: Float[Tensor, "row pos d_vocab"], prompts: Int[Tensor, " row"]
    ) -> Float[Tensor, " row"]:
        logp = torch.log_softmax(logits[:, self.position].float(), dim=-1)
        target = torch.tensor(self.target, device=logits.device)
        idx = prompts if len(self.target) > 1 else torch.zeros_like(prompts)
        return logp[torch.arange(logp.shape[0], device=logits.device), target[idx]]
