"""The README's reversal figures are the committed results: the per-relation table is formatted
from results/reversal/results.summary.csv (itself recomputed here from results.jsonl), and the
toy experiment's figures from results/reversal/toy/summary.json."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from scrying.reversal.records import PairRecord, read_results
from scrying.reversal.summary import markdown_table, summarize
from scrying.stats import BootstrapConfig

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "reversal"


def _records() -> list[PairRecord]:
    return read_results(RESULTS / "results.jsonl")


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


def test_readme_patching_figures_are_the_stored_causal_trace():
    from scrying.reversal.causal_tracing import trace_summary

    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    table = pd.read_csv(RESULTS / "results.patching.csv")
    summary = trace_summary(table).set_index(["direction", "layer"])
    fwd, rev = summary.loc["forward"], summary.loc["reverse"]
    assert f"is {fwd.p_clean.iloc[0]:.3f} clean and {fwd.p_corrupt.iloc[0]:.3f} corrupted" in readme
    assert f"blocks 0-12 brings back {fwd.indirect_effect[:13].min():.2f}-{fwd.indirect_effect[:13].max():.2f} of it" in readme
    peak = fwd.indirect_effect[:13].idxmax()
    assert f"(most at block {peak}: {fwd.indirect_effect[peak]:.3f} [{fwd.ci_low[peak]:.3f}, {fwd.ci_high[peak]:.3f}])" in readme
    assert f"nothing ({fwd.indirect_effect[13]:.3f} at block 13)" in readme and fwd.indirect_effect[13:].max() < 0.01
    assert f"answers have {rev.p_clean.iloc[0]:.3f} clean and {rev.p_corrupt.iloc[0]:.3f} corrupted" in readme
    top = rev.indirect_effect[:13].idxmax()
    assert f"at most {rev.indirect_effect[top]:.3f} [{rev.ci_low[top]:.3f}, {rev.ci_high[top]:.3f}]" in readme
    assert table["index"].nunique() == pd.read_csv(RESULTS / "results.lens.csv")["index"].nunique()
