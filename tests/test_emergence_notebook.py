"""The emergence notebook runs end to end (small setting: the tiny toy family)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "03_emergence.ipynb"


@pytest.mark.notebook
def test_emergence_notebook_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("SCRYING_SMALL", "1")
    monkeypatch.setenv("SCRYING_STATIC_IMAGES", "0")  # no PNGs in the test run (seconds each)
    monkeypatch.setenv("SCRYING_CACHE_DIR", str(tmp_path))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "verdict:" in text and "breakthroughness" in text and "finding:" in text
    assert "smooth fit^L reproduces" in text and "alpha" in text  # predict-and-compare, scaling law
    figures = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) == 3  # metrics and mechanism, predict-and-compare, scaling law
