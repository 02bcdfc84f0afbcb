"""Influence, pruning and graph scores (scrying.attribution.influence) on a hand-made graph whose
figures are worked out by hand (exact fractions) and by a matrix inverse."""

from __future__ import annotations

import pytest
import torch

from scrying.attribution.graph import Graph, Node
from scrying.attribution.influence import (
    PruneConfig,
    graph_scores,
    labelled_scores,
    node_influence,
    normalize_rows,
    prune,
)

# Nodes: two token embeddings, one error node, two features, one logit (probability 1).
#   F1 <- E0 (2), E1 (-1)
#   F2 <- F1 (1), R (1), E1 (2)
#   L  <- F2 (3), F1 (-1)
NAMES = ["E0", "E1", "R", "F1", "F2", "L"]
KINDS = ["embedding", "embedding", "error", "feature", "feature", "logit"]
EDGES = {("F1", "E0"): 2.0, ("F1", "E1"): -1.0, ("F2", "F1"): 1.0, ("F2", "R"): 1.0, ("F2", "E1"): 2.0,
         ("L", "F2"): 3.0, ("L", "F1"): -1.0}
# By hand, with A the row-normalised |adjacency| and w = (0, ..., 0, 1):
#   w A   = F2 3/4, F1 1/4
#   w A^2 = F1 3/16, R 3/16, E1 3/8 + 1/12, E0 1/6
#   w A^3 = E0 1/8, E1 1/16
INFLUENCE = {"E0": 7 / 24, "E1": 25 / 48, "R": 3 / 16, "F1": 7 / 16, "F2": 3 / 4, "L": 0.0}
REPLACEMENT = (7 / 24 + 25 / 48) / (7 / 24 + 25 / 48 + 3 / 16)  # = 13/16
# completeness: only F2 takes input from an error node (1/4 of it); output influence = influence
# + logit weight, total 153/48; the error share removes 1/4 x 3/4 of it
COMPLETENESS = (153 / 48 - (1 / 4) * (3 / 4)) / (153 / 48)  # = 16/17


def graph(edges: dict[tuple[str, str], float] = EDGES) -> Graph:
    nodes = [
        Node(name, kind, 0, 0, i, token_prob=1.0 if kind == "logit" else None, is_target=kind == "logit")
        for i, (name, kind) in enumerate(zip(NAMES, KINDS, strict=True))
    ]
    adjacency = torch.zeros(len(NAMES), len(NAMES), dtype=torch.float64)
    for (target, source), weight in edges.items():
        adjacency[NAMES.index(target), NAMES.index(source)] = weight
    return Graph(prompt="p", prompt_tokens=["p"], model_name="hand", level="neurons", nodes=nodes, adjacency=adjacency)


def test_influence_equals_hand_computation_and_matrix_inverse():
    g = graph()
    got = node_influence(g)
    assert got.tolist() == pytest.approx([INFLUENCE[n] for n in NAMES], abs=1e-12)
    a = normalize_rows(g.adjacency)
    w = g.logit_weights()
    closed_form = w @ (torch.linalg.inv(torch.eye(len(NAMES), dtype=a.dtype) - a) - torch.eye(len(NAMES), dtype=a.dtype))
    assert torch.allclose(got, closed_form, atol=1e-12)


def test_scores_equal_hand_computation():
    replacement, completeness = graph_scores(graph())
    assert replacement == pytest.approx(REPLACEMENT, abs=1e-12) and replacement == pytest.approx(13 / 16)
    assert completeness == pytest.approx(COMPLETENESS, abs=1e-12) and completeness == pytest.approx(16 / 17)


def test_scores_see_one_changed_edge():
    """Teeth: moving weight from the error node to a token changes both scores as computed by hand."""
    edges = dict(EDGES)
    edges[("F2", "R")] = 0.0
    replacement, completeness = graph_scores(graph(edges))
    assert replacement == pytest.approx(1.0) and completeness == pytest.approx(1.0)


def test_node_pruning_keeps_the_influence_fraction():
    """Influence ranks F2 (.75), E1 (.52), F1 (.44), E0 (.29), R (.19): cumulative fractions of
    the total 2.1875 are .34, .58, .78, .91, 1. A threshold of 0.8 keeps up to E0 (R goes);
    0.5 keeps F2 and E1, and F1 then goes too (embeddings and logits always stay)."""
    kept = prune(graph(), PruneConfig(node_threshold=0.8, edge_threshold=1.0)).node_mask
    assert [n for n, k in zip(NAMES, kept.tolist(), strict=True) if k] == ["E0", "E1", "F1", "F2", "L"]
    kept = prune(graph(), PruneConfig(node_threshold=0.5, edge_threshold=1.0)).node_mask
    assert [n for n, k in zip(NAMES, kept.tolist(), strict=True) if k] == ["E0", "E1", "F2", "L"]


def test_both_score_definitions_are_labelled():
    """Unselected features as error (the hand-computed 13/16, 16/17) or excluded, as circuit-tracer
    does: an exact basis then has no error at all; a mixed one cannot be split (None)."""
    exact = graph()
    exact.metadata["exact_basis"] = True
    scores = labelled_scores(exact)
    assert scores["replacement_score_unselected_as_error"] == pytest.approx(13 / 16)
    assert scores["completeness_score_unselected_as_error"] == pytest.approx(16 / 17)
    assert scores["replacement_score_unselected_excluded"] == pytest.approx(1.0)
    assert scores["completeness_score_unselected_excluded"] == pytest.approx(1.0)
    assert labelled_scores(graph())["replacement_score_unselected_excluded"] is None
