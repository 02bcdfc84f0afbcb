"""The attribution-graph notebook runs end to end on the default model (small setting)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "01_attribution_graphs.ipynb"


@pytest.mark.notebook
def test_attribution_notebook_runs(monkeypatch):
    monkeypatch.setenv("SCRYING_SMALL", "1")
    monkeypatch.setenv("SCRYING_STATIC_IMAGES", "0")  # no PNGs in the test run (seconds each)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "replacement score" in text and "Spearman predicted vs measured" in text
    assert "EAP-IG vs exact patching" in text
    figures = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) == 4  # neuron graph, Qwen two-hop graph (stored), transcoder-feature graph, circuit
