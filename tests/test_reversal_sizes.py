"""Across sizes (issue 25, item 6): one summary row per model and relation from its stored
journal, the same pairs checked, members without results listed, and the tables read back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from scrying.errors import InvalidInputError
from scrying.reversal.records import read_results
from scrying.reversal.sizes import SizeMember, family_members, gap_markdown, pooled_markdown, size_figure, size_table
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
