"""One report for every instrument that checks itself: predicted against measured effects.

An instrument predicts the effect of interventions (a graph's edges, an attribution score, a
gradient) and measures the same interventions by running the model. :func:`compare` turns the
paired values into a :class:`ValidationReport`: the table, Spearman and Pearson correlations
with percentile-bootstrap intervals over the rows (:mod:`scrying.stats`), and the
least-squares slope of measured on predicted (1 when the prediction has the right scale).

Used by neuron-graph validation (:mod:`scrying.attribution.validation`), component graphs
(EAP-IG scores against exact patching, :mod:`scrying.attribution.components`) and head
ablation (gradient importance against the sweep, :mod:`scrying.ablation.gradient`). A report
says in words what was predicted and what was measured (``method``), so a page or a table can
print it verbatim instead of a sentence that may not fit.

A feature graph's validation also measures its nodes in partly unfrozen models
(:mod:`scrying.attribution.validation`, phase 4); :func:`unfreezing_against_real` ranks each of
them against the real model, from the stored rows: which unfreezing closes the gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scrying.errors import InvalidInputError
from scrying.stats import BootstrapConfig, Estimate, pearson, spearman


@dataclass(frozen=True)
class ValidationReport:
    """Predicted vs measured, one row per intervention.

    ``target``: what the effects are effects on (e.g. a metric). ``method``: one sentence on
    what ``predicted`` and ``measured`` are. ``table``: columns ``predicted``, ``measured`` and
    the instrument's own (node, edge, head ...). ``settings``: intervention parameters (e.g.
    ``{"scale": 0.0}``).
    """

    target: str
    method: str
    table: pd.DataFrame
    spearman: Estimate
    pearson: Estimate
    slope: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.table)

    def indistinguishable_from_zero(self) -> dict[str, bool]:
        """Per correlation (``spearman``, ``pearson``): whether its interval includes 0 (or is
        undefined), so the figure cannot be told apart from no correlation."""
        return {"spearman": includes_zero(self.spearman), "pearson": includes_zero(self.pearson)}

    def describe(self) -> str:
        """One line: both correlations with their intervals (each whose interval includes 0
        said to be indistinguishable from 0), the slope."""
        return f"Spearman {_shown(self.spearman)}, Pearson {_shown(self.pearson)}, slope {self.slope:.3f}"

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: ``target``, ``method``, ``spearman`` (value), ``spearman_ci``, ``pearson``,
        ``pearson_ci``, ``slope``, ``confidence``, the settings, and ``rows``."""
        return {
            "target": self.target,
            "method": self.method,
            "spearman": _finite(self.spearman.value),
            "spearman_ci": [_finite(self.spearman.ci_low), _finite(self.spearman.ci_high)],
            "pearson": _finite(self.pearson.value),
            "pearson_ci": [_finite(self.pearson.ci_low), _finite(self.pearson.ci_high)],
            "slope": _finite(self.slope),
            "confidence": self.spearman.confidence,
            **self.settings,
            "rows": self.table.to_dict(orient="records"),
        }


def includes_zero(estimate: Estimate) -> bool:
    """Whether ``estimate``'s interval includes 0, or is undefined (NaN)."""
    low, high = estimate.ci_low, estimate.ci_high
    return not (np.isfinite(low) and np.isfinite(high)) or low <= 0.0 <= high


def _shown(estimate: Estimate) -> str:
    text = f"{estimate.value:.3f} [{estimate.ci_low:.3f}, {estimate.ci_high:.3f}]"
    return text + " (interval includes 0: indistinguishable from 0)" if includes_zero(estimate) else text


def _finite(value: float) -> float | None:
    """JSON has no NaN: an undefined figure (e.g. a correlation of constant values) is null."""
    return float(value) if np.isfinite(value) else None


def slope(predicted: np.ndarray, measured: np.ndarray) -> float:
    """Least-squares slope of ``measured`` on ``predicted`` (with an intercept); NaN if
    ``predicted`` is constant."""
    x = predicted - predicted.mean()
    denominator = float((x * x).sum())
    return float((x * (measured - measured.mean())).sum() / denominator) if denominator > 0 else float("nan")


def compare(
    table: pd.DataFrame,
    *,
    target: str,
    method: str,
    predicted: str = "predicted",
    measured: str = "measured",
    settings: dict[str, Any] | None = None,
    bootstrap: BootstrapConfig | None = None,
) -> ValidationReport:
    """The report of ``table``'s ``predicted`` and ``measured`` columns (renamed to those names)."""
    for column in (predicted, measured):
        if column not in table.columns:
            raise InvalidInputError(f"validation table has no column {column!r}; columns: {list(table.columns)}")
    table = table.rename(columns={predicted: "predicted", measured: "measured"}).reset_index(drop=True)
    x = table["predicted"].to_numpy(dtype=float)
    y = table["measured"].to_numpy(dtype=float)
    config = bootstrap or BootstrapConfig()
    return ValidationReport(
        target=target,
        method=method,
        table=table,
        spearman=spearman(x, y, config),
        pearson=pearson(x, y, config),
        slope=slope(x, y) if len(x) > 1 else float("nan"),
        settings=dict(settings or {}),
    )


def first_scale(validation: dict[str, Any]) -> str:
    """The first scale of a stored validation (``GraphValidation.to_json()``), as its report keys
    name it: the headline's ``"..., scale 0"`` gives ``"0"``."""
    return validation["headline"].rsplit("scale ", 1)[-1]


def has_unfreezing(validation: dict[str, Any]) -> bool:
    """Whether a stored validation is a feature graph's, with the models
    :func:`unfreezing_against_real` ranks (a ``frozen vs real`` comparison at its first scale)."""
    return f"frozen vs real, scale {first_scale(validation)}" in validation["reports"]


def unfreezing_against_real(validation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{model: {spearman, low, high, n, includes_zero, moved}}`` for a feature graph's validation
    (``GraphValidation.to_json()``): each model of its unfreezing, from the frozen one
    (``"frozen"``) through each partly unfrozen one (``"+ error nodes live"`` ...), against the
    **real** model at the first scale: the nodes' changes in that model ranked against their real
    changes, with a bootstrap interval (how far each unfreezing brings the frozen model towards the
    real one). ``moved``: that model's Spearman against the one before it (how much its unfreezing
    reordered the nodes; ``None`` for the frozen model). An undefined correlation (constant
    changes) is ``None``, as in :meth:`ValidationReport.to_json`. Rows must name their node and
    hold numbers (a validation written by :func:`scrying.attribution.validation.validate_feature_graph`
    does); otherwise, or where a model checked other nodes, :class:`InvalidInputError`. Read from the stored rows: the
    ``frozen vs real`` comparison's, and each ``graph vs + ...`` one's measured changes, matched
    by node id."""
    reports, scale = validation["reports"], first_scale(validation)
    name = f"frozen vs real, scale {scale}"
    if not has_unfreezing(validation):
        raise InvalidInputError(f"the validation has no 'frozen vs real' comparison at scale {scale} (not a feature graph's?)")
    rows = reports[name]["rows"]
    if any("node_id" not in r or not all(isinstance(r.get(k), int | float) for k in ("predicted", "measured")) for r in rows):
        raise InvalidInputError("the validation's 'frozen vs real' rows must each have a node_id and numeric predicted and measured changes")
    ids = [r["node_id"] for r in rows]
    real = [r["measured"] for r in rows]
    models = {"frozen": [r["predicted"] for r in rows]}
    for key in (k for k in reports if k.startswith("graph vs + ") and k.endswith(f", scale {scale}")):
        if any("node_id" not in r or not isinstance(r.get("measured"), int | float) for r in reports[key]["rows"]):
            raise InvalidInputError(f"the validation's {key!r} rows must each have a node_id and a numeric measured change")
        by_id = {r["node_id"]: r["measured"] for r in reports[key]["rows"]}
        if set(by_id) != set(ids):
            raise InvalidInputError(f"the validation's {key!r} checked other nodes than its 'frozen vs real' comparison")
        models[key.removeprefix("graph vs ").rsplit(", scale", 1)[0]] = [by_id[i] for i in ids]
    out: dict[str, dict[str, Any]] = {}
    before: list[float] | None = None
    for stage, values in models.items():
        rho = spearman(values, real)
        out[stage] = {"spearman": _finite(rho.value), "low": _finite(rho.ci_low), "high": _finite(rho.ci_high), "n": len(values),
                      "includes_zero": includes_zero(rho), "moved": None if before is None else _finite(spearman(values, before).value)}
        before = values
    return out
