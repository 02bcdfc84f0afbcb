"""Circuit selection (top-n / threshold, then dead-node pruning) and the faithfulness curve.

Hand-made graphs with hand-worked answers; a networkx reference (reachability from ``embed``
and to ``logits`` on the selected edges, iterated) on random score matrices; on the induction
toy, the curve's end points and ``recovered`` against patching computed here.
"""

from __future__ import annotations

import networkx as nx
import pandas as pd
import pytest
import torch

from scrying.circuits.circuit import find_circuit
from scrying.circuits.config import EAPConfig, FaithfulnessConfig, SelectionConfig
from scrying.circuits.faithfulness import faithfulness_curve, recovered
from scrying.circuits.nodes import ComponentNodes
from scrying.circuits.patching import patch_edges
from scrying.circuits.selection import score_matrix, select_edges
from scrying.errors import ConfigError, InvalidInputError
from tests.test_circuits import induction_pair


def scored(nodes: ComponentNodes, named: dict[str, float]) -> torch.Tensor:
    """A score matrix from ``{"source->receiver": score}``."""
    scores = torch.zeros(len(nodes.sources), len(nodes.receivers))
    for name, value in named.items():
        ((u, v),) = nodes.edge_index([name.split("->")[0]], [name.split("->")[1]])
        scores[u, v] = value
    return scores


def kept_names(nodes: ComponentNodes, kept: torch.Tensor) -> set[str]:
    return {f"{nodes.sources[u]}->{nodes.receivers[v]}" for u, v in torch.nonzero(kept).tolist()}


# A circuit embed -> a0.h0 -> a1.h0 -> logits (A, B, C) with two dead branches of stronger edges:
# a0.h1 -> a1.h1 leads nowhere (D, E: pruned backward, a1.h1 first, then a0.h1), and m0 -> m1
# -> logits starts nowhere (F, G: pruned forward). H (weak) revives a1.h1 -> m1 -> logits.
UNSPLIT = {
    "embed->a0.h1": 10.0,  # D
    "a0.h1->a1.h1": -9.0,  # E (sign does not matter)
    "m0->m1": 8.0,  # F
    "m1->logits": 7.0,  # G
    "embed->a0.h0": 5.0,  # A
    "a0.h0->a1.h0": -4.0,  # B
    "a1.h0->logits": 3.0,  # C
    "a1.h1->m1": 0.5,  # H
    "embed->m0": 0.4,
}
CHAIN = {"embed->a0.h0", "a0.h0->a1.h0", "a1.h0->logits"}
REVIVED = CHAIN | {"embed->a0.h1", "a0.h1->a1.h1", "a1.h1->m1", "m1->logits"}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (SelectionConfig(top_edges=7), CHAIN),  # A..G selected: D, E, F, G are dead
        (SelectionConfig(top_edges=8), REVIVED),  # H selected too: only F (out of m0) is dead
        (SelectionConfig(top_edges=9), REVIVED | {"embed->m0", "m0->m1"}),
        (SelectionConfig(top_edges=2), set()),  # D, E: neither reaches logits
        (SelectionConfig(min_abs_score=3.0), CHAIN),
        (SelectionConfig(min_abs_score=0.5), REVIVED),  # |score| >= min_abs_score, as EAP-IG
        (SelectionConfig(min_abs_score=0.0), None),  # every edge of the graph
    ],
)
def test_hand_worked_unsplit(config, expected):
    nodes = ComponentNodes(n_layers=2, n_heads=2)
    kept = select_edges(nodes, scored(nodes, UNSPLIT), config)
    if expected is None:
        assert torch.equal(kept, nodes.edge_mask)
    else:
        assert kept_names(nodes, kept) == expected


def test_hand_worked_split_head_lives_through_any_of_q_k_v():
    nodes = ComponentNodes(n_layers=2, n_heads=2, split_qkv=True)
    scores = scored(
        nodes,
        {
            "embed->a0.h1<q>": 9.0,  # a0.h1 has no outgoing edge: all three inputs go
            "embed->a0.h1<k>": 8.0,
            "embed->a0.h1<v>": 7.0,
            "embed->a0.h0<v>": 6.0,  # a0.h0 is alive through its value input alone
            "a0.h0->a1.h0<k>": 5.0,  # a1.h0 is alive through its key input alone
            "a1.h0->logits": 4.0,
            "embed->a1.h0<q>": 3.0,  # into a live head: kept
            "a0.h1->a1.h1<q>": 0.1,  # not selected
        },
    )
    kept = select_edges(nodes, scores, SelectionConfig(top_edges=7))
    assert kept_names(nodes, kept) == {
        "embed->a0.h0<v>",
        "a0.h0->a1.h0<k>",
        "a1.h0->logits",
        "embed->a1.h0<q>",
    }


def reference(
    nodes: ComponentNodes, scores: torch.Tensor, config: SelectionConfig
) -> set[tuple[int, int]]:
    """Select by sorting the edge list; then, until stable, keep the edges whose source is
    reachable from embed and whose receiver's node reaches logits (networkx, node level)."""
    size = {e: abs(float(scores[e])) for e in nodes.edges}
    if config.top_edges is not None:
        kept = set(
            sorted(nodes.edges, key=lambda e: -size[e])[: config.top_edges]
        )  # stable: ties in edge order
    else:
        kept = {e for e in nodes.edges if size[e] >= config.min_abs_score}

    def node(v: int) -> str:
        return nodes.receivers[v].split("<")[0]

    while True:
        graph = nx.DiGraph()
        graph.add_nodes_from(nodes.names)
        graph.add_edges_from((nodes.sources[u], node(v)) for u, v in kept)
        forward = nx.descendants(graph, "embed") | {"embed"}
        backward = nx.ancestors(graph, "logits") | {"logits"}
        pruned = {(u, v) for u, v in kept if nodes.sources[u] in forward and node(v) in backward}
        if pruned == kept:
            return kept
        kept = pruned


def test_equals_networkx_reference_on_random_scores():
    g = torch.Generator().manual_seed(0)
    sizes = []
    for trial in range(200):
        nodes = ComponentNodes(
            n_layers=int(torch.randint(1, 4, (1,), generator=g)),
            n_heads=int(torch.randint(1, 4, (1,), generator=g)),
            split_qkv=trial % 2 == 1,
        )
        # Heavy-tailed scores rounded to one decimal: ties and exact zeros occur.
        raw = torch.randn(len(nodes.sources), len(nodes.receivers), generator=g) ** 3
        scores = (raw * 10).round() / 10 * nodes.edge_mask
        n_edges = len(nodes.edges)
        if trial % 4 < 2:
            config = SelectionConfig(top_edges=int(torch.randint(0, n_edges + 1, (1,), generator=g)))
        else:
            config = SelectionConfig(
                min_abs_score=float(
                    scores.abs().flatten()[torch.randint(0, scores.numel(), (1,), generator=g)]
                )
            )
        kept = select_edges(nodes, scores, config)
        expected = reference(nodes, scores, config)
        assert {tuple(e) for e in torch.nonzero(kept).tolist()} == expected, (trial, nodes, config)
        selected = (
            int((scores.abs() >= config.min_abs_score).logical_and(nodes.edge_mask).sum())
            if config.top_edges is None
            else config.top_edges
        )
        sizes.append((len(expected), selected))
    # Not vacuous: pruning removes some selected edges and keeps others in many cases.
    assert sum(0 < kept < selected for kept, selected in sizes) > 60, sizes


def test_bad_configs_and_inputs_name_the_field():
    for kwargs in ({}, {"top_edges": 3, "min_abs_score": 0.1}):
        with pytest.raises(ConfigError, match="top_edges and min_abs_score"):
            SelectionConfig(**kwargs)
    with pytest.raises(ConfigError, match="top_edges"):
        SelectionConfig(top_edges=-1)
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="min_abs_score"):
            SelectionConfig(min_abs_score=bad)
    nodes = ComponentNodes(n_layers=1, n_heads=1)
    scores = torch.ones(len(nodes.sources), len(nodes.receivers))
    with pytest.raises(InvalidInputError, match="top_edges"):
        select_edges(nodes, scores, SelectionConfig(top_edges=len(nodes.edges) + 1))
    with pytest.raises(InvalidInputError, match="split"):
        select_edges(
            ComponentNodes(n_layers=1, n_heads=1, split_qkv=True), scores, SelectionConfig(top_edges=1)
        )


def test_score_matrix_round_trips_a_circuit_table():
    nodes = ComponentNodes(n_layers=2, n_heads=2, split_qkv=True)
    scores = (
        torch.randn(
            len(nodes.sources), len(nodes.receivers), generator=torch.Generator().manual_seed(1)
        )
        * nodes.edge_mask
    )
    table = pd.DataFrame(
        [(nodes.sources[u], nodes.receivers[v], float(scores[u, v])) for u, v in nodes.edges],
        columns=["source", "target", "score"],
    ).sample(frac=1.0, random_state=0)
    assert torch.equal(score_matrix(nodes, table), scores)


@pytest.fixture(scope="module", params=[False, True], ids=["unsplit", "split"])
def small_circuit(request, toy_model):
    clean, corrupt, metric = induction_pair("key", batch=6)
    config = EAPConfig(method="eap-ig", ig_steps=5, split_qkv=request.param)
    return clean, metric, find_circuit(toy_model, clean, corrupt, metric, config)


def test_faithfulness_curve_runs_from_corrupt_to_clean_with_pruned_counts(toy_model, small_circuit):
    clean, metric, circuit = small_circuit
    nodes = ComponentNodes.of(toy_model, split_qkv=circuit.config.split_qkv)
    table, fig = faithfulness_curve(
        toy_model, clean, circuit, metric, FaithfulnessConfig(n_points=8, ks=(2, 3))
    )
    assert table["edges"].iloc[0] == 0 and table["edges"].iloc[-1] == len(circuit.edges)
    assert table["recovered"].iloc[0] == pytest.approx(0.0, abs=1e-6)
    assert table["recovered"].iloc[-1] == pytest.approx(1.0, abs=1e-4)
    assert table["metric"].iloc[-1] == pytest.approx(circuit.clean_metric, abs=1e-4)
    assert (table["kept"] <= table["edges"]).all()
    assert table["kept"].iloc[-1] == len(circuit.edges)
    # Counts after pruning equal the networkx reference on the circuit's own scores.
    scores = torch.zeros(len(nodes.sources), len(nodes.receivers))
    for s, t, score in zip(
        circuit.edges["source"], circuit.edges["target"], circuit.edges["score"], strict=True
    ):
        scores[nodes.sources.index(s), nodes.receivers.index(t)] = score
    expected = [len(reference(nodes, scores, SelectionConfig(top_edges=k))) for k in table["edges"]]
    assert table["kept"].tolist() == expected
    assert (table["kept"] < table["edges"]).any()  # pruning did something on this curve
    assert list(fig.data[0].x) == table["kept"].tolist()


def test_recovered_matches_patching_against_the_runs_own_metrics(toy_model, small_circuit):
    """``recovered`` normalises by the all-corrupt patch; here by the recorded clean and corrupt
    runs (equal to it for the corrupt baseline) and one patch_edges call of our own."""
    clean, metric, circuit = small_circuit
    nodes = ComponentNodes.of(toy_model, split_qkv=circuit.config.split_qkv)
    scores = score_matrix(nodes, circuit.edges)
    kept = select_edges(nodes, scores, SelectionConfig(top_edges=len(nodes.edges) // 4))
    assert 0 < int(kept.sum()) < len(nodes.edges)
    m_circuit = float(
        patch_edges(toy_model, clean, circuit.pair, metric, (nodes.edge_mask & ~kept)[None], nodes)[
            0
        ]
    )
    expected = (m_circuit - circuit.corrupt_metric) / (
        circuit.clean_metric - circuit.corrupt_metric
    )
    assert recovered(toy_model, clean, circuit, metric, kept) == pytest.approx(expected, abs=1e-4)
    assert recovered(toy_model, clean, circuit, metric, nodes.edge_mask) == pytest.approx(
        1.0, abs=1e-4
    )
    assert recovered(
        toy_model, clean, circuit, metric, torch.zeros_like(nodes.edge_mask)
    ) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(InvalidInputError, match="kept edge mask"):
        recovered(
            toy_model,
            clean,
            circuit,
            metric,
            torch.zeros(len(nodes.sources), len(nodes.receivers) + 1, dtype=torch.bool),
        )
