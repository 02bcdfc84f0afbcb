"""Head detector: previous-token, duplicate-token and induction scores from attention patterns.

Phases (Olsson et al. 2022, "In-context learning and induction heads"):

1. **Repeated sequences** ``BOS x_1..x_n x_1..x_n`` of random tokens (:func:`repeated_tokens`).
2. **Scores** from the clean attention pattern ``A[q, k]`` of each head, averaged over prompts:
   previous-token = mean over ``q >= 1`` of ``A[q, q-1]``; duplicate-token = mean over the second
   copy of ``A[q, q-n]`` (the earlier copy of the same token); induction = mean over the second
   copy of ``A[q, q-n+1]`` (the token after the earlier copy). A perfect head scores 1. This is
   the induction score of Olsson et al. and of the TransformerLens tutorials; TransformerLens's
   ``head_detector`` instead divides by every query row and credits each earlier occurrence of
   a repeated token, so its scores of the same heads are lower (a perfect induction head on
   ``2n + 1`` tokens scores ``n / (2n + 1)`` there).
3. **Confirmation by ablation** (:func:`detect_heads`): the loss increase on the repeated half
   when each head is ablated, next to the scores.
"""

from __future__ import annotations

import pandas as pd
import torch

from scrying.ablation.config import AblationConfig
from scrying.ablation.sweep import head_sweep
from scrying.axes import Float, Int, Model, Tensor
from scrying.errors import InvalidInputError
from scrying.models.adapter import to_model
from scrying.prompt_sets import PromptSet, repeated_tokens
from scrying.sites import Component, Site, recorded
from scrying.stats import BootstrapConfig

SCORES = ("previous_token", "duplicate_token", "induction")


@torch.no_grad()
def head_scores(model: Model, tokens: Int[Tensor, "batch pos"], half_len: int) -> pd.DataFrame:
    """Columns: layer, head, previous_token, duplicate_token, induction (each in [0, 1])."""
    rows = []
    for layer, pattern in enumerate(_patterns(model, tokens)):
        scores = _scores(pattern, half_len)
        for head in range(model.cfg.n_heads):
            rows.append({"layer": layer, "head": head, **{k: float(v[head]) for k, v in scores.items()}})
    return pd.DataFrame(rows)


def _patterns(model: Model, tokens: torch.Tensor) -> list[torch.Tensor]:
    sites = [Site(Component.PATTERN, layer) for layer in range(model.cfg.n_layers)]
    with recorded(model, sites) as store:
        model(to_model(model, tokens), return_type=None)
    return [store[site] for site in sites]


def _scores(pattern: Float[Tensor, "batch head pos_q pos_k"], n: int) -> dict[str, torch.Tensor]:
    mean = pattern.mean(0)  # head pos_q pos_k
    second = torch.arange(1 + n, 1 + 2 * n)  # positions of the second copy
    q_all = torch.arange(1, mean.shape[-1])
    return {
        "previous_token": mean[:, q_all, q_all - 1].mean(-1),
        "duplicate_token": mean[:, second, second - n].mean(-1),
        "induction": mean[:, second, second - n + 1].mean(-1),
    }


def detect_heads(
    model: Model,
    *,
    n_prompts: int = 16,
    half_len: int = 20,
    seed: int = 0,
    config: AblationConfig | None = None,
    bootstrap: BootstrapConfig | None = None,
    prompts: PromptSet | None = None,
) -> pd.DataFrame:
    """Detector scores beside the ablation effect on the loss of the repeated half.

    ``prompts`` (default: :func:`repeated_tokens`) must be repeated sequences of ``half_len``.
    Columns: layer, head, the three scores, effect, ci_low, ci_high (loss increase when the
    head is ablated; larger means the head matters more for induction).
    """
    prompts = prompts or repeated_tokens(model, n_prompts, half_len, seed=seed)
    n_pos = prompts.tokens.shape[1]
    if n_pos != 2 * half_len + 1 or not bool(prompts.real.all()):
        raise InvalidInputError(
            f"detect_heads needs unpadded repeated sequences of 2 * half_len + 1 = {2 * half_len + 1} "
            f"tokens (BOS, then the same {half_len} tokens twice); got {n_pos} positions"
        )
    second = prompts.tokens[:, 1 + half_len :]
    if not torch.equal(second, prompts.tokens[:, 1 : 1 + half_len]):
        raise InvalidInputError(f"detect_heads prompts are not a sequence of {half_len} tokens repeated twice")
    config = config or AblationConfig(metric="loss", method="mean")
    scores = head_scores(model, prompts.tokens, half_len)
    table = head_sweep(model, prompts, config).table(bootstrap)
    keep = ["layer", "head", "effect", "ci_low", "ci_high", "metric", "method"]
    return scores.merge(table[keep], on=["layer", "head"])
