"""Sentences in the notebooks that state a result agree with the notebooks' stored outputs
(the outputs of a full run on the default model, committed with them)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

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
    import pandas as pd  # the shipped set's held-out report

    report = pd.read_csv(ROOT.parent / "results" / "transcoders" / "gemma-3-270m-recipe-lifted" / "report.csv")
    low, high = report.variance_explained.min(), report.variance_explained.max()
    assert f"transcoders ({low * 100:.0f}-{high * 100:.0f}% of the MLP-output variance explained per layer on held-out text)" in " ".join(markdown.split())
    source = _cell_with(cells, "TRANSCODERS = Path").source
    assert '"gemma-3-270m-recipe-lifted"' in source and "traced with the shipped recipe set" in source
    flat = " ".join(markdown.split())
    assert f"({float(features[-1]):.3f} against {float(neurons[-1]):.3f} on 50 nodes)" in flat  # "a little worse ... here"
    labels = _text(_cell_with(cells, "most_influential(features"))
    for name in ("L11 #6989 +Italy +Australia", "L13 #8045 +Ohio +Massachusetts", "L12 #3693 +Wisconsin +Toronto"):
        node, promoted = name.split(" +", 1)
        assert re.search(rf"^{re.escape(node)} @\d+ .*\+{re.escape(promoted)}$", labels, flags=re.M), name


def test_head_ablation_notebook_claims():
    cells = _cells("02_head_ablation.ipynb")
    markdown = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    # "`When Mary and John went to the store, John gave a drink to` -> ` Mary` (correct) vs ` John`."
    assert "` Mary` (correct) vs ` John`" in markdown
    printed = _text(_cell_with(cells, "records = ioi_records()"))
    assert "When Mary and John went to the store, John gave a drink to -> ' Mary' vs ' John'" in printed, printed


# --------------------------------------------------------------------------- regenerated
# The checks above compare prose with stored output; these recompute the stored figures on the
# default model (the notebooks' own model: its forward passes are cheap) and compare them with
# an independent computation and with what is stored.
IOI = "When Mary and John went to the store, John gave a drink to"
TWO_HOP = "Fact: the capital of the state containing Dallas is"


def _stored_top(text: str) -> list[tuple[int, float]]:
    """``(id, prob)`` rows of a printed ``predict(...).top`` table."""
    return [(int(i), float(p)) for i, p in re.findall(r"^\d+\s+\S*\s+(\d+)\s+([\d.]+)\s", text, flags=re.M)]


def _last_logits(model, prompt: str):
    import torch

    from scrying.prompts import tokenize

    with torch.no_grad():
        return model(tokenize(model, prompt))[0, -1].double()


def test_attribution_notebook_predictions_regenerate(gemma):
    """predict()'s top tokens of both prompts, recomputed: equal to a softmax of the model's
    last logits done here, and to the stored tables (ids in order, probabilities to 1e-4); the
    two-hop answer is not Austin, the IOI answer is Mary."""
    from scrying.predict import PredictConfig, predict
    from scrying.prompts import single_token

    cells = _cells("01_attribution_graphs.ipynb")
    top = {}
    for prompt, needle in ((IOI, "predict(model, ioi"), (TWO_HOP, "print(predict(model, two_hop")):
        probs = _last_logits(gemma, prompt).softmax(-1)
        fresh = predict(gemma, prompt, PredictConfig(top_k=5)).top
        assert fresh["id"].tolist() == probs.topk(5).indices.tolist(), prompt
        assert fresh["prob"].tolist() == pytest.approx(probs.topk(5).values.tolist(), abs=1e-4)  # float32 softmax
        stored = _stored_top(_text(_cell_with(cells, needle)).split("targets")[0])
        assert [i for i, _ in stored] == fresh["id"].tolist(), prompt
        assert [p for _, p in stored] == pytest.approx(fresh["prob"].tolist(), abs=1e-4)
        top[prompt] = fresh["id"].tolist()
    assert single_token(gemma, " Austin") not in top[TWO_HOP]
    assert top[IOI][0] == single_token(gemma, " Mary")


def test_attribution_notebook_conservation_regenerates(gemma):
    """The printed conservation line, recomputed: the target's value is its demeaned logit from
    the model's forward pass (not the graph's stored value), equal to the stored value; the
    graph's incoming edges alone add up to it (Gemma has no bias terms)."""
    from scrying.attribution import FeatureGraphConfig, build_neuron_graph

    line = _text(_cell_with(_cells("01_attribution_graphs.ipynb"), "sum of incoming edges"))
    stored_value = float(re.findall(r"-?\d+\.\d+(?:e[-+]\d+)?", line)[0])
    logits = _last_logits(gemma, IOI)
    graph = build_neuron_graph(gemma, IOI, config=FeatureGraphConfig(max_feature_nodes=8, max_logits=1))
    target = next(i for i, n in enumerate(graph.nodes) if n.is_target)
    value = float(logits[graph.nodes[target].feature] - logits.mean())
    assert value == pytest.approx(stored_value, abs=1e-3)
    assert float(graph.adjacency[target].sum()) == pytest.approx(value, abs=1e-3)


def test_head_ablation_notebook_clean_figure_regenerates(gemma):
    """The first IOI record as printed, and the printed clean logit difference (the mean over the
    notebook's 32 prompts of logit(correct) - logit(incorrect)), recomputed prompt by prompt."""
    import torch

    from scrying.prompt_sets import ioi_records
    from scrying.prompts import single_token, tokenize_batch

    cells = _cells("02_head_ablation.ipynb")
    records = ioi_records()[:32]
    first = records[0]
    assert f"{first.prompt} -> {first.correct!r} vs {first.incorrect!r}" in _text(_cell_with(cells, "records = ioi_records()"))
    printed = _text(_cell_with(cells, "sweep = head_sweep("))
    stored = float(re.search(r"clean logit difference (-?[\d.]+)", printed).group(1))
    with torch.no_grad():  # the 32 prompts have one token length: one batch
        logits = gemma(tokenize_batch(gemma, [r.prompt for r in records]))[:, -1].double()
    correct = torch.tensor([single_token(gemma, r.correct) for r in records])
    incorrect = torch.tensor([single_token(gemma, r.incorrect) for r in records])
    rows = torch.arange(len(records))
    diffs = logits[rows, correct] - logits[rows, incorrect]
    assert diffs[0] > 0  # " Mary" (correct) over " John"
    assert float(diffs.mean()) == pytest.approx(stored, abs=2e-3)
