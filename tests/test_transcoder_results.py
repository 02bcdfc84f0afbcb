"""The README's transcoder figures are the committed results: the default set's quality report
(results/transcoders/gemma-3-270m-default/report.csv), the gallery's feature graphs
(graphs/gallery/*-features.json) and what the Dallas feature page shows at its opening
thresholds; the notebook's claim that the feature graph predicts the real model less well."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from scrying.attribution import Graph
from scrying.attribution.influence import PruneConfig, prune
from scrying.transcoders.train_config import PRESETS
from scrying.viewer.page import DEFAULT_THRESHOLDS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "transcoders" / "gemma-3-270m-default"
GALLERY = ROOT / "graphs" / "gallery"
#: The `default` set's three feature graphs, the gallery's until the recipe's one-session set replaced them.
DEFAULT_GRAPHS = ROOT / "results" / "transcoders" / "gemma-3-270m-default" / "graphs"
NEURONS = {"dallas-texas-features": "dallas-texas", "ioi-features": "ioi-neurons", "dallas-two-hop-features": "dallas-two-hop"}


def _readme() -> str:
    return " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())


def test_quality_figures_are_the_stored_report():
    readme = _readme()
    report = pd.read_csv(RESULTS / "report.csv")
    assert len(report) == 18 and (report.l0.round() == 32).all()
    low, high = report.variance_explained.min(), report.variance_explained.max()
    assert f"explain {low:.0%}-{high:.0%} of the MLP-output variance".replace("%-", "-") in readme
    best, worst = report.loc[report.fvu.idxmin()], report.loc[report.fvu.idxmax()]
    assert f"(FVU {best.fvu:.2f} at layer {int(best.layer)} to {worst.fvu:.2f} at layer {int(worst.layer)}, mean {report.fvu.mean():.2f})" in readme
    assert f"{report.dead_fraction.min():.0%}-{report.dead_fraction.max():.0%} of features dead".replace("%-", "-") in readme
    assert f"Quality on {int(report.rows[0]):,} held-out positions" in readme
    preset = PRESETS["default"]


    training = json.loads((RESULTS / "training.json").read_text())
    assert training["config"]["total_tokens"] == preset.total_tokens and training["chunks_done"] == preset.n_chunks == 9
    assert f"`default` (295k tokens in {preset.n_chunks} chunks, {preset.n_features:,} TopK-{preset.k}" in readme


def test_gallery_feature_rows_are_the_stored_graphs():
    readme = _readme()
    for name, neuron_name in NEURONS.items():
        g, n = Graph.read_json(DEFAULT_GRAPHS / f"{name}.json"), Graph.read_json(GALLERY / f"{neuron_name}.json")
        assert g.metadata["basis"] == "transcoders" and g.metadata["bos_error_as_bias"]
        s, v, vn = g.metadata["scores"], g.metadata["validation"]["reports"], n.metadata["validation"]["reports"]
        row = (f"| {g.prompt} | {sum(x.kind == 'feature' for x in g.nodes)} | {s['replacement_score_unselected_as_error']:.3f} "
               f"| {s['completeness_score_unselected_as_error']:.3f} | {v['graph vs frozen, scale 0']['spearman']:.3f} "
               f"| {v['frozen vs real, scale 0']['spearman']:.3f} | {vn['frozen vs real, scale 0']['spearman']:.3f} |")
        assert row in readme, row
        # "worse than the neuron basis does"; "the unpruned graph vs frozen: 1.000"
        assert v["frozen vs real, scale 0"]["spearman"] < vn["frozen vs real, scale 0"]["spearman"]
        assert f"{v['unpruned graph vs frozen, scale 0']['spearman']:.3f}" == "1.000"


def test_dallas_feature_page_opens_on_error_nodes():
    g = Graph.read_json(DEFAULT_GRAPHS / "dallas-texas-features.json")
    node, edge = DEFAULT_THRESHOLDS["features"]
    kept = [x for x, m in zip(g.nodes, prune(g, PruneConfig(node_threshold=node, edge_threshold=edge)).node_mask.tolist(), strict=True) if m]
    assert {x.kind for x in kept} == {"error", "embedding", "logit"}
    errors = {(x.layer, g.prompt_tokens[x.pos]) for x in kept if x.kind == "error"}
    claimed = {(3, "Dallas"), (5, "Dallas"), (12, " in"), (8, " of")} | {(ly, " of") for ly in range(12, 18)}
    assert errors == claimed
    labels = {(x.layer, x.feature): x.label for x in g.nodes if x.kind == "feature"}
    assert "+South +North" in labels[(11, 2768)] and "+Southern +South" in labels[(11, 147)]


COMPARISON = ROOT / "results" / "transcoders" / "vs_circuit_tracer"
ROWS = {
    "dallas-quick": "11 tokens, `quick`",
    "dallas-default": "11 tokens, `default`",
    "256-default": "256 tokens, `default`",
    "1024-default": "1,024 tokens, `default`",
}


def _comparison_row(text: str) -> str:
    """The README table row of one stored benchmark output: its time and peak-memory figures."""
    import re

    time = re.search(r"wall scrying ([\d.]+) s, circuit-tracer ([\d.]+) s, ratio scrying/circuit-tracer ([\d.]+)", text)
    memory = re.search(r"peak memory \(whole process, model load included\): scrying ([\d.]+) GB, circuit-tracer ([\d.]+) GB, ratio ([\d.]+)", text)
    assert time and memory, "a stored benchmark output lacks its time or memory line"
    t, m = time.groups(), memory.groups()
    return f"| {t[0]} s / {t[1]} s = **{t[2]}x** | {m[0]} GB / {m[1]} GB = **{m[2]}x** |"


def test_circuit_tracer_comparison_is_the_stored_benchmark_output():
    """Each row of the README's comparison table is its stored output, and every edge compared
    agreed to relative 1e-4 but the one the README names."""
    import re

    readme = _readme()
    for name, label in ROWS.items():
        text = (COMPARISON / f"{name}.txt").read_text(encoding="utf-8")
        assert f"| {label} {_comparison_row(text)}" in readme, name
        within, total = map(int, re.search(r"edge agreement .*?: (\d+)/(\d+) within relative 0.0001", text).groups())
        assert within == total or (name == "dallas-default" and total - within == 1), name
        assert f"{total:,}" in readme


# --------------------------------------------------------------------------- regenerated
# The checks above compare the README with stored files. The stored files come from Gemma and the
# default transcoders (377 MB, not in the repository); what follows recomputes the same kinds of
# figure on a tiny model, by the code that wrote them, against an independent computation, and
# checks the stored files against their own arithmetic.


def test_quality_report_equals_an_independent_computation(tmp_path):
    """Every column of ``quality_report`` (the code behind report.csv) on a tiny GPT-2 with a
    random ReLU set, windows in three batches (the last one short): the MLP's input and output
    read here at every position past BOS, the reconstruction ``relu(x W_enc^T + b_enc) W_dec +
    b_dec + x W_skip^T`` written out, FVU against the variance about the mean (GPT-2's MLP outputs
    have a mean far from 0), L0, the share of features never active (some are made dead)."""
    import torch

    from scrying.sites import Component, Site, recorded
    from scrying.transcoders.quality import quality_report
    from tests.test_transcoder_graph import random_set
    from tests.tiny_models import tiny

    model = tiny("gpt2", tmp_path)
    tset = random_set(model.cfg.d_model, model.cfg.n_layers, seed=11)
    windows = torch.randint(3, 20, (20, 9), generator=torch.Generator().manual_seed(2))
    windows[:, 0] = 1
    n = model.cfg.n_layers
    with torch.no_grad(), recorded(model, [Site(c, ly) for ly in range(n) for c in (Component.MLP_IN, Component.MLP_RESULT)]) as store:
        model(windows)
    with torch.no_grad():
        for ly, tc in enumerate(tset.transcoders):
            tc.b_enc[:5] = -100.0  # five dead features per layer
            x = store[Site(Component.MLP_IN, ly)][:, 1:].reshape(-1, model.cfg.d_model).double()
            for f in range(5, 10):  # five that fire on one row each, wherever it falls in the batches
                first, second = (x @ tc.W_enc[f].detach()).topk(2).values
                tc.b_enc[f] = -(first + second) / 2
    report = quality_report(model, tset, windows, batch=8)
    assert list(report.layer) == list(range(n))
    for ly, tc in enumerate(tset.transcoders):
        w = {k: v.detach().double() for k, v in tc.tensors().items()}
        x = store[Site(Component.MLP_IN, ly)][:, 1:].reshape(-1, model.cfg.d_model).double()
        y = store[Site(Component.MLP_RESULT, ly)][:, 1:].reshape(-1, model.cfg.d_model).double()
        acts = torch.relu(x @ w["W_enc"].T + w["b_enc"])
        y_hat = acts @ w["W_dec"] + w["b_dec"] + x @ w["W_skip"].T
        centred = (y - y.mean(0)).pow(2).sum()
        assert y.shape[0] * y.mean(0).pow(2).sum() > 0.05 * centred  # the mean matters
        fvu = float((y - y_hat).pow(2).sum() / centred)
        row = report.iloc[ly]
        assert row.fvu == pytest.approx(fvu, rel=1e-9)
        assert row.variance_explained == pytest.approx(1 - fvu, rel=1e-9)
        assert row.l0 == pytest.approx(float((acts > 0).sum(-1).double().mean()), rel=1e-12)
        dead = float((acts > 0).any(0).logical_not().double().mean())
        assert row.dead_fraction == pytest.approx(dead, abs=1e-12) and dead >= 5 / tc.spec.n_features
        assert ((acts[:, 5:10] > 0).sum(0) == 1).all()
        assert row.rows == 20 * 8


def test_stored_results_agree_with_their_own_arithmetic():
    """report.csv's variance explained is 1 - FVU in every row; each stored comparison's ratios
    are its two times and memories divided, to the printed rounding."""
    import re

    report = pd.read_csv(RESULTS / "report.csv")
    assert (report.variance_explained - (1 - report.fvu)).abs().max() < 1e-9
    assert report.layer.tolist() == list(range(18)) and (report.dead_fraction.between(0, 1)).all()
    for name in ROWS:
        text = (COMPARISON / f"{name}.txt").read_text(encoding="utf-8")
        a, b, ratio = map(float, re.search(r"wall scrying ([\d.]+) s, circuit-tracer ([\d.]+) s, ratio scrying/circuit-tracer ([\d.]+)", text).groups())
        assert ratio == pytest.approx(a / b, abs=0.006 + 0.01 * a / b), name
        a, b, ratio = map(float, re.search(r"peak memory \(whole process, model load included\): scrying ([\d.]+) GB, circuit-tracer ([\d.]+) GB, ratio ([\d.]+)", text).groups())
        assert ratio == pytest.approx(a / b, abs=0.006 + 0.01 * a / b), name
