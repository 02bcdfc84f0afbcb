"""The one validation report (scrying.validation_report): figures equal independent computations."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from scrying.errors import InvalidInputError
from scrying.validation_report import compare


def test_report_figures():
    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    table = pd.DataFrame({"node": [f"n{i}" for i in range(30)], "pred": x, "meas": 2.0 * x + 0.3 * rng.normal(size=30)})
    report = compare(table, target="t", method="m", predicted="pred", measured="meas", settings={"scale": 0.0})
    assert report.spearman.value == pytest.approx(sps.spearmanr(table.pred, table.meas).statistic)
    assert report.pearson.value == pytest.approx(sps.pearsonr(table.pred, table.meas).statistic)
    assert report.slope == pytest.approx(np.polyfit(table.pred, table.meas, 1)[0])
    data = report.to_json()
    assert data["scale"] == 0.0 and len(data["rows"]) == 30 and data["rows"][0]["node"] == "n0"
    assert set(data["rows"][0]) == {"node", "predicted", "measured"}
    assert data["spearman_ci"][0] < data["spearman"] < data["spearman_ci"][1]


def test_undefined_figures_are_null_in_json():
    table = pd.DataFrame({"predicted": [0.0, 0.0, 0.0], "measured": [1.0, 2.0, 3.0]})
    data = compare(table, target="t", method="m").to_json()
    assert data["spearman"] is None and data["slope"] is None
    json.dumps(data, allow_nan=False)


def test_missing_column_is_named():
    with pytest.raises(InvalidInputError, match="validation table has no column 'predicted'"):
        compare(pd.DataFrame({"measured": [1.0]}), target="t", method="m")


def test_an_interval_that_includes_zero_is_said_to():
    """Constructed: y independent of x (interval includes 0) and y = x (it does not)."""
    from scrying.attribution.validation import GraphValidation

    rng = np.random.default_rng(1)
    x = rng.normal(size=40)
    noise = compare(pd.DataFrame({"predicted": x, "measured": rng.normal(size=40)}), target="t", method="m")
    signal = compare(pd.DataFrame({"predicted": x, "measured": x + 0.01 * rng.normal(size=40)}), target="t", method="m")
    assert noise.spearman.ci_low < 0 < noise.spearman.ci_high  # the construction does what it says
    assert noise.indistinguishable_from_zero() == {"spearman": True, "pearson": True}
    assert signal.indistinguishable_from_zero() == {"spearman": False, "pearson": False}
    assert noise.describe().count("indistinguishable from 0") == 2 and "indistinguishable" not in signal.describe()
    undefined = compare(pd.DataFrame({"predicted": [0.0, 0.0, 0.0], "measured": [1.0, 2.0, 3.0]}), target="t", method="m")
    assert undefined.indistinguishable_from_zero()["spearman"]  # an undefined figure is not evidence either
    checked = GraphValidation({"a": noise, "b": signal}, headline="b")
    summary = checked.summary().set_index("comparison")
    assert summary.loc["a", "spearman_includes_0"] and not summary.loc["b", "spearman_includes_0"]
    lines = checked.lines()
    assert lines[0].startswith("a (n=40): Spearman") and "indistinguishable from 0" in lines[0]
    assert "indistinguishable" not in lines[1]
