"""Graph validation in two layers (scrying.attribution.validation): the graph's own path sums
against the frozen model (exact for an unpruned graph), and the frozen against the real model."""

from __future__ import annotations

import pytest
import torch

from scrying.attribution import FeatureGraphConfig, build_neuron_graph
from scrying.attribution.influence import PruneConfig, prune, pruned_graph
from scrying.attribution.validation import STAGES, ValidationConfig, validate_feature_graph
from scrying.metrics import demeaned_logit
from scrying.prompts import tokenize
from scrying.sites import Component, Site, hooks
from tests.tiny_models import tiny

PROMPT = "t1 t5 t2 t7 t1 t5"
CONFIG = ValidationConfig(top_k=12, scales=(0.0, 0.5, 1.5), chunk=5)


@pytest.fixture(scope="module", params=["gemma3", "gpt2"])
def traced(request, tmp_path_factory):
    model = tiny(request.param, tmp_path_factory.mktemp("tiny"))
    graph = build_neuron_graph(model, PROMPT, config=FeatureGraphConfig(max_feature_nodes=20, max_logits=1))
    pruned = pruned_graph(graph, prune(graph, PruneConfig(node_threshold=0.6, edge_threshold=0.9)))
    return model, graph, pruned


def test_unpruned_graph_is_exact_in_the_frozen_model(traced):
    model, graph, pruned = traced
    validation = validate_feature_graph(model, graph, pruned, CONFIG)
    for scale in CONFIG.scales:
        table = validation.reports[f"unpruned graph vs frozen, scale {scale:g}"].table
        assert len(table) == 12
        assert torch.allclose(torch.tensor(table.predicted), torch.tensor(table.measured), rtol=1e-4, atol=1e-9), table
        assert table.measured.abs().max() > 1e-4  # not vacuous
    headline = validation.main.table  # the pruned graph: what pruning lost is its remainder
    assert torch.allclose(torch.tensor(headline.predicted + headline.pruning_loss), torch.tensor(headline.unpruned_graph))
    assert headline.pruning_loss.abs().max() > 0  # this pruning did drop something


def test_a_corrupted_edge_breaks_the_agreement(traced):
    """Teeth: one edge into the target, with its sign flipped, shows up as a disagreement."""
    model, graph, pruned = traced
    corrupt = type(graph)(**{**graph.__dict__, "adjacency": graph.adjacency.clone()})
    target = next(i for i, n in enumerate(graph.nodes) if n.is_target)
    features = torch.tensor([n.kind == "feature" for n in graph.nodes])
    source = int(torch.where(features, graph.adjacency[target].abs(), -1.0).argmax())  # a feature's edge
    corrupt.adjacency[target, source] *= -1
    table = validate_feature_graph(model, corrupt, pruned, CONFIG).reports["unpruned graph vs frozen, scale 0"].table
    assert not torch.allclose(torch.tensor(table.predicted), torch.tensor(table.measured), rtol=1e-4, atol=1e-9)


def test_the_last_stage_is_the_real_model(traced):
    """Measured independently: scale each neuron in the real model by a plain hook."""
    model, graph, pruned = traced
    validation = validate_feature_graph(model, graph, pruned, CONFIG)
    table = validation.reports["frozen vs real, scale 0.5"].table
    target = next(n for n in graph.nodes if n.is_target)
    tokens = tokenize(model, PROMPT)
    with torch.no_grad():
        clean = demeaned_logit(model(tokens)[0, -1].double(), target.feature)
        expected = []
        for node_id in table.node_id:
            node = graph.nodes[graph.index[node_id]]

            def scale_one(act, hook, node=node):
                act = act.clone()
                act[:, node.pos, node.feature] *= 0.5
                return act

            with hooks(model, [(Site(Component.MLP_POST, node.layer), scale_one)]):
                expected.append(float(demeaned_logit(model(tokens)[0, -1].double(), target.feature) - clean))
    assert torch.allclose(torch.tensor(table.measured.tolist()), torch.tensor(expected), rtol=1e-5, atol=1e-8)
    places = [(graph.nodes[graph.index[i]].layer, graph.nodes[graph.index[i]].pos) for i in table.node_id]
    assert list(zip(table.layer, table.pos, strict=True)) == places  # each row says where it sits
    names = set(validation.reports)
    assert {f"graph vs {name}, scale 0" for name, _ in STAGES[1:-1]} <= names
    assert "activation x gradient vs real, scale 1.5" in names


def test_frozen_changes_derived_by_linearity_equal_measured_ones(traced, caplog):
    """The frozen model's other scales, derived for all but 3 nodes, equal measuring all 12 at
    every scale; a tolerance below rounding makes it measure every node (and say so)."""
    model, graph, pruned = traced
    every = validate_feature_graph(model, graph, pruned, ValidationConfig(**{**CONFIG.__dict__, "linearity_check": 12}))
    derived = validate_feature_graph(model, graph, pruned, ValidationConfig(**{**CONFIG.__dict__, "linearity_check": 3}))
    for scale in CONFIG.scales[1:]:
        a = every.reports[f"graph vs frozen, scale {scale:g}"].table.measured
        b = derived.reports[f"graph vs frozen, scale {scale:g}"].table.measured
        assert torch.allclose(torch.tensor(a.tolist()), torch.tensor(b.tolist()), rtol=1e-4, atol=1e-9), (a - b).abs().max()
        assert a.abs().max() > 1e-4
    check = derived.to_json()["frozen_linearity"]
    assert check["checked_nodes"] == 3 and 0 <= check["max_relative_deviation"] < 1e-6
    strict = ValidationConfig(**{**CONFIG.__dict__, "linearity_check": 3, "linearity_tolerance": 1e-300})
    with caplog.at_level("WARNING", logger="scrying.attribution.validation"):
        fallback = validate_feature_graph(model, graph, pruned, strict)
    assert fallback.frozen_linearity["max_relative_deviation"] > 1e-300  # float32 rounding: never exactly 0 here
    assert "measuring every scale" in caplog.text
    table = fallback.reports["graph vs frozen, scale 1.5"].table.measured
    assert torch.allclose(torch.tensor(table.tolist()), torch.tensor(every.reports["graph vs frozen, scale 1.5"].table.measured.tolist()))
