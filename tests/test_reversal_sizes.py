"""Across sizes (issue 25, item 6): one summary row per model and relation from its stored
journal, the same pairs checked, members without results listed, and the tables read back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from scrying.errors import InvalidInputError
from scrying.reversal.records import read_results
from scrying.reversal.sizes import (
    SizeMember,
    family_members,
    gap_markdown,
    pooled_markdown,
    size_figure,
    size_table,
)
from scrying.reversal.summary import summarize
from scrying.stats import BootstrapConfig

ROOT = Path(__file__).resolve().parents[1]
SIZES = ROOT / "results" / "reversal" / "sizes"
SOURCE = SIZES / "smollm2-135m.jsonl"
FEW = BootstrapConfig(n_resamples=50)


def test_the_shipped_family_is_the_four_offline_models_by_size():
    members = family_members()
    assert [m.model for m in members] == ["smollm2-135m", "gemma-3-270m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    assert [m.params for m in members] == sorted(m.params for m in members)


def _two_members(tmp_path: Path) -> list[SizeMember]:
    if not SOURCE.exists():
        pytest.skip("no stored results")
    shutil.copy(SOURCE, tmp_path / "big.jsonl")
    shutil.copy(SOURCE, tmp_path / "small.jsonl")
    return [SizeMember("big", "Big", 2e9), SizeMember("small", "Small", 1e8), SizeMember("absent", "Absent", 3e8)]


def test_each_row_is_that_models_summary_and_a_missing_member_is_named(tmp_path):
    members = _two_members(tmp_path)
    table, missing = size_table(tmp_path, members, FEW)
    assert missing == ["absent"]
    expected = summarize(read_results(SOURCE), FEW)
    big = table[table.model == "big"].drop(columns=["model", "label", "params"]).reset_index(drop=True)
    assert big.equals(expected)
    assert list(table.model) == ["big"] * len(expected) + ["small"] * len(expected)
    pooled = pooled_markdown(table).splitlines()
    assert pooled[2].startswith("| Small | 100M | 83 |") and pooled[3].startswith("| Big | 2.00B | 83 |")  # by size
    row = expected[expected.relation == "all"].iloc[0]
    assert f"{row.forward_top1_hard:.2f} [{row.forward_top1_hard_low:.2f}, {row.forward_top1_hard_high:.2f}]" in pooled[2]
    gaps = gap_markdown(table).splitlines()
    assert gaps[0] == "| relation | Small | Big |"
    state = expected[expected.relation == "state_capital"].iloc[0]
    assert f"| state_capital | {state.forward_top1_hard:.2f} / {state.reverse_top1_hard:.2f}" in gap_markdown(table)
    assert len(size_figure(table).data) == 2 * len(expected)  # a line per direction and relation


def test_an_unfinished_or_different_member_is_refused(tmp_path):
    members = _two_members(tmp_path)
    lines = (tmp_path / "small.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (tmp_path / "small.jsonl").write_text("".join(lines[:-5]), encoding="utf-8")
    with pytest.raises(InvalidInputError, match="small.jsonl holds 78 of the 83 pairs big.jsonl scored: unfinished"):
        size_table(tmp_path, members, FEW)
    record = json.loads(lines[-1])
    record["b"] = "Atlantis"
    (tmp_path / "small.jsonl").write_text("".join(lines[:-1]) + json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="scored different pairs"):
        size_table(tmp_path, members, FEW)


def test_a_bad_family_file_is_named(tmp_path):
    bad = tmp_path / "family.json"
    bad.write_text(json.dumps([{"model": "m", "scale": "big"}]))
    with pytest.raises(InvalidInputError, match="family.json.*entry 0"):
        family_members(bad)


def _stored_summary() -> dict:
    path = SIZES / "summary.json"
    if not path.exists():
        pytest.skip("no stored across-sizes summary")
    return json.loads(path.read_text(encoding="utf-8"))


def test_stored_summary_is_recomputed_from_the_stored_journals():
    stored = _stored_summary()
    table, missing = size_table(SIZES, family_members())
    assert missing == stored["missing"] == []
    rows = json.loads(table.to_json(orient="records"))
    assert len(rows) == len(stored["rows"])
    for fresh, kept in zip(rows, stored["rows"], strict=True):
        assert fresh.keys() == kept.keys()
        for key, value in kept.items():
            assert fresh[key] == (pytest.approx(value, abs=1e-9) if isinstance(value, float) else value), key


def test_readme_tables_across_sizes_are_the_stored_summary():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    text = (SIZES / "summary.md").read_text(encoding="utf-8")
    stored = _stored_summary()
    import pandas as pd

    table = pd.DataFrame(stored["rows"])
    assert text == pooled_markdown(table) + "\n" + gap_markdown(table)
    for line in text.splitlines():
        assert line in readme, line


def test_notebook_size_figure_is_the_stored_summary():
    import nbformat
    import pandas as pd

    nb = nbformat.read(ROOT / "notebooks" / "04_reversal.ipynb", as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and "size_figure(" in c.source]
    outputs = [o["data"]["application/vnd.plotly.v1+json"] for c in cells for o in c.get("outputs", [])
               if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(outputs) == 1, "notebook 04 shows no sizes figure"
    table = pd.DataFrame(_stored_summary()["rows"])
    shown = outputs[0]["data"]
    expected = size_figure(table).data
    assert len(shown) == len(expected)
    for got, want in zip(shown, expected, strict=True):
        assert _array(got["y"]) == pytest.approx(list(want.y), abs=1e-12) and got["name"] == want.name
        assert _array(got["x"]) == pytest.approx(list(want.x))


def _array(value) -> list[float]:
    """A plotly JSON array: a list, or ``{"dtype", "bdata"}`` (base64 of the raw values)."""
    import base64

    import numpy as np

    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).tolist()
    return list(value)


def test_readme_prose_across_sizes_is_the_stored_summary():
    import pandas as pd

    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    table = pd.DataFrame(_stored_summary()["rows"])
    state = table[table.relation == "state_capital"]
    pooled = table[table.relation == "all"]
    assert (state.reverse_top1_hard > state.forward_top1_hard).all()
    assert (f"({state.forward_top1_hard.min():.2f}-{state.forward_top1_hard.max():.2f} forward against "
            f"{state.reverse_top1_hard.min():.2f}-{state.reverse_top1_hard.max():.2f} reverse; p < 0.05 in Gemma 3 270M and "
            "Qwen2.5-Coder-1.5B)") in readme
    assert set(state[state.p_top1_hard < 0.05].label) == {"Gemma 3 270M", "Qwen2.5-Coder-1.5B-Instruct"}
    cities = table[(table.relation == "us_city_state") & (table.p_top1_hard < 0.05)]
    assert set(cities.label) == {"SmolLM2-135M-Instruct", "Qwen2.5-Coder-0.5B-Instruct"}
    assert (cities.reverse_top1_hard > cities.forward_top1_hard).all()
    money = table[(table.relation == "country_currency") & (table.label == "Qwen2.5-Coder-1.5B-Instruct")].iloc[0]
    assert f"({money.forward_top1_hard:.2f} / {money.reverse_top1_hard:.2f} on {money.n} pairs, p={money.p_top1_hard:.2g})" in readme
    forward_ahead = table[(table.relation != "all") & (table.p_top1_hard < 0.05) & (table.diff_top1_hard > 0)]
    assert len(forward_ahead) == 1  # "the one forward-ahead asymmetry"
    gemma, big = pooled.set_index("label").loc["Gemma 3 270M"], pooled.set_index("label").loc["Qwen2.5-Coder-1.5B-Instruct"]
    assert pooled.diff_top1_hard.abs().idxmax() == pooled.index[pooled.label == "Gemma 3 270M"][0]
    assert f"has the largest pooled gap ({gemma.diff_top1_hard:.2f})" in readme
    assert f"has the smallest gap ({big.diff_top1_hard:.2f}, p={big.p_top1_hard:.2g})" in readme
    random = pd.concat([pooled.forward_top1, pooled.reverse_top1])
    assert f"the pooled top-1 is {random.min():.2f}-{random.max():.2f} in both directions" in readme
