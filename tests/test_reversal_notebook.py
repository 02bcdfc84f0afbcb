"""The reversal notebook runs end to end (small setting: a few pairs per relation)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "04_reversal.ipynb"


@pytest.mark.notebook
def test_reversal_notebook_runs(monkeypatch):
    monkeypatch.setenv("SCRYING_SMALL", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "forward rank" in text and "state_capital" in text and "forward_only" in text
    assert "both_directions_control" in text and "linear probes, country_capital" in text
    figures = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) == 4  # the stored run, across sizes, the logit lens, the linear probes
    assert "SmolLM2-135M-Instruct" in text and "Qwen2.5-Coder-1.5B-Instruct" in text  # the sizes table
