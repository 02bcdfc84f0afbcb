"""Linear probes of where each direction is stored (issue 25, item 5): a label planted linearly
at one layer is found there, and nowhere else, by held-out pairs, while the shuffled-label control
sits at chance; the fit is the optimum of the full problem; the residual read at the cut prompt
is the full prompt's; the stored results are their table summarised, and notebook 04 shows them."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import torch
from einops import einsum

from scrying.models import LoadConfig, load_model
from scrying.reversal.causal_tracing import subject_span
from scrying.reversal.linear_probes import (
    LinearProbeConfig,
    answer_coordinates,
    cross_validated,
    fit_bilinear,
    fold_of,
    probe_summary,
    probe_table,
    subject_residuals,
)
from scrying.reversal.pairs import Pair
from scrying.sites import Component, Site, recorded
from scrying.stats import BootstrapConfig
from tests.test_reversal_scoring import _tiny_pairs, tiny_dir  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[1]
PROBES = ROOT / "results" / "reversal" / "probes" / "probes.json"
NOTEBOOK = ROOT / "notebooks" / "04_reversal.ipynb"


def _planted(n: int, n_classes: int, layer: int, seed: int = 0, noise: float = 0.3):
    """Residuals ``[n, 4, d]`` of pure noise except at ``layer``, where item ``i`` holds a fixed
    random linear image of its class's vector, plus noise."""
    gen = torch.Generator().manual_seed(seed)
    d = 48
    vectors = torch.randn(n_classes, d, generator=gen)
    y = torch.arange(n) % n_classes
    x = torch.randn(n, 4, d, generator=gen)
    mix = torch.randn(d, d, generator=gen) / d**0.5
    x[:, layer] = vectors[y] @ mix + noise * torch.randn(n, d, generator=gen)
    right = torch.nn.functional.one_hot(y, n_classes).double()
    return x, y, right, answer_coordinates(vectors, 16)


@pytest.mark.parametrize(("n", "n_classes"), [(60, 60), (60, 6)], ids=["one-to-one, every class held out", "six pairs a class"])
def test_a_planted_label_is_found_at_its_layer_and_the_shuffled_control_sits_at_chance(n, n_classes):
    x, y, right, classes = _planted(n, n_classes, layer=2)
    correct, shuffled = cross_validated(x, y, right, classes, LinearProbeConfig(max_iter=50), key="planted")
    accuracy, control = correct.mean(0), shuffled.mean(0)
    chance = 1 / n_classes
    assert accuracy[2] >= 0.7
    slack = 3 * (chance * (1 - chance) / n) ** 0.5 + 0.02  # three binomial standard errors
    for layer in (0, 1, 3):
        assert accuracy[layer] <= chance + slack, (layer, accuracy)
    assert (control <= chance + slack).all(), control


def test_without_the_label_in_the_residual_nothing_is_found():
    x, y, right, classes = _planted(60, 6, layer=2, noise=0.3)
    x[:, 2] = torch.randn(60, 48, generator=torch.Generator().manual_seed(9))  # the teeth: remove the plant
    correct, _ = cross_validated(x, y, right, classes, LinearProbeConfig(max_iter=50), key="planted")
    assert correct.mean(0)[2] <= 1 / 6 + 0.15


def test_the_fit_is_the_optimum_of_the_full_problem():
    """Fitted in the reduced coordinates, ``W`` still zeroes the gradient of the objective over
    all of ``d_model x answer_dims`` (the objective is convex, so that is its minimum)."""
    x, y, _, classes = _planted(40, 8, layer=1)
    config = LinearProbeConfig(weight_decay=1e-2)
    probe = fit_bilinear(x, y, classes, config)
    seen, labels = torch.unique(y, return_inverse=True)
    w = probe.weight.clone().requires_grad_(True)
    z = (x.double() - probe.mean) / probe.std
    logits = einsum(z, w, probe.classes[seen], "n layer d, layer d e, c e -> n layer c")
    loss = sum(torch.nn.functional.cross_entropy(logits[:, layer], labels) for layer in range(x.shape[1]))
    (loss + config.weight_decay * (w**2).sum()).backward()
    assert w.grad.abs().max() < 1e-5
    # and it is not zero: the planted layer's probe is fitted
    assert probe.weight[1].abs().max() > 1e-2


def test_folds_are_balanced_and_seeded():
    items = [str(i) for i in range(23)]
    folds = fold_of(items, 5, seed=1)
    assert sorted(folds.count(k) for k in range(5)) == [4, 4, 5, 5, 5]
    assert folds == fold_of(items, 5, seed=1) and folds != fold_of(items, 5, seed=2)
    # items of one group (pairs sharing a prompt) are held out together
    groups = ["Texas", "Ohio", "Texas", "Utah", "Ohio", "Texas", "Iowa", "Utah"]
    folds = fold_of(groups, 3, seed=0)
    for g in set(groups):
        assert len({f for f, h in zip(folds, groups, strict=True) if h == g}) == 1


def test_the_residual_at_the_cut_prompt_is_the_full_prompts(tiny_dir):  # noqa: F811
    model = load_model(str(tiny_dir), LoadConfig(dtype="float64"))
    pairs = _tiny_pairs()
    for direction in ("forward", "reverse"):
        cut = subject_residuals(model, pairs, direction, batch_size=2)  # prompt layer d_model
        for j, pair in enumerate(pairs):
            tokens, span = subject_span(model, pair, direction)
            sites = [Site(Component.RESID_PRE, 0)] + [Site(Component.RESID_POST, layer) for layer in range(model.cfg.n_layers)]
            with recorded(model, sites, clone=True) as store:
                model(tokens[None], return_type=None)
            full = torch.stack([store[s][0, span.stop - 1] for s in sites]).float()
            assert torch.allclose(cut[j], full, atol=1e-5), (direction, j)


def test_probe_table_on_a_tiny_model(tiny_dir):  # noqa: F811
    model = load_model(str(tiny_dir), LoadConfig(dtype="float64"))
    pairs = _tiny_pairs()
    table = probe_table(model, pairs, LinearProbeConfig(folds=2, answer_dims=4, bootstrap=BootstrapConfig(n_resamples=20)))
    n_layers = model.cfg.n_layers
    assert len(table) == len(pairs) * 2 * (n_layers + 1)
    assert sorted(set(table.layer)) == list(range(-1, n_layers))
    assert (table.n_classes == 5).all() and (table.n_right == 1).all()
    summary = probe_summary(table, BootstrapConfig(n_resamples=20))
    assert set(summary.columns) >= {"accuracy", "accuracy_low", "accuracy_high", "shuffled", "chance"}
    assert summary.chance.eq(0.2).all()


def test_a_prompt_shared_by_many_pairs_is_one_row(tiny_dir):  # noqa: F811
    # three states with 3, 2 and 1 cities: forward has 6 prompts, reverse 3 ("{b} w22" per state)
    cities = [("w1", "w9"), ("w2", "w9"), ("w3", "w9"), ("w4", "w10"), ("w5", "w10"), ("w6", "w11")]
    pairs = [Pair(a, b, "city_state", "w20 {a} w21", "{b} w22", cardinality="many_to_one") for a, b in cities]
    model = load_model(str(tiny_dir), LoadConfig(dtype="float64"))
    table = probe_table(model, pairs, LinearProbeConfig(folds=2, answer_dims=4, bootstrap=BootstrapConfig(n_resamples=20)))
    layers = model.cfg.n_layers + 1
    forward, reverse = table[table.direction == "forward"], table[table.direction == "reverse"]
    assert len(forward) == 6 * layers and sorted(set(forward["index"])) == [0, 1, 2, 3, 4, 5]
    assert len(reverse) == 3 * layers and sorted(set(reverse["index"])) == [0, 3, 5]  # each state's first pair
    first = reverse[reverse.layer == -1].set_index("index")
    assert first.n_right.to_dict() == {0: 3, 3: 2, 5: 1} and (first.n_classes == 6).all()
    assert probe_summary(table, BootstrapConfig(n_resamples=20)).query("direction == 'reverse'").n.eq(3).all()


def _stored() -> dict:
    if not PROBES.exists():
        pytest.skip("no stored probe results")
    return json.loads(PROBES.read_text(encoding="utf-8"))


def test_stored_summary_is_its_table_summarised():
    stored = _stored()
    table = pd.DataFrame(stored["table"])
    fresh = probe_summary(table, BootstrapConfig(n_resamples=stored["settings"]["n_bootstrap"]))
    summary = pd.DataFrame(stored["summary"])
    assert list(summary.columns) == list(fresh.columns)
    for column in summary.columns:
        if summary[column].dtype == object:
            assert list(summary[column]) == list(fresh[column]), column
        else:
            assert summary[column].to_numpy() == pytest.approx(fresh[column].to_numpy(), abs=1e-12), column
    # one value checked against the raw table directly: pooled accuracy at the last layer, forward
    last = table[(table.layer == table.layer.max()) & (table.direction == "forward")]
    row = summary[(summary.relation == "all") & (summary.direction == "forward") & (summary.layer == table.layer.max())]
    assert float(row.accuracy.iloc[0]) == pytest.approx(last.correct.mean(), abs=1e-12)
    assert float(row.chance.iloc[0]) == pytest.approx((last.n_right / last.n_classes).mean(), abs=1e-12)


def _notebook_probe_figure() -> dict:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "probe_figure" in cell.source:
            for output in cell.get("outputs", []):
                if "application/vnd.plotly.v1+json" in output.get("data", {}):
                    return output["data"]["application/vnd.plotly.v1+json"]
    raise AssertionError("notebook 04 shows no probe figure")


def test_notebook_probe_figure_is_the_stored_summary():
    """Every probe trace of notebook 04 (as saved) plots the stored summary's numbers."""
    summary = pd.DataFrame(_stored()["summary"])
    figure = _notebook_probe_figure()
    traces = figure["data"]
    relations = list(dict.fromkeys(summary.relation))
    assert len(traces) == len(relations) * 2 * 3
    k = 0
    for relation in relations:
        part = summary[summary.relation == relation]
        for direction, cell in part.groupby("direction", sort=True):
            for column in ("accuracy", "shuffled", "chance"):
                trace = traces[k]
                k += 1
                assert list(trace["x"]) == list(cell.layer), (relation, direction, column)
                assert list(trace["y"]) == pytest.approx(list(cell[column]), abs=1e-12), (relation, direction, column)


def test_notebook_findings_are_the_stored_numbers():
    """The closing "What this notebook found" cell is written from the stored run, toy and probe figures."""
    from scrying.reversal.experiment import read_experiment_summary
    from scrying.reversal.report import findings_markdown

    nb = nbformat.read(NOTEBOOK, as_version=4)
    last = nb.cells[-1]
    assert last.cell_type == "markdown" and last.source.startswith("## What this notebook found")
    summary = pd.DataFrame(_stored()["summary"])
    toy = read_experiment_summary(ROOT / "results" / "reversal" / "toy_cure" / "summary.json")
    table = pd.read_csv(ROOT / "results" / "reversal" / "results.summary.csv")
    finetune = read_experiment_summary(ROOT / "results" / "reversal" / "finetune" / "summary.json")
    sizes = pd.DataFrame(json.loads((ROOT / "results" / "reversal" / "sizes" / "summary.json").read_text(encoding="utf-8"))["rows"])
    assert last.source == findings_markdown(summary, toy, table, finetune=finetune, sizes=sizes)
