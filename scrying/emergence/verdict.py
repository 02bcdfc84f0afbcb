"""Emergence score and verdict: is a jump with scale in the model, or in the metric?

Phases of :func:`emergence`:

1. **Curves**: per metric, the mean over items of every model (models sorted by scale), with
   percentile-bootstrap intervals over items (:mod:`scrying.stats`; every model is resampled
   with the same items, so curves stay paired). Every model must have scored the same items.
2. **Breakthroughness** (BIG-bench, Srivastava et al. 2022, sec. 3.4):
   ``B = sign(argmax y - argmin y) (max y - min y) / sqrt(median_i (y_{i+1} - y_i)^2)`` on the
   curve ``y`` oriented so that higher is better (edit distance and Brier score negated),
   reported normalised by ``n_models - 1``, the value of a straight ramp: 1 means "as smooth as
   a line", larger means "a jump". The denominator is floored at the metric's own sampling
   noise of a successive difference, ``median_i (v_i + v_{i+1})`` with ``v_i`` the variance of
   model ``i``'s mean. For a proportion (exact match, multiple-choice grade, sampled exact match)
   ``v_i`` is at least the binomial variance at the Jeffreys-adjusted rate
   ``r = (k + 1/2) / (T + 1)`` of ``k`` successes in ``T`` trials (items x samples per item),
   ``r (1 - r) / T``: a rate of 0 is measured only to within about ``1/T``, so a curve that is 0
   at most scales and then rises has a positive floor and its rise counts as a jump (a floor of
   exactly 0, as the sample variance gives, made the score 0: "no jump"). For a continuous
   metric ``v_i`` is the sample variance over items ``/ n_items``.
3. **Linearity**: ``R^2`` of the curve against ``log10(scale)``.
4. **Predict-and-compare** (Schaeffer et al. 2023, :mod:`scrying.emergence.prediction`): a
   smooth fit of the continuous per-token metric against log scale, raised to the target's
   length, against the measured exact match (sampled or greedy), with intervals.
5. **Verdict** (``threshold`` on normalised ``B``, default 2; a metric *jumps* when its
   interval lies above the threshold, *does not* when it lies below, and is undecided
   otherwise):

   * ``glimmering`` when per-token probability jumps, or when exact match jumps, the smooth
     prediction does not reproduce it, the prediction from the measured per-token metric does,
     and per-token probability departs from a smooth curve: the continuous metric carries the
     jump, so it is in the model;
   * ``mirage`` when exact match jumps, per-token probability does not, and the smooth
     prediction reproduces the jump: the metric's nonlinearity made it;
   * ``none`` when no nonlinear metric jumps and per-token probability does not;
   * ``inconclusive`` otherwise (an undecided interval, too few models to test a fit, or a
     per-token metric that does not predict exact match at all).

   Why per-token probability, and not log-likelihood, decides. Log-likelihood
   ``sum_j log p_j = L log p`` re-expresses the same quantity, and the log is steep near 0: a
   straight ramp of ``p`` from 0.005 to 0.5 is a log curve whose first step is its largest, so
   its breakthroughness says "jump" although nothing sudden happened (a monotone re-expression
   changes ``B``, which measures a curve's shape on one scale). The question "did the model's
   probability of the target change suddenly?" is the same on either scale, so it is asked once,
   on the scale accuracy is built from (``p``, the base of ``p^L``); log-likelihood, edit
   distance, Brier score and ``p^L`` are reported beside it and decide nothing. For the same
   reason the verdict of a family is the same when its targets are re-tokenized into ``2L``
   tokens of probability ``sqrt(p)``: the sequence probability, the exact match and the
   prediction are unchanged, and ``sqrt`` of a smooth ramp is smooth.
6. **p^L check** (Schaeffer et al., eq. 1): per model, whether the mean predicted accuracy ``p^L``
   lies within the Clopper-Pearson interval of the measured exact match (a binomial proportion).
   ``p^L`` is the probability of *sampling* the target; a greedy output is exact whenever every
   target token is the argmax, however unsure, so greedy exact match can lie far above it.
7. **Resolution** (Schaeffer et al.'s second prediction): per model, the items needed to see at
   least one exact match with 95% probability if accuracy is the predicted ``a = p^L``:
   ``ceil(log 0.05 / log(1 - a))``, beside the study's item count.
8. **Scaling law** (:mod:`scrying.emergence.scaling`): per-token loss against scale as a power
   law with intervals; and the **finding**, one sentence generated from the verdict and the
   curves (:func:`finding`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import binomtest

from scrying.emergence.metrics import METRICS
from scrying.emergence.prediction import Prediction, predict_and_compare
from scrying.emergence.scaling import ScalingLaw, fit_scaling_law
from scrying.errors import ConfigError, InvalidInputError
from scrying.stats import BootstrapConfig, bootstrap_means

NONLINEAR = ("exact_match", "sampled_exact_match", "multiple_choice_grade")
DECISIVE_CONTINUOUS = ("per_token_probability",)
PROPORTIONS = ("exact_match", "sampled_exact_match", "multiple_choice_grade")


@dataclass(frozen=True, kw_only=True)
class VerdictConfig:
    """``threshold``: normalised breakthroughness that counts as a jump (1 is a straight ramp);
    ``tolerance``: the largest gap in accuracy between a prediction and the measured curve that
    is not a miss (:mod:`scrying.emergence.prediction`)."""

    threshold: float = 2.0
    tolerance: float = 0.1
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)

    def __post_init__(self) -> None:
        if not self.threshold > 1.0:
            raise ConfigError(f"VerdictConfig.threshold must be > 1 (1 is a straight ramp), got {self.threshold}")
        if not 0.0 <= self.tolerance < 1.0:
            raise ConfigError(f"VerdictConfig.tolerance must be in [0, 1), got {self.tolerance}")


@dataclass(frozen=True)
class MetricSummary:
    breakthroughness: float  # normalised: 1 = straight ramp
    ci: tuple[float, float]
    linearity: float  # R^2 against log10(scale)
    linearity_ci: tuple[float, float]
    jumps: bool | None  # None: the interval straddles the threshold


@dataclass(frozen=True)
class EmergenceSummary:
    verdict: str
    rule: str
    metrics: dict[str, MetricSummary]
    curves: pd.DataFrame  # metric, model, label, scale, mean, ci_low, ci_high, n_items
    models: pd.DataFrame  # model, scale, exact_match, ci_low, ci_high, predicted_accuracy, within, items_needed
    n_items: int
    prediction: Prediction | None = None
    scaling: ScalingLaw | None = None
    finding: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "finding": self.finding,
            "rule": self.rule,
            "n_items": self.n_items,
            "metrics": {
                name: {"breakthroughness": s.breakthroughness, "ci": list(s.ci), "linearity": s.linearity,
                       "linearity_ci": list(s.linearity_ci), "jumps": s.jumps, "kind": METRICS[name][0],
                       "decides": name in NONLINEAR or name in DECISIVE_CONTINUOUS}
                for name, s in self.metrics.items()
            },
            "models": [_json_row(row) for row in self.models.to_dict(orient="records")],
            "prediction": None if self.prediction is None else self.prediction.to_json(),
            "scaling": None if self.scaling is None else self.scaling.to_json(),
        }


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    """A models row as strict JSON: a missing count (NaN in the frame) is null, counts are ints."""
    out = dict(row)
    needed = out.get("items_needed")
    out["items_needed"] = None if needed is None or needed != needed else int(needed)
    return out


RULE = (
    "normalised breakthroughness (BIG-bench B / (n_models - 1); 1 = straight ramp; denominator floored at the "
    "metric's sampling noise, binomial at the Jeffreys-adjusted rate for proportions) with a {confidence:.0%} "
    "bootstrap interval over items; a metric jumps when the interval lies above {threshold:g}, does not when it lies "
    "below. Exact match is predicted from a smooth (quadratic in log scale) fit of the per-token metric raised to "
    "the target's length L (p^L sampled, per-token accuracy^L greedy; a miss: interval of the difference excludes 0 "
    "and the gap exceeds {tolerance:g}). glimmering: per-token probability jumps, or exact match jumps and only the "
    "unsmoothed per-token metric predicts it; mirage: exact match jumps, per-token probability does not, and the "
    "smooth prediction reproduces it; none: no nonlinear metric jumps and per-token probability does not; "
    "inconclusive: otherwise"
)


def _breakthroughness(means: np.ndarray, floor2: float) -> np.ndarray | float:
    """Normalised B of curves ``means[..., model]`` (models sorted by scale)."""
    n = means.shape[-1]
    diffs2 = np.diff(means, axis=-1) ** 2
    denominator = np.sqrt(np.maximum(np.median(diffs2, axis=-1), floor2))
    sign = np.sign(np.argmax(means, axis=-1) - np.argmin(means, axis=-1))
    spread = means.max(-1) - means.min(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.where(denominator > 0, sign * spread / denominator, 0.0)
    return b / (n - 1)


def noise_floor(values: np.ndarray, *, proportion: bool, samples_per_item: int = 1) -> float:
    """The squared sampling noise of a successive difference, ``median_i (v_i + v_{i+1})``, of
    the curves ``values[model, item]`` (see the module docstring, phase 2)."""
    n_items = values.shape[1]
    variance = values.var(1, ddof=1) / n_items if n_items > 1 else np.zeros(len(values))
    if proportion:
        trials = n_items * samples_per_item
        rate = (values.sum(1) * samples_per_item + 0.5) / (trials + 1)
        variance = np.maximum(variance, rate * (1 - rate) / trials)
    return float(np.median(variance[:-1] + variance[1:]))


def _linearity(means: np.ndarray, x: np.ndarray) -> np.ndarray | float:
    """R^2 of least squares of ``means[..., model]`` on ``x``."""
    xc = x - x.mean()
    yc = means - means.mean(-1, keepdims=True)
    ss = (yc**2).sum(-1)
    slope = (yc * xc).sum(-1) / (xc**2).sum()
    explained = slope**2 * (xc**2).sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss > 0, explained / ss, 0.0)


def emergence(scores: pd.DataFrame, config: VerdictConfig | None = None) -> EmergenceSummary:
    """The verdict of a tidy score table (:func:`scrying.emergence.outputs.score_outputs`)."""
    config = config or VerdictConfig()
    models = scores.drop_duplicates("model").sort_values("scale")[["model", "label", "scale"]]
    if len(models) < 2:
        raise InvalidInputError(f"an emergence study needs at least 2 models, got {len(models)}")
    order = list(models["model"])
    x = np.log10(models["scale"].to_numpy(dtype=float))
    items = sorted(set(scores["item"]))
    summaries: dict[str, MetricSummary] = {}
    curve_rows = []
    quantiles = list(config.bootstrap.quantiles)
    for metric in [m for m in METRICS if m in set(scores["metric"])]:
        part = scores[scores["metric"] == metric]
        table = part.pivot(index="model", columns="item", values="value").reindex(order)
        if table.isna().any().any() or list(table.columns) != items:
            raise InvalidInputError(f"every model must score the same items; {metric} is missing some")
        values = table.to_numpy(dtype=float, copy=True)  # model item
        sign = 1.0 if METRICS[metric][1] else -1.0
        means = values.mean(1)
        samples = bootstrap_means(torch.from_numpy(values), config.bootstrap).numpy()  # sample model
        low, high = np.quantile(samples, quantiles, axis=0)
        for (model, label, scale), mean, lo, hi in zip(models.itertuples(index=False), means, low, high, strict=True):
            curve_rows.append({"metric": metric, "model": model, "label": label, "scale": scale, "mean": mean,
                               "ci_low": lo, "ci_high": hi, "n_items": len(items)})
        per_item = int(part["n_samples"].max()) if "n_samples" in part else 1
        floor2 = noise_floor(values, proportion=metric in PROPORTIONS, samples_per_item=per_item)
        value = float(_breakthroughness(sign * means, floor2))
        b_samples = _breakthroughness(sign * samples, floor2)
        b_low, b_high = np.quantile(b_samples, quantiles)
        lin = float(_linearity(means, x))
        lin_low, lin_high = np.quantile(_linearity(samples, x), quantiles)
        jumps = True if b_low > config.threshold else False if b_high < config.threshold else None
        summaries[metric] = MetricSummary(value, (float(b_low), float(b_high)), lin, (float(lin_low), float(lin_high)), jumps)
    curves = pd.DataFrame(curve_rows)
    prediction = predict_and_compare(scores, config.bootstrap, tolerance=config.tolerance) if "n_tokens" in scores else None
    scaling = fit_scaling_law(scores, config.bootstrap) if "per_token_probability" in summaries else None
    verdict = _verdict(summaries, prediction)
    return EmergenceSummary(
        verdict=verdict,
        rule=RULE.format(confidence=config.bootstrap.confidence, threshold=config.threshold, tolerance=config.tolerance),
        metrics=summaries,
        curves=curves,
        models=_models(curves, len(items), config.bootstrap.confidence),
        n_items=len(items),
        prediction=prediction,
        scaling=scaling,
        finding=finding(verdict, summaries, curves, prediction),
    )


def _verdict(summaries: dict[str, MetricSummary], prediction: Prediction | None) -> str:
    """The rule of the module docstring, phase 5."""
    nonlinear = [summaries[m].jumps for m in NONLINEAR if m in summaries]
    continuous = [summaries[m].jumps for m in DECISIVE_CONTINUOUS if m in summaries]
    if any(j is True for j in continuous):
        return "glimmering"
    if prediction is not None and summaries[prediction.measured].jumps is True:
        if prediction.smooth_reproduces is True and continuous and continuous[0] is not True:
            return "mirage"
        if (prediction.smooth_reproduces is False and prediction.direct_reproduces is True
                and prediction.probability_smooth is False):
            return "glimmering"
        return "inconclusive"
    if continuous and all(j is False for j in nonlinear + continuous):
        return "none"
    return "inconclusive"


def jump_span(curves: pd.DataFrame, metric: str) -> tuple[str, str] | None:
    """Where ``metric`` (higher is better) rises through its range: the last model at or below
    10% of the range before the first at or above 90% (labels); None for a flat curve or one
    that falls."""
    part = curves[curves.metric == metric].sort_values("scale")
    y, labels = part["mean"].to_numpy(), list(part["label"])
    spread = y.max() - y.min() if len(y) else 0.0
    if spread <= 0:
        return None
    top = int(np.argmax(y >= y.min() + 0.9 * spread))
    below = [i for i in range(top) if y[i] <= y.min() + 0.1 * spread]
    if not below:
        return None
    return labels[below[-1]], labels[top]


def finding(verdict: str, summaries: dict[str, MetricSummary], curves: pd.DataFrame, prediction: Prediction | None) -> str:
    """The study's finding in one sentence, from the verdict and the curves."""
    measured = prediction.measured if prediction is not None else "exact_match"
    name = measured.replace("_", " ")
    span = jump_span(curves, measured) if measured in summaries else None
    p_span = jump_span(curves, "per_token_probability")
    where = f" between {span[0]} and {span[1]}" if span else ""
    if verdict == "mirage":
        assert prediction is not None
        power = "p^L" if prediction.continuous == "per_token_probability" else "(per-token accuracy)^L"
        return (f"{name} jumps{where}, but per-token probability rises smoothly and a smooth fit of it, raised to the "
                f"target's length ({power}), reproduces the jump: the jump is in the metric, not the model (a mirage).")
    if verdict == "glimmering":
        p_where = f" between {p_span[0]} and {p_span[1]}" if p_span else ""
        return (f"{name} jumps{where}, and so does per-token probability{p_where}, which no smooth curve in log scale "
                f"follows: the jump is in the model, not the metric (glimmering).")
    if verdict == "none":
        return f"No metric jumps: {name} and per-token probability change smoothly or not at all across the family."
    reasons = []
    for metric in (measured, "per_token_probability"):
        if metric in summaries and summaries[metric].jumps is None:
            s = summaries[metric]
            reasons.append(f"{metric.replace('_', ' ')}'s breakthroughness interval [{s.ci[0]:.2f}, {s.ci[1]:.2f}] "
                           "straddles the threshold")
    if prediction is not None and summaries.get(measured) and summaries[measured].jumps is True:
        if prediction.smooth_reproduces is None:
            reasons.append("too few models to test a smooth fit")
        elif prediction.direct_reproduces is False:
            reasons.append(f"even the measured per-token metric does not predict {name}")
        elif prediction.probability_smooth is not False:
            reasons.append("per-token accuracy carries the jump but per-token probability stays smooth")
    because = "; ".join(reasons) or "the metrics disagree"
    return f"Undecided{where and ' (' + name + ' rises' + where + ')'}: {because}."


def _items_needed(a: float) -> int | None:
    """The fewest items for P(no exact match at all) <= 0.05 when each item is right with
    probability ``a``: ``ceil(log 0.05 / log(1 - a))``; None when ``a`` is 0, or so small that the
    count is past what a float holds (no feasible item count)."""
    if a >= 1:
        return 1
    n = math.log(0.05) / math.log1p(-a) if a > 0 else math.inf
    return math.ceil(n) if math.isfinite(n) else None


def _models(curves: pd.DataFrame, n_items: int, confidence: float) -> pd.DataFrame:
    """Per model: exact match with its Clopper-Pearson interval (exact for a binomial proportion,
    also at 0 successes, where a bootstrap interval collapses to [0, 0]), the predicted p^L, and
    the resolution."""
    em = curves[curves.metric == "exact_match"].set_index("model")
    predicted = curves[curves.metric == "predicted_accuracy"].set_index("model")["mean"]
    rows = []
    for model, row in em.iterrows():
        a = float(predicted[model])
        interval = binomtest(int(round(row["mean"] * n_items)), n_items).proportion_ci(confidence, method="exact")
        row = row.copy()
        row["ci_low"], row["ci_high"] = interval.low, interval.high
        needed = _items_needed(a)
        rows.append({
            "model": model, "scale": row.scale, "exact_match": row["mean"], "ci_low": row.ci_low, "ci_high": row.ci_high,
            "predicted_accuracy": a, "within": bool(row.ci_low <= a <= row.ci_high),
            "items_needed": needed, "enough_items": needed is not None and n_items >= needed,
        })
    return pd.DataFrame(rows)
