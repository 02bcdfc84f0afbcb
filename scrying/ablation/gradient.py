"""Gradient importance of every head in one forward and one backward pass.

Phases:

1. **Forward** with ``z`` of every layer replaced by ``z + delta`` (``delta = 0`` requires grad),
   stopping after the last block; the metric summed over prompts (prompts are independent, so
   each prompt's gradient is its own).
2. **Backward**: ``g = d metric / d z`` for every layer, head, position.
3. **Scores** per head, averaged over prompts:

   * ``attribution``: the first-order (attribution-patching) estimate of the ablation effect,
     ``sum_{pos, d} (z_abl - z) * g`` over the ablated positions (Nanda 2023; Syed et al. 2023);
   * ``mask_gradient``: Michel et al. (2019), eq. 2: ``|d metric / d xi_h|`` with ``z_h``
     scaled by a mask ``xi_h = 1`` at the ablated positions, i.e. ``|sum_{pos, d} z * g|`` over
     them, averaged over prompts (without the paper's optional per-layer normalisation).

The mean and resample values come from the same forward (the tapped clean ``z``) unless a
reference set is given, which costs one more forward pass.

The metric is read exactly where the sweep reads it (:func:`~scrying.ablation.metrics.read_plan`:
a prompt set's ``target_mask`` if it has one, e.g. the repeated half of :func:`repeated_tokens`),
so ``attribution`` is the slope of the sweep's own effect; a finite-difference check must read the
same positions (TransformerLens's ``return_type="loss"`` averages every position instead).
The KL metric has zero gradient at the clean model (its minimum); use another metric here.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch
from scipy.stats import spearmanr

from scrying.ablation.config import AblationConfig
from scrying.ablation.data import PromptSet
from scrying.ablation.forward import final_resid
from scrying.ablation.metrics import per_prompt
from scrying.ablation.replace import read_and_ablate, replacement_z
from scrying.errors import ConfigError
from scrying.sites import Component, HookFn, Site


def gradient_importance(
    model: Any, prompts: PromptSet, config: AblationConfig | None = None, *, reference: PromptSet | None = None
) -> pd.DataFrame:
    """Columns: layer, head, attribution, mask_gradient (see module docstring)."""
    config = config or AblationConfig()
    if config.metric == "kl":
        raise ConfigError("AblationConfig.metric='kl' has zero gradient at the clean model; use another")
    plan, pos_mask = read_and_ablate(prompts, config)
    deltas: dict[int, torch.Tensor] = {}
    zs: dict[int, torch.Tensor] = {}

    def tap(layer: int) -> HookFn:
        def fn(z: torch.Tensor, hook: Any) -> torch.Tensor:
            zs[layer] = z.detach()
            deltas[layer] = torch.zeros_like(z, requires_grad=True)
            return z + deltas[layer]

        return fn

    forward = {Site(Component.Z, layer): tap(layer) for layer in range(model.cfg.n_layers)}
    with torch.enable_grad():
        resid = final_resid(model, prompts.tokens, forward=forward, read=plan.mask)
        index = torch.arange(prompts.n_prompts)
        values = per_prompt(model, plan, index, resid, chunk=config.read_chunk)
        grads = torch.autograd.grad(values.sum(), [deltas[i] for i in range(model.cfg.n_layers)])
    n_layers = model.cfg.n_layers
    sources = replacement_z(model, prompts, config, reference, z=[zs[layer] for layer in range(n_layers)])
    rows = []
    mask = pos_mask[:, :, None, None].to(grads[0].device, grads[0].dtype)
    for layer, g in enumerate(grads):
        attribution = ((sources[layer] - zs[layer]) * g * mask).sum((1, 3))  # batch head
        mask_grad = (zs[layer] * g * mask).sum((1, 3)).abs()
        for head in range(model.cfg.n_heads):
            rows.append(
                {
                    "layer": layer,
                    "head": head,
                    "attribution": float(attribution[:, head].mean()),
                    "mask_gradient": float(mask_grad[:, head].mean()),
                }
            )
    return pd.DataFrame(rows)


def compare_with_ablation(gradient: pd.DataFrame, ablation: pd.DataFrame) -> tuple[pd.DataFrame, float, float]:
    """Join the two tables; Spearman rank correlations of the true effect with ``attribution``
    and of ``|effect|`` with ``mask_gradient``."""
    joined = ablation.merge(gradient, on=["layer", "head"])
    rho_attr = float(spearmanr(joined["effect"], joined["attribution"]).statistic)
    rho_mask = float(spearmanr(joined["effect"].abs(), joined["mask_gradient"]).statistic)
    return joined, rho_attr, rho_mask
