"""Where a head sweep reads its metric, and the per-prompt value read there.

The formulas are :mod:`scrying.metrics`'s (:func:`~scrying.metrics.metric_values`); this
module decides the positions and targets, and computes logits only where they are read.

A :class:`ReadPlan` says, for every prompt, which positions are read and which token each
predicts. ``logit-diff`` and (with answers) ``logprob``/``kl`` read the last real position;
``loss`` reads every real position (the answer, if given, is the last target); without answers
``loss``/``logprob`` read every position that has a next token and ``kl`` every real position
(a next-token distribution needs no target); ``target_mask`` overrides the positions. The value
of a prompt is the mean over its read positions.

:func:`check_reach` refuses an ablation no read position can see (a causal model's position
reads only itself and earlier ones), whose effect would be exactly zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Bool

from scrying.axes import Float, Int, Model, Tensor
from scrying.errors import InvalidInputError
from scrying.metrics import logit_difference, metric_values
from scrying.models.adapter import logit_columns, logits_at
from scrying.prompt_sets import PromptSet


@dataclass(frozen=True)
class ReadPlan:
    """Read positions ``mask``, next-token ``target`` there, and per-entry indices."""

    metric: str
    mask: Bool[Tensor, "batch pos"]
    target: Int[Tensor, "batch pos"]
    incorrect: Int[Tensor, " batch"] | None
    entry: Int[Tensor, "batch pos"]  # index of each read position among all of them, else -1

    @property
    def n_entries(self) -> int:
        return int(self.mask.sum())


def read_plan(prompts: PromptSet, metric: str) -> ReadPlan:
    """Where ``metric`` reads each prompt and which token it scores there."""
    tokens, lengths = prompts.tokens, prompts.lengths
    batch = torch.arange(tokens.shape[0])
    last = lengths - 1
    target = torch.roll(tokens, -1, dims=1)
    if prompts.correct is not None:
        target[batch, last] = prompts.correct
    if metric == "logit-diff" and (prompts.correct is None or prompts.incorrect is None):
        raise InvalidInputError("the logit-diff metric needs 'correct' and 'incorrect' for every prompt")
    real = prompts.real
    has_next = real & (torch.arange(tokens.shape[1])[None, :] < last[:, None])
    last_mask = torch.zeros_like(real)
    last_mask[batch, last] = True
    if prompts.target_mask is not None:
        mask = prompts.target_mask & real
        unanswered = mask & ~has_next if metric in ("loss", "logprob") and prompts.correct is None else None
        if unanswered is not None and bool(unanswered.any()):
            b = int(unanswered.any(dim=1).nonzero()[0, 0])
            raise InvalidInputError(
                f"target_mask of prompt {b + 1} selects its last position, which predicts no token "
                "of the prompt; give 'correct' answers or leave the last position out"
            )
    elif metric == "logit-diff":
        mask = last_mask
    elif metric == "loss":
        mask = real if prompts.correct is not None else has_next
    elif metric == "kl":
        mask = last_mask if prompts.correct is not None else real
    else:
        mask = last_mask if prompts.correct is not None else has_next
    if not bool(mask.any(dim=1).all()):
        raise InvalidInputError(f"the {metric} metric reads no position of some prompt (too short?)")
    entry = torch.full_like(tokens, -1)
    entry[mask] = torch.arange(int(mask.sum()))
    return ReadPlan(metric, mask, target, prompts.incorrect, entry)


def check_reach(plan: ReadPlan, ablate: Bool[Tensor, "batch pos"]) -> None:
    """Raise unless, in every prompt, some ablated position is at or before some read position."""
    positions = torch.arange(ablate.shape[1])
    first_ablated = torch.where(ablate, positions, ablate.shape[1]).amin(dim=1)
    last_read = torch.where(plan.mask, positions, -1).amax(dim=1)
    unseen = (first_ablated > last_read).nonzero()[:, 0]
    if len(unseen):
        b = int(unseen[0])
        raise InvalidInputError(
            f"prompt {b + 1}: the {plan.metric} metric reads positions up to {int(last_read[b])} but heads "
            f"are ablated only from position {int(first_ablated[b])} on, which no read position sees "
            "(the effect would be 0); give 'correct' answers so the last position is read, or ablate "
            "earlier positions"
        )


def per_prompt(
    model: Model,
    plan: ReadPlan,
    prompt_of_row: Int[Tensor, " row"],
    acts: Float[Tensor, "row pos d"],
    *,
    are_logits: bool = False,
    clean_logprobs: Float[Tensor, "entry d_vocab"] | None = None,
    chunk: int = 256,
) -> Float[Tensor, " row"]:
    """Metric of each row; a row is a (possibly ablated) run of prompt ``prompt_of_row[row]``.

    ``acts`` is the residual stream after the last block (logits are computed only at read
    positions, and for ``logit-diff`` only the two columns it compares), or, with
    ``are_logits``, the logits themselves.
    """
    mask = plan.mask[prompt_of_row]
    rows, pos = mask.nonzero(as_tuple=True)
    base = plan.entry[prompt_of_row[rows], pos]
    target = plan.target[prompt_of_row[rows], pos]
    incorrect = None if plan.incorrect is None else plan.incorrect[prompt_of_row[rows]]
    read: Callable[[slice], torch.Tensor]
    if are_logits:
        read = lambda s: acts[rows[s], pos[s]]  # noqa: E731
    else:
        read = lambda s: next(logits_at(model, acts[rows[s], pos[s]], chunk=chunk))  # noqa: E731
    if plan.metric == "logit-diff" and not are_logits:
        columns = torch.stack([target, incorrect], dim=1)
        parts = [
            logit_columns(model, acts[rows[s], pos[s]], columns[s]).float()
            for s in (slice(i, i + chunk) for i in range(0, len(rows), chunk))
        ]
        first = [torch.zeros(len(p), dtype=torch.long, device=p.device) for p in parts]  # column 0: target
        diffs = [logit_difference(p, f, f + 1) for p, f in zip(parts, first, strict=True)]  # minus column 1
        return _mean_per_row(torch.cat(diffs), rows, prompt_of_row.shape[0])
    parts = []
    for start in range(0, len(rows), chunk):
        s = slice(start, start + chunk)
        clean = None if clean_logprobs is None else clean_logprobs[base[s]]
        inc = None if incorrect is None else incorrect[s]
        parts.append(metric_values(plan.metric, read(s).float(), target[s], inc, clean))
    return _mean_per_row(torch.cat(parts), rows, prompt_of_row.shape[0])


def _mean_per_row(values: Float[Tensor, " read"], rows: Int[Tensor, " read"], n_rows: int) -> Float[Tensor, " row"]:
    values = values.cpu()
    total = torch.zeros(n_rows, dtype=values.dtype).index_add(0, rows, values)
    counts = torch.zeros(n_rows, dtype=values.dtype).index_add(0, rows, torch.ones_like(values))
    return total / counts


def clean_logprobs_at(
    model: Model, plan: ReadPlan, resid: Float[Tensor, "batch pos d_model"], *, chunk: int = 256
) -> Float[Tensor, "entry d_vocab"]:
    """Clean next-token log-probabilities at every read position (for the KL metric)."""
    return torch.cat([lg.float().log_softmax(-1) for lg in logits_at(model, resid[plan.mask], chunk=chunk)])
