"""Per-head effects with percentile-bootstrap confidence intervals over prompts (Efron 1979).

Phases: draw ``n_resamples`` seeded resamples of the prompt indices (with replacement); mean
effect of each head on each resample; the interval is the ``(1 - confidence) / 2`` and
``(1 + confidence) / 2`` quantiles of those means.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import einops
import numpy as np
import pandas as pd
import torch

from scrying.ablation.config import BootstrapConfig
from scrying.axes import Float, Tensor

if TYPE_CHECKING:
    from scrying.ablation.sweep import SweepResult


def bootstrap_means(
    values: Float[Tensor, "*item prompt"], config: BootstrapConfig
) -> Float[Tensor, " sample *item"]:
    """Mean over prompts of each bootstrap resample: a resample is how many times it draws each
    prompt, so its mean is ``counts @ values / n`` (no ``item x sample x prompt`` tensor)."""
    n = values.shape[-1]
    gen = torch.Generator().manual_seed(config.seed)
    index = torch.randint(n, (config.n_resamples, n), generator=gen)
    counts = torch.zeros(config.n_resamples, n, dtype=values.dtype).scatter_add_(
        1, index, torch.ones(index.shape, dtype=values.dtype)
    )
    return einops.einsum(counts, values, "sample prompt, ... prompt -> sample ...") / n


def interval(values: Float[Tensor, "*item prompt"], config: BootstrapConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower and upper percentile-bootstrap bounds of the mean."""
    means = bootstrap_means(values.double(), config)
    alpha = (1 - config.confidence) / 2
    bounds = np.quantile(means.numpy(), [alpha, 1 - alpha], axis=0)  # torch.quantile caps the size
    return torch.from_numpy(bounds[0]), torch.from_numpy(bounds[1])


def effect_table(result: SweepResult, config: BootstrapConfig) -> pd.DataFrame:
    """Columns: layer, head, effect, ci_low, ci_high, confidence, n_prompts, metric, method,
    clean_metric."""
    layers = [layer for layer, _ in result.heads]
    heads = [head for _, head in result.heads]
    values = result.effects[layers, heads]  # head-in-list prompt
    low, high = interval(values, config)
    return pd.DataFrame(
        {
            "layer": layers,
            "head": heads,
            "effect": values.double().mean(-1).numpy(),
            "ci_low": low.numpy(),
            "ci_high": high.numpy(),
            "confidence": config.confidence,
            "n_prompts": values.shape[-1],
            "metric": result.metric,
            "method": result.method,
            "clean_metric": float(result.clean.double().mean()),
        }
    )
