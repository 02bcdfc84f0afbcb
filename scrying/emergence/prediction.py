"""Predict-and-compare: does the continuous metric, fitted smoothly, predict the nonlinear one?

This is Schaeffer, Miranda & Koyejo's test (2023, "Are Emergent Abilities of Large Language
Models a Mirage?", sec. 2, eq. 1 and Figs. 2-3): if the per-token quantity ``c`` changes smoothly
with scale, an answer of ``L`` tokens that must all be right scores about ``c^L``, which rises
sharply although nothing in the model did. A jump that a *smooth* fit of ``c`` reproduces
through ``c^L`` is a property of the metric (a mirage); one that it does not reproduce, while
the measured ``c`` itself does, is a property of the model.

Phases of :func:`predict_and_compare`:

1. **Mode.** *Sampled* when the scores hold sampled exact match (``s`` outputs sampled per
   item at temperature 1, :mod:`scrying.emergence.sampling`): the measured curve is sampled
   exact match, ``c`` the per-token probability ``p`` and the prediction ``p^L`` (eq. 1: the
   probability of sampling every target token). *Greedy* otherwise: the measured curve is greedy
   exact match, ``c`` the per-token accuracy of the greedy output ``a`` and the prediction
   ``a^L``; a greedy output is exact whenever every token is the argmax, however unsure, so
   ``p^L`` is not its prediction. Greedy outputs without token ids have no per-token accuracy:
   the prediction falls back to ``p^L`` and says so (``mode = "greedy-vs-p"``).
2. **Smooth fit.** The mean of ``c`` per model against ``x = log10(scale)``: least squares with
   a polynomial of degree ``min(2, n_models - 2)``, clipped to [0, 1]. A quadratic bends once:
   it fits a straight ramp and a curve that accelerates or saturates, but not a step, nor a
   plateau-rise-plateau inside the studied range (with fewer than 4 models nothing is left to
   test a fit against, and the comparison is undecided).
3. **Prediction.** Per model ``j``: ``mean_i c_hat_j^{L_ij}`` over the items ``i`` with their own
   token counts ``L_ij`` (the *smooth* prediction), and the same with the measured mean ``c_j``
   (the *direct* prediction, which carries whatever the continuous metric does, jumps included).
4. **Intervals.** Percentile bootstrap over items (:func:`scrying.stats.bootstrap_means`, the
   same seeded resamples for every model, so curves and differences are paired); each resample
   is fitted and predicted again. Per model: intervals of the measured curve, of both
   predictions, and of ``measured - prediction``.
5. **Compare.** A prediction *misses* a model when the interval of ``measured - prediction``
   excludes 0 and the difference is larger than ``tolerance`` (a prediction is a model: a
   difference of a few points of accuracy, such as positions that are not independent
   make, is not what the question is about; default 0.1). A prediction
   *reproduces* the curve when it misses no model. By the same test the per-token probability
   ``p`` is *smooth* when its own smooth fit misses no model: in greedy mode the per-token
   accuracy is itself a threshold of ``p`` (the argmax flips as ``p`` crosses the runner-up), so
   a jump carried by ``a`` alone is not yet a jump in the model's probabilities.
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
class Prediction:
    """The comparison: ``mode`` (sampled, greedy, greedy-vs-p), the measured and continuous
    metrics' names, whether each prediction reproduces the measured curve (None: too few
    models), and per model the table (model, label, scale, measured, measured_low/high,
    continuous, smooth_continuous, smooth, smooth_low/high, direct, direct_low/high,
    smooth_missed, direct_missed)."""

    mode: str
    measured: str
    continuous: str
    degree: int
    smooth_reproduces: bool | None
    direct_reproduces: bool | None
    probability_smooth: bool | None
    table: pd.DataFrame

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "measured": self.measured, "continuous": self.continuous, "degree": self.degree,
                "smooth_reproduces": self.smooth_reproduces, "direct_reproduces": self.direct_reproduces,
                "probability_smooth": self.probability_smooth,
                "models": self.table.to_dict(orient="records")}


def _matrix(scores: pd.DataFrame, metric: str, order: list[str], column: str = "value") -> np.ndarray:
    table = scores[scores.metric == metric].pivot(index="model", columns="item", values=column).reindex(order)
    if table.isna().any().any():
        raise InvalidInputError(f"every model must score the same items; {metric} is missing some")
    return table.sort_index(axis=1).to_numpy(dtype=float)


def hat_matrix(x: np.ndarray, degree: int) -> np.ndarray:
    """``H`` with ``fitted = H @ y``: least squares of ``y`` on ``1, x, .., x^degree`` (``x``
    centred and scaled, for conditioning)."""
    z = (x - x.mean()) / (x.std() or 1.0)
    design = np.vander(z, degree + 1, increasing=True)
    return design @ np.linalg.pinv(design)


def predict_and_compare(
    scores: pd.DataFrame, bootstrap: BootstrapConfig, *, tolerance: float = 0.1
) -> Prediction | None:
    """The comparison of the module docstring on a tidy score table
    (:func:`scrying.emergence.outputs.score_outputs`); None when it has no exact match."""
    present = set(scores["metric"])
    if "sampled_exact_match" in present:
        mode, measured, continuous = "sampled", "sampled_exact_match", "per_token_probability"
    elif "exact_match" in present:
        measured = "exact_match"
        if "per_token_argmax_accuracy" in present:  # teacher-forced: exact match is its all-tokens case
            mode, continuous = "greedy", "per_token_argmax_accuracy"
        elif "per_token_accuracy" in present:  # outputs without argmax flags: the greedy output's agreement
            mode, continuous = "greedy", "per_token_accuracy"
        else:
            mode, continuous = "greedy-vs-p", "per_token_probability"
    else:
        return None
    models = scores.drop_duplicates("model").sort_values("scale")[["model", "label", "scale"]]
    order = list(models["model"])
    m = _matrix(scores, measured, order)  # model item
    c = _matrix(scores, continuous, order)
    lengths = _matrix(scores, continuous, order, column="n_tokens")
    n_models, n_items = m.shape
    x = np.log10(models["scale"].to_numpy(dtype=float))
    degree = max(0, min(2, n_models - 2))
    hat = hat_matrix(x, degree)
    weights = np.concatenate([np.full((1, n_items), 1.0 / n_items),
                              bootstrap_means(torch.eye(n_items, dtype=torch.float64), bootstrap).numpy()])  # (1 + sample) item

    def predict(c_mean: np.ndarray) -> np.ndarray:  # (1 + sample) model -> (1 + sample) model
        base = np.clip(c_mean, 0.0, 1.0)[:, :, None] ** lengths[None]  # (1 + sample) model item
        return np.einsum("bmi,bi->bm", base, weights)

    c_means = weights @ c.T  # (1 + sample) model
    smooth_c = np.clip(c_means @ hat.T, 0.0, 1.0)
    curves = {"measured": weights @ m.T, "smooth": predict(smooth_c), "direct": predict(c_means)}
    q = list(bootstrap.quantiles)
    table = models.reset_index(drop=True).copy()
    table["continuous"], table["smooth_continuous"] = c_means[0], smooth_c[0]
    for name, curve in curves.items():
        table[name] = curve[0]
        table[f"{name}_low"], table[f"{name}_high"] = np.quantile(curve[1:], q, axis=0)
    reproduces: dict[str, bool | None] = {}
    for name in ("smooth", "direct"):
        missed = _missed(curves["measured"], curves[name], q, tolerance)
        table[f"{name}_missed"] = missed
        reproduces[name] = None if name == "smooth" and n_models < 4 else not bool(missed.any())
    p_means = weights @ _matrix(scores, "per_token_probability", order).T
    p_missed = _missed(p_means, np.clip(p_means @ hat.T, 0.0, 1.0), q, tolerance)
    smooth = None if n_models < 4 else not bool(p_missed.any())
    return Prediction(mode, measured, continuous, degree, reproduces["smooth"], reproduces["direct"], smooth, table)


def _missed(measured: np.ndarray, predicted: np.ndarray, q: list[float], tolerance: float) -> np.ndarray:
    """Per model: the difference's bootstrap interval excludes 0 and the difference (row 0, the
    full data) exceeds ``tolerance``."""
    difference = measured - predicted
    low, high = np.quantile(difference[1:], q, axis=0)
    return ((low > 0) | (high < 0)) & (np.abs(difference[0]) > tolerance)
