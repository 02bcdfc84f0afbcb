"""The committed notebooks read without a kernel: every plotly figure's stored output carries a
PNG beside its interactive JSON, notebook 01 stores the viewer inline (an iframe) and a PNG of
it, and each notebook ends by saying what it found."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("0*.ipynb"))


def outputs(nb):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_figures_have_static_images_and_the_notebook_ends_with_its_findings(path):
    nb = nbformat.read(path, as_version=4)
    figures = [o for o in outputs(nb) if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert figures, f"{path.name}: no stored figure"
    assert all("image/png" in o["data"] for o in figures), f"{path.name}: a figure without a PNG (run with notebook_setup())"
    last = nb.cells[-1]
    assert last.cell_type == "markdown" and last.source.startswith("## What this notebook found")


def test_notebook_01_stores_the_viewer_inline_and_a_png_of_it():
    nb = nbformat.read(NOTEBOOKS[0], as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith("show("))
    kinds = [set(o.get("data", {})) for o in cell.outputs]
    assert any("image/png" in k for k in kinds)
    html = next(o["data"]["text/html"] for o in cell.outputs if "text/html" in o.get("data", {}))
    assert html.startswith("<iframe srcdoc=") and "scrying-graph" in html
