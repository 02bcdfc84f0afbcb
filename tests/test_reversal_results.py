"""The README's reversal figures are the committed results: the per-relation table is formatted
from results/reversal/results.summary.csv (itself recomputed here from results.jsonl), and the
toy experiment's figures from results/reversal/toy/summary.json."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from scrying.reversal.summary import markdown_table, summarize
from scrying.stats import BootstrapConfig

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "reversal"


def _records() -> list[dict]:
    lines = (RESULTS / "results.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[1:]]


def test_summary_is_recomputed_from_the_stored_records():
    stored = pd.read_csv(RESULTS / "results.summary.csv")
    fresh = summarize(_records(), BootstrapConfig())
    assert list(stored.relation) == list(fresh.relation)
    for column in stored.columns:
        if column != "relation":
            assert stored[column].to_numpy() == pytest.approx(fresh[column].to_numpy(), abs=1e-9, nan_ok=True), column


def test_readme_table_is_the_stored_summary():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = markdown_table(pd.read_csv(RESULTS / "results.summary.csv"))
    for line in table.splitlines():
        assert line in readme, line


def test_readme_toy_figures_are_the_stored_experiment():
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    conditions = {c["condition"]: c for c in json.loads((RESULTS / "toy" / "summary.json").read_text())["conditions"]}

    def cell(row: dict, key: str) -> str:
        return f"{row[key]:.2f} [{row[key + '_low']:.2f}, {row[key + '_high']:.2f}]"

    curse, cure = conditions["forward_only"], conditions["reverse_training"]
    for text in (cell(curse, "forward_exact"), cell(curse, "reverse_top1"), cell(cure, "reverse_top1"),
                 f"{curse['reverse_chance']:.2f}"):
        assert text in readme, text


def test_readme_lens_figures_are_the_stored_lens_table():
    from scrying.reversal.lens import decodable_layers

    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    lens = pd.read_csv(RESULTS / "results.lens.csv")
    last = lens[lens.layer == lens.layer.max()]
    top = (last["rank"] <= 10).groupby(last.direction).sum()
    layers = decodable_layers(lens, top=10).groupby("direction").layer.median()
    assert f"Over the {lens['index'].nunique()} pairs known forward (top-1) and not in reverse" in readme
    assert f"for {top['forward']} forward prompts and {top['reverse']} reverse prompts" in readme
    assert f"stays there is {layers['forward']:.0f} forward and {layers['reverse']:.0f} reverse" in readme


def test_readme_finetune_figures_are_the_stored_experiment():
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    conditions = {c["condition"]: c for c in json.loads((RESULTS / "finetune" / "summary.json").read_text())["conditions"]}

    def cell(row: dict, key: str) -> str:
        return f"{row[key]:.2f} [{row[key + '_low']:.2f}, {row[key + '_high']:.2f}]"

    curse, cure = conditions["forward_only"], conditions["reverse_training"]
    for text in (cell(curse, "forward_top1"), cell(curse, "reverse_top1"), cell(cure, "forward_top1"),
                 cell(cure, "reverse_top1"), f"p={curse['p_top1']:.2g}"):
        assert text in readme, text
