"""A scaling law beside the emergence verdict: the per-token loss of the target against scale
as a power law (Kaplan et al. 2020, eq. 1.1-1.3: ``L(C) = (C_c / C)^alpha``; "As below, so
above": the smooth curve the nonlinear metrics are read against).

Phases of :func:`fit_scaling_law`:

1. **Loss.** Per model, the mean over items of the target's per-token cross-entropy in nats,
   ``-mean_j log p(t_j)`` = ``-log`` of the item's per-token probability.
2. **Fit.** Least squares of ``log10 loss`` on ``log10 scale``: ``log10 L = log10 a - alpha
   log10 C``, i.e. ``L = a C^-alpha``; ``R^2`` of that line.
3. **Intervals.** Percentile bootstrap over items (the same seeded resamples for every model,
   :func:`scrying.stats.bootstrap_means`): each resample's losses are fitted again; the interval
   of ``alpha`` and of the fitted loss at every model.

A loss that stops falling (an irreducible term, or a target already learned) bends the line in
log-log axes; ``R^2`` says how much of the curve the power law holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from scrying.errors import InvalidInputError
from scrying.stats import BootstrapConfig, bootstrap_means


@dataclass(frozen=True)
class ScalingLaw:
    """``loss = a * scale^-alpha`` with intervals; ``table``: per model, model, label, scale,
    loss, loss_low, loss_high, fitted, fitted_low, fitted_high (nats per token)."""

    alpha: float
    alpha_ci: tuple[float, float]
    a: float
    r2: float
    table: pd.DataFrame

    def to_json(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "alpha_ci": list(self.alpha_ci), "a": self.a, "r2": self.r2,
                "models": self.table.to_dict(orient="records")}


def _fit(x: np.ndarray, log_loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slope and intercept of ``log_loss[..., model]`` on ``x`` (least squares, vectorised)."""
    xc = x - x.mean()
    slope = ((log_loss - log_loss.mean(-1, keepdims=True)) * xc).sum(-1) / (xc**2).sum()
    return slope, log_loss.mean(-1) - slope * x.mean()


def fit_scaling_law(scores: pd.DataFrame, bootstrap: BootstrapConfig) -> ScalingLaw:
    """The power law of the module docstring, from a tidy score table
    (:func:`scrying.emergence.outputs.score_outputs`, its per-token probability rows)."""
    part = scores[scores.metric == "per_token_probability"]
    if part.empty:
        raise InvalidInputError("a scaling law needs per-token probabilities; the scores have none")
    table = part.pivot(index="model", columns="item", values="value")
    models = part.drop_duplicates("model").sort_values("scale")[["model", "label", "scale"]]
    table = table.reindex(list(models["model"]))
    if table.isna().any().any():
        raise InvalidInputError("every model must score the same items; per_token_probability is missing some")
    if len(models) < 2:
        raise InvalidInputError(f"a scaling law needs at least 2 models, got {len(models)}")
    loss = -np.log(np.maximum(table.to_numpy(dtype=float), 1e-300))  # model item, nats per token
    x = np.log10(models["scale"].to_numpy(dtype=float))
    means = np.concatenate([loss.mean(1)[None], bootstrap_means(torch.from_numpy(loss), bootstrap).numpy()])
    log_loss = np.log10(np.maximum(means, 1e-12))
    slope, intercept = _fit(x, log_loss)
    fitted = 10 ** (intercept[:, None] + slope[:, None] * x[None])
    residual = ((log_loss[0] - np.log10(fitted[0])) ** 2).sum()
    total = ((log_loss[0] - log_loss[0].mean()) ** 2).sum()
    q = list(bootstrap.quantiles)
    out = models.reset_index(drop=True).copy()
    out["loss"] = means[0]
    out["loss_low"], out["loss_high"] = np.quantile(means[1:], q, axis=0)
    out["fitted"] = fitted[0]
    out["fitted_low"], out["fitted_high"] = np.quantile(fitted[1:], q, axis=0)
    alpha_low, alpha_high = np.quantile(-slope[1:], q)
    return ScalingLaw(float(-slope[0]), (float(alpha_low), float(alpha_high)), float(10 ** intercept[0]),
                      float(1 - residual / total) if total > 0 else 0.0, out)
