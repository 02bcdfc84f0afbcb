"""README sentences of the emergence section (issue 24) are the committed results: the verdicts
of the committed outputs rescored under the current rule, and the real-model family's figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scrying.emergence.outputs import read_outputs, score_outputs
from scrying.emergence.verdict import VerdictConfig, emergence

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "emergence"


def _readme() -> str:
    return " ".join((ROOT / "README.md").read_text().split())


@pytest.mark.parametrize("study", ["toy-addition3", "toy-induction", "toy-widths-induction"])
def test_rescored_verdicts_in_the_readme(study):
    summary = emergence(score_outputs(read_outputs(RESULTS / study / "outputs.jsonl")), VerdictConfig())
    assert f"`{study}` rescored: **{summary.verdict}**" in _readme()


def real_figures() -> dict[str, str]:
    """The real family's figures as the README writes them, from the committed study."""
    study = RESULTS / "real-addition2"
    summary = json.loads((study / "summary.json").read_text())
    scores = score_outputs(read_outputs(study / "outputs.jsonl"))
    p = scores[scores.metric == "per_token_probability"].groupby("model")["value"].mean()
    models = {m["model"]: m for m in summary["models"]}
    names = {"SMOLLM": "smollm2-135m", "GEMMA": "gemma-3-270m", "QWEN05": "qwen2.5-coder-0.5b", "QWEN15": "qwen2.5-coder-1.5b"}
    out = {}
    for key, model in names.items():
        m = models[model]
        out[f"{key}_EM"] = f"{m['exact_match']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"
        out[f"{key}_P"] = f"{p[model]:.3f}"
    out["REAL_VERDICT"] = summary["verdict"]
    out["REAL_FINDING"] = summary["finding"]
    law = summary["scaling"]
    out["REAL_ALPHA"] = f"{law['alpha']:.2f} [{law['alpha_ci'][0]:.2f}, {law['alpha_ci'][1]:.2f}]"
    out["REAL_R2"] = f"{law['r2']:.2f}"
    return out


def test_real_family_figures_in_the_readme():
    readme = _readme()
    figures = real_figures()
    assert (f"exact match {figures['SMOLLM_EM']}, {figures['GEMMA_EM']}, {figures['QWEN05_EM']}, {figures['QWEN15_EM']}; "
            f"per-token probability {figures['SMOLLM_P']}, {figures['GEMMA_P']}, {figures['QWEN05_P']}, {figures['QWEN15_P']}; "
            f"verdict **{figures['REAL_VERDICT']}** — {figures['REAL_FINDING']}") in readme
    assert f"α = {figures['REAL_ALPHA']}, R² {figures['REAL_R2']}" in readme
    summary = json.loads((RESULTS / "real-addition2" / "summary.json").read_text())
    assert [m["model"] for m in summary["models"]] == ["smollm2-135m", "gemma-3-270m", "qwen2.5-coder-0.5b",
                                                         "qwen2.5-coder-1.5b"]  # the README's order: by scale
