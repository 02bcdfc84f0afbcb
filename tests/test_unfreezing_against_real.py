"""Each model of a feature graph's unfreezing ranked against the real model
(:func:`scrying.validation_report.unfreezing_against_real`), and the page's table of it: checked on
reports built by ``compare`` with known rankings."""

from __future__ import annotations

import pandas as pd
import pytest
from scipy.stats import spearmanr

from scrying.errors import InvalidInputError
from scrying.html_pages import escape
from scrying.validation_report import compare, first_scale, has_unfreezing, unfreezing_against_real
from scrying.viewer.report import validation_html

IDS = ["a", "b", "c", "d", "e", "f"]
REAL = [0.9, -0.2, 0.4, 0.1, -0.7, 0.3]
FROZEN = [0.5, 0.3, -0.1, 0.2, -0.4, 0.8]


def _report(predicted: list[float], measured: list[float], order: list[int] | None = None) -> dict:
    order = order or list(range(len(IDS)))
    table = pd.DataFrame({"node_id": [IDS[i] for i in order], "predicted": [predicted[i] for i in order],
                          "measured": [measured[i] for i in order]})
    return compare(table, target="t", method="m", settings={"scale": 0.0}).to_json()


def _validation() -> dict:
    """frozen; errors live = the real changes halved (ranked as real: 1); patterns live = their
    negatives (-1), stored in reverse order (matched by node id)."""
    return {"headline": "graph vs frozen, scale 0", "reports": {
        "graph vs frozen, scale 0": _report(FROZEN, FROZEN),
        "frozen vs real, scale 0": _report(FROZEN, REAL),
        "graph vs + error nodes live, scale 0": _report(FROZEN, [r / 2 for r in REAL]),
        "graph vs + attention patterns live, scale 0": _report(FROZEN, [-r for r in REAL], order=[5, 4, 3, 2, 1, 0]),
        "graph vs + features' masks live, scale 0": _report(FROZEN, REAL),
        "graph vs real, scale 0.5": _report(FROZEN, REAL),  # another scale: not a model of the unfreezing
    }}


def test_each_model_is_ranked_against_the_real_one_by_node_id():
    stages = unfreezing_against_real(_validation())
    assert list(stages) == ["frozen", "+ error nodes live", "+ attention patterns live", "+ features' masks live"]
    frozen = spearmanr(FROZEN, REAL).statistic
    assert stages["frozen"]["spearman"] == pytest.approx(frozen, abs=1e-12) and stages["frozen"]["moved"] is None
    assert stages["+ error nodes live"]["spearman"] == pytest.approx(1.0)
    assert stages["+ error nodes live"]["moved"] == pytest.approx(frozen, abs=1e-12)  # against the frozen model
    assert stages["+ attention patterns live"]["spearman"] == pytest.approx(-1.0)
    assert stages["+ attention patterns live"]["moved"] == pytest.approx(-1.0)
    assert stages["+ features' masks live"]["spearman"] == pytest.approx(1.0)
    assert stages["+ features' masks live"]["moved"] == pytest.approx(-1.0)
    assert all(v["n"] == 6 for v in stages.values())
    assert stages["+ error nodes live"]["includes_zero"] is False


def test_a_model_that_checked_other_nodes_and_a_validation_without_one_are_refused():
    other = _validation()
    other["reports"]["graph vs + error nodes live, scale 0"]["rows"].pop()
    with pytest.raises(InvalidInputError, match="checked other nodes"):
        unfreezing_against_real(other)
    components = {"headline": "EAP-IG vs exact patching", "reports": {"EAP-IG vs exact patching": _report(FROZEN, REAL)}}
    assert first_scale(_validation()) == "0" and has_unfreezing(_validation()) and not has_unfreezing(components)
    elsewhere = _validation()  # a 'frozen vs real' comparison at another scale only
    elsewhere["reports"]["frozen vs real, scale 0.5"] = elsewhere["reports"].pop("frozen vs real, scale 0")
    assert not has_unfreezing(elsewhere)
    with pytest.raises(InvalidInputError, match="no 'frozen vs real' comparison"):
        unfreezing_against_real(components)


def test_the_page_shows_the_table_for_feature_graphs_only():
    page = validation_html(_validation())
    assert "<h3>Where the frozen model departs from the real one</h3>" in page
    section = page.split("<h3>Where the frozen model departs from the real one</h3>")[1].split("</table>")[0]
    stages = unfreezing_against_real(_validation())
    for name, v in stages.items():
        assert f"{v['spearman']:.3f} [{v['low']:.3f}, {v['high']:.3f}]" in section
        assert f"<td>{escape(name)}</td>" in section
    assert "<td>+ features&#x27; masks live</td>" in section  # the apostrophe escaped
    assert section.count("<tr>") == 1 + len(stages)
    components = {"headline": "EAP-IG vs exact patching", "reports": {"EAP-IG vs exact patching": _report(FROZEN, REAL)}}
    assert "Where the frozen model departs" not in validation_html(components)


def test_an_undefined_correlation_is_none_and_the_page_says_so():
    """A model whose changes are all equal has no Spearman: None, as a report's JSON has it, and
    the page shows it as not computed."""
    validation = _validation()
    validation["reports"]["graph vs + error nodes live, scale 0"] = _report(FROZEN, [0.5] * len(IDS))
    stages = unfreezing_against_real(validation)
    assert stages["+ error nodes live"]["spearman"] is None and stages["+ error nodes live"]["low"] is None
    assert stages["+ attention patterns live"]["moved"] is None  # against the constant model
    assert "nan" not in validation_html(validation).lower()


@pytest.mark.parametrize("damage", ["measured is null", "no node_id", "other nodes"])
def test_rows_the_schema_accepts_but_cannot_be_ranked_leave_the_page_whole(damage):
    """The viewer's schema lets a row's changes be null and its node id be missing; the page then
    says why the table is missing instead of failing."""
    validation = _validation()
    rows = validation["reports"]["frozen vs real, scale 0"]["rows"]
    if damage == "measured is null":
        rows[0]["measured"] = None
    elif damage == "no node_id":
        del rows[0]["node_id"]
    else:
        validation["reports"]["graph vs + error nodes live, scale 0"]["rows"].pop()
    with pytest.raises(InvalidInputError):
        unfreezing_against_real(validation)
    page = validation_html(validation)
    assert "Where the frozen model departs from the real one</h3><p>Not shown: " in page
    assert "Validation by intervention" in page and "every intervention" in page
