"""The head-ablation notebook runs end to end on the default model (small setting)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "02_head_ablation.ipynb"


@pytest.mark.notebook
def test_head_ablation_notebook_runs(monkeypatch):
    monkeypatch.setenv("SCRYING_NB_PROMPTS", "4")
    monkeypatch.setenv("SCRYING_STATIC_IMAGES", "0")  # no PNGs in the test run (seconds each)
    monkeypatch.setenv("SCRYING_NB_BOOTSTRAP", "100")
    monkeypatch.setenv("SCRYING_NB_HALF_LEN", "8")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "clean logit difference" in outputs and "Spearman" in outputs
