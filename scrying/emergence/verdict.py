"""Emergence score and verdict: does a jump with scale survive a continuous metric?

Phases of :func:`emergence`:

1. **Curves**: per metric, the mean over items of every model (models sorted by scale), with
   percentile-bootstrap intervals over items (:mod:`scrying.stats`; every model is resampled
   with the same items, so curves stay paired). Every model must have scored the same items.
2. **Breakthroughness** (BIG-bench, Srivastava et al. 2022, sec. 3.4):
   ``B = sign(argmax y - argmin y) (max y - min y) / sqrt(median_i (y_{i+1} - y_i)^2)`` on the
   curve ``y`` oriented so that higher is better (edit distance and Brier score negated). Two
   changes, both documented in the output: the denominator is floored at the sampling noise of a
   successive difference (``median_i (var_i + var_{i+1}) / n_items``), so a curve of zeros with
   one lucky item is not infinitely emergent; and ``B`` is reported normalised by ``n_models - 1``,
   the value of a straight ramp, so 1 means "as smooth as a line" and larger means "a jump".
3. **Linearity**: ``R^2`` of the curve against ``log10(scale)``.
4. **Verdict** (``threshold`` on normalised ``B``, default 2): a metric *jumps* when its interval
   lies above the threshold and *does not jump* when it lies below. ``"glimmering"`` when a
   continuous metric (per-token probability or target log-likelihood) jumps: the jump survives
   the continuous metric; ``"mirage"`` when a nonlinear metric (exact match, multiple-choice
   grade) jumps and no continuous one does (Schaeffer et al. 2023); ``"none"`` when no metric
   jumps; ``"inconclusive"`` otherwise (an interval straddles the threshold).
5. **p^L check** (Schaeffer et al., eq. 1): per model, whether the mean predicted accuracy ``p^L``
   lies within the Clopper-Pearson interval of the measured exact match (a binomial proportion).
   ``p^L`` is the probability of *sampling* the target; a greedy output is exact whenever every
   target token is the argmax, however unsure, so greedy exact match can lie far above it.
6. **Resolution** (Schaeffer et al.'s second prediction): per model, the items needed to see at
   least one exact match with 95% probability if accuracy is the predicted ``a = p^L``:
   ``ceil(log 0.05 / log(1 - a))``, beside the study's item count.
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
from scrying.errors import ConfigError, InvalidInputError
from scrying.stats import BootstrapConfig, bootstrap_means

NONLINEAR = ("exact_match", "multiple_choice_grade")
DECISIVE_CONTINUOUS = ("per_token_probability", "target_log_likelihood")


@dataclass(frozen=True, kw_only=True)
class VerdictConfig:
    threshold: float = 2.0
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)

    def __post_init__(self) -> None:
        if not self.threshold > 1.0:
            raise ConfigError(f"VerdictConfig.threshold must be > 1 (1 is a straight ramp), got {self.threshold}")


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

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "rule": self.rule,
            "n_items": self.n_items,
            "metrics": {
                name: {"breakthroughness": s.breakthroughness, "ci": list(s.ci), "linearity": s.linearity,
                       "linearity_ci": list(s.linearity_ci), "jumps": s.jumps, "kind": METRICS[name][0]}
                for name, s in self.metrics.items()
            },
            "models": [_json_row(row) for row in self.models.to_dict(orient="records")],
        }


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    """A models row as strict JSON: a missing count (NaN in the frame) is null, counts are ints."""
    out = dict(row)
    needed = out.get("items_needed")
    out["items_needed"] = None if needed is None or needed != needed else int(needed)
    return out


RULE = (
    "normalised breakthroughness (BIG-bench B / (n_models - 1), noise-floored; 1 = straight ramp) with a "
    "{confidence:.0%} bootstrap interval over items; a metric jumps when the interval lies above {threshold:g}, "
    "does not when it lies below. glimmering: a continuous metric (per-token probability or target "
    "log-likelihood) jumps; mirage: a nonlinear metric (exact match, multiple-choice grade) jumps and no "
    "continuous one does; none: no metric jumps; inconclusive: otherwise"
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
        table = scores[scores["metric"] == metric].pivot(index="model", columns="item", values="value").reindex(order)
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
        variance = values.var(1, ddof=1) / len(items) if len(items) > 1 else np.zeros(len(order))
        floor2 = float(np.median(variance[:-1] + variance[1:]))
        value = float(_breakthroughness(sign * means, floor2))
        b_samples = _breakthroughness(sign * samples, floor2)
        b_low, b_high = np.quantile(b_samples, quantiles)
        lin = float(_linearity(means, x))
        lin_low, lin_high = np.quantile(_linearity(samples, x), quantiles)
        jumps = True if b_low > config.threshold else False if b_high < config.threshold else None
        summaries[metric] = MetricSummary(value, (float(b_low), float(b_high)), lin, (float(lin_low), float(lin_high)), jumps)
    curves = pd.DataFrame(curve_rows)
    return EmergenceSummary(
        verdict=_verdict(summaries),
        rule=RULE.format(confidence=config.bootstrap.confidence, threshold=config.threshold),
        metrics=summaries,
        curves=curves,
        models=_models(curves, len(items), config.bootstrap.confidence),
        n_items=len(items),
    )


def _verdict(summaries: dict[str, MetricSummary]) -> str:
    nonlinear = [summaries[m].jumps for m in NONLINEAR if m in summaries]
    continuous = [summaries[m].jumps for m in DECISIVE_CONTINUOUS if m in summaries]
    if any(j is True for j in continuous):
        return "glimmering"
    if any(j is True for j in nonlinear) and continuous and all(j is False for j in continuous):
        return "mirage"
    if all(j is False for j in nonlinear + continuous):
        return "none"
    return "inconclusive"


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
