"""The metrics every instrument reads from logits: one implementation of each.

Formulas, on rows of logits ``[read, d_vocab]`` (one row per position read):

* ``logit-diff``: ``logit[correct] - logit[incorrect]``;
* ``logprob``: ``log softmax(logits)[target]``;
* ``loss``: ``-log softmax(logits)[target]`` (next-token cross-entropy);
* ``kl``: ``KL(clean || run) = sum_t p_clean(t) (log p_clean(t) - log p_run(t))``;
* ``demeaned-logit``: ``logit[target] - mean(logits)`` (circuit-tracer's logit target; not in
  :data:`METRICS`, which lists what a head sweep can read).

:func:`metric_values` computes any of the first four from rows; it is the single place where
those formulas live. Two ways to use them:

* the :class:`Metric` protocol — a callable ``metric(logits [row pos d_vocab], prompts [row])
  -> [row]`` reading one position per row, with a ``name`` — implemented by :class:`LogitDiff`,
  :class:`TargetLogProb`, :class:`Loss`, :class:`KL` and :class:`DemeanedLogit`; used by circuits
  (EAP, patching, faithfulness) and by graph validation;
* :mod:`scrying.ablation.reads`, which reads many positions per prompt from residuals (logits
  only where read) and calls :func:`metric_values` on those rows.

Sign convention used by :mod:`scrying.circuits`: an edge's score and its patched effect are both
``metric(edge corrupted) - metric(clean)``, so edges the behaviour depends on have negative
scores; rankings use ``|score|``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

import torch

from scrying.axes import Float, Int, Tensor
from scrying.errors import ConfigError, InvalidInputError

#: The metrics a head sweep can read (``AblationConfig.metric``, ``scrying ablate --metric``).
METRICS = ("logit-diff", "logprob", "loss", "kl")


def logit_difference(
    logits: Float[Tensor, "read d_vocab"], correct: Int[Tensor, " read"], incorrect: Int[Tensor, " read"]
) -> Float[Tensor, " read"]:
    return logits.gather(-1, correct[:, None])[:, 0] - logits.gather(-1, incorrect[:, None])[:, 0]


def target_logprob(logits: Float[Tensor, "read d_vocab"], target: Int[Tensor, " read"]) -> Float[Tensor, " read"]:
    return logits.float().log_softmax(-1).gather(-1, target[:, None])[:, 0]


def kl_divergence(
    clean_logprobs: Float[Tensor, "read d_vocab"], logits: Float[Tensor, "read d_vocab"]
) -> Float[Tensor, " read"]:
    """``KL(clean || run)``; xlogy-style: terms with clean probability 0 are 0 (finite)."""
    logprobs = logits.float().log_softmax(-1)
    p = clean_logprobs.exp()
    return torch.where(p > 0, p * (clean_logprobs - logprobs), 0.0).sum(-1)


def demeaned_logit(logits: Float[Tensor, "*row d_vocab"], token_id: int) -> Float[Tensor, "*row"]:
    """``logit[token] - mean(logits)``: invariant to a constant added to every logit."""
    return logits[..., token_id] - logits.mean(-1)


def metric_values(
    name: str,
    logits: Float[Tensor, "read d_vocab"],
    target: Int[Tensor, " read"],
    incorrect: Int[Tensor, " read"] | None = None,
    clean_logprobs: Float[Tensor, "read d_vocab"] | None = None,
) -> Float[Tensor, " read"]:
    """The metric ``name`` (one of :data:`METRICS`) at each read row: ``target`` is the correct
    or next token; ``incorrect`` is needed by ``logit-diff``, ``clean_logprobs`` by ``kl``."""
    device = logits.device
    target = target.to(device)
    if name == "logit-diff":
        if incorrect is None:
            raise InvalidInputError("the logit-diff metric needs an incorrect token per read position")
        return logit_difference(logits, target, incorrect.to(device))
    if name == "kl":
        if clean_logprobs is None:
            raise InvalidInputError("the kl metric needs the clean log-probabilities at each read position")
        return kl_divergence(clean_logprobs.to(device), logits)
    if name == "logprob":
        return target_logprob(logits, target)
    if name == "loss":
        return -target_logprob(logits, target)
    raise ConfigError(f"unknown metric {name!r}; expected one of {', '.join(METRICS)}")


@runtime_checkable
class Metric(Protocol):
    """A scalar per row from logits: ``metric(logits, prompts)``, where ``prompts[row]`` says
    which prompt (of a batch) row ``row`` is a run of, so per-prompt tokens can be looked up."""

    name: ClassVar[str]

    def __call__(self, logits: Float[Tensor, "row pos d_vocab"], prompts: Int[Tensor, " row"]) -> Float[Tensor, " row"]: ...


def _per_row(values: tuple[int, ...], prompts: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The value of each row's prompt (one value shared by all prompts, or one per prompt)."""
    table = torch.tensor(values, device=device)
    return table[prompts.to(device)] if len(values) > 1 else table.expand(prompts.shape[0])


def _check_tokens(owner: str, field: str, values: tuple[int, ...]) -> None:
    if not values:
        raise ConfigError(f"{owner}.{field} must be non-empty")


@dataclass(frozen=True, kw_only=True)
class LogitDiff:
    """``logit[correct] - logit[incorrect]`` at ``position`` (one token id per prompt, or one
    for all prompts)."""

    name: ClassVar[str] = "logit-diff"
    correct: tuple[int, ...]
    incorrect: tuple[int, ...]
    position: int = -1

    def __post_init__(self) -> None:
        if not self.correct or len(self.correct) != len(self.incorrect):
            raise ConfigError(
                f"LogitDiff.correct and .incorrect must be non-empty and equally long, got "
                f"{len(self.correct)} and {len(self.incorrect)}"
            )

    def __call__(self, logits: Float[Tensor, "row pos d_vocab"], prompts: Int[Tensor, " row"]) -> Float[Tensor, " row"]:
        device = logits.device
        return metric_values(
            self.name, logits[:, self.position], _per_row(self.correct, prompts, device),
            _per_row(self.incorrect, prompts, device),
        )


@dataclass(frozen=True, kw_only=True)
class TargetLogProb:
    """Log-probability of ``target`` (one id per prompt, or one for all) at ``position``."""

    name: ClassVar[str] = "logprob"
    target: tuple[int, ...]
    position: int = -1

    def __post_init__(self) -> None:
        _check_tokens(type(self).__name__, "target", self.target)

    def __call__(self, logits: Float[Tensor, "row pos d_vocab"], prompts: Int[Tensor, " row"]) -> Float[Tensor, " row"]:
        return metric_values(self.name, logits[:, self.position], _per_row(self.target, prompts, logits.device))


@dataclass(frozen=True, kw_only=True)
class Loss(TargetLogProb):
    """Cross-entropy ``-log p(target)`` at ``position``."""

    name: ClassVar[str] = "loss"


@dataclass(frozen=True, kw_only=True)
class KL:
    """``KL(clean || run)`` of the next-token distribution at ``position``; ``clean_logprobs``:
    the clean run's log-probabilities there, one row per prompt."""

    name: ClassVar[str] = "kl"
    clean_logprobs: Float[Tensor, "prompt d_vocab"]
    position: int = -1

    def __post_init__(self) -> None:
        if self.clean_logprobs.ndim != 2:
            raise ConfigError(f"KL.clean_logprobs must be [prompt, d_vocab], got shape {tuple(self.clean_logprobs.shape)}")

    def __call__(self, logits: Float[Tensor, "row pos d_vocab"], prompts: Int[Tensor, " row"]) -> Float[Tensor, " row"]:
        rows = logits[:, self.position]
        clean = self.clean_logprobs.to(rows.device)[prompts.to(rows.device)]
        return metric_values(self.name, rows, torch.zeros_like(prompts), clean_logprobs=clean)


@dataclass(frozen=True, kw_only=True)
class DemeanedLogit:
    """``logit[target] - mean(logits)`` at ``position`` (the logit target of attribution graphs)."""

    name: ClassVar[str] = "demeaned-logit"
    target: int
    position: int = -1

    def __call__(self, logits: Float[Tensor, "row pos d_vocab"], prompts: Int[Tensor, " row"]) -> Float[Tensor, " row"]:
        return demeaned_logit(logits[:, self.position], self.target)
