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

from typing import Any, NamedTuple

import pandas as pd
import torch

from scrying.ablation.config import AblationConfig
from scrying.ablation.reads import per_prompt
from scrying.ablation.replace import read_and_ablate, replacement_z
from scrying.axes import Model
from scrying.errors import ConfigError
from scrying.models.adapter import final_resid
from scrying.prompt_sets import PromptSet
from scrying.sites import Component, HookFn, Site
from scrying.stats import BootstrapConfig
from scrying.validation_report import ValidationReport, compare


def gradient_importance(
    model: Model, prompts: PromptSet, config: AblationConfig | None = None, *, reference: PromptSet | None = None
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


class GradientCheck(NamedTuple):
    """Gradient importance against the sweep: the joined table and one report per score."""

    table: pd.DataFrame
    attribution: ValidationReport  # predicted: attribution; measured: the ablation effect
    mask_gradient: ValidationReport  # predicted: mask gradient; measured: |ablation effect|


def compare_with_ablation(
    gradient: pd.DataFrame, ablation: pd.DataFrame, bootstrap: BootstrapConfig | None = None
) -> GradientCheck:
    """Join the two tables; validation reports (Spearman with intervals) of the true effect
    against ``attribution`` and of ``|effect|`` against ``mask_gradient``, one row per head."""
    joined = ablation.merge(gradient, on=["layer", "head"])
    metric = str(joined["metric"].iloc[0]) if "metric" in joined and len(joined) else "metric"
    method = str(joined["method"].iloc[0]) if "method" in joined and len(joined) else ""
    heads = joined[["layer", "head"]]
    attribution = compare(
        heads.assign(predicted=joined["attribution"], measured=joined["effect"]),
        target=f"{metric} change when a head is {method} ablated",
        method="predicted: attribution patching, (z_ablated - z) . d metric / d z at the clean run; "
        "measured: the head's ablation effect from the sweep",
        bootstrap=bootstrap,
    )
    mask = compare(
        heads.assign(predicted=joined["mask_gradient"], measured=joined["effect"].abs()),
        target=f"|{metric} change| when a head is {method} ablated",
        method="predicted: Michel et al.'s head-mask gradient |z . d metric / d z|; measured: the "
        "absolute ablation effect from the sweep (a ranking check: the two differ in scale)",
        bootstrap=bootstrap,
    )
    return GradientCheck(joined, attribution, mask)
