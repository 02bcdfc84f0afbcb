"""Sentences in the notebooks that state a result agree with the notebooks' stored outputs
(the outputs of a full run on the default model, committed with them)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1] / "notebooks"


def _cells(name: str) -> list:
    return nbformat.read(ROOT / name, as_version=4).cells


def _text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def _top_token(text: str) -> str:
    """The first row's token of a printed ``predict(...).top`` table."""
    return re.search(r"^0\s+(\S+)\s+\d+\s", text, flags=re.M).group(1)


def _cell_with(cells: list, needle: str):
    return next(c for c in cells if c.cell_type == "code" and needle in c.source)


def test_attribution_notebook_claims():
    cells = _cells("01_attribution_graphs.ipynb")
    markdown = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    # "it does not answer Austin (its top tokens are printed below)"
    assert "does not answer Austin" in markdown
    top = _text(_cell_with(cells, "print(predict(model, two_hop"))
    assert _top_token(top) != "Austin" and "Austin" not in top.split("targets")[0], top
    # "Conservation: each node's incoming edges (plus bias terms, zero for Gemma) add up to its value."
    line = _text(_cell_with(cells, "sum of incoming edges"))
    value, edges, bias = (float(x) for x in re.findall(r"-?\d+\.\d+(?:e[-+]\d+)?", line)[:3])
    assert abs(value - (edges + bias)) < 1e-3 and abs(bias) < 1e-3, line
    # the IOI prompt's answer, named in the component section, is the model's top token
    assert _top_token(_text(_cell_with(cells, "predict(model, ioi"))) == "Mary"
    # the unpruned graph must agree to rounding (as the validation section says)
    summary = _text(_cell_with(cells, "validate_feature_graph("))
    row = next(r for r in summary.splitlines() if "unpruned graph vs frozen, scale 0 " in r + " ")
    assert float(row.split()[-1]) > 0.99  # the slope column, last in the summary table


def test_attribution_notebook_feature_claims():
    """"it is weaker than with neurons": the stored table's frozen-vs-real column."""
    cells = _cells("01_attribution_graphs.ipynb")
    table = _text(_cell_with(cells, "TRANSCODERS = Path"))
    neurons = re.search(r"^neurons\s+(.*)$", table.split("Spearman (frozen vs real")[1], flags=re.M).group(1).split()
    features = re.search(r"^transcoder features\s+(.*)$", table.split("Spearman (frozen vs real")[1], flags=re.M).group(1).split()
    assert float(features[-1]) < float(neurons[-1]), table
    markdown = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    assert "65-86% of the MLP-output variance" in markdown


def test_head_ablation_notebook_claims():
    cells = _cells("02_head_ablation.ipynb")
    markdown = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    # "`When Mary and John went to the store, John gave a drink to` -> ` Mary` (correct) vs ` John`."
    assert "` Mary` (correct) vs ` John`" in markdown
    printed = _text(_cell_with(cells, "records = ioi_records()"))
    assert "When Mary and John went to the store, John gave a drink to -> ' Mary' vs ' John'" in printed, printed
