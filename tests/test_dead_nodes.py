"""Dead-node pruning, the one fixed point of both pruning paths, against brute force.

The reference enumerates every subset of the initially alive nodes and keeps the union of those
in which each node has the edges it needs from and to the subset (the largest such set): no
iteration, no shared code with :func:`scrying.circuits.dead_nodes.prune_dead_nodes`. Feature-graph
pruning (:func:`scrying.attribution.influence.prune`) and component-circuit selection
(:func:`scrying.circuits.selection.select_edges`) must both end exactly there, on small random
graphs.
"""

from __future__ import annotations

import itertools

import torch

from scrying.attribution.graph import Graph, Node
from scrying.attribution.influence import (
    PruneConfig,
    edge_pruning,
    node_influence,
    node_pruning,
    prune,
)
from scrying.circuits.config import SelectionConfig
from scrying.circuits.dead_nodes import prune_dead_nodes
from scrying.circuits.nodes import ComponentNodes
from scrying.circuits.selection import select_edges


def brute_force(edges: torch.Tensor, alive: list[bool], needs_input: list[bool], needs_output: list[bool]) -> set[int]:
    """The largest subset of the alive nodes closed under "has what it needs" (``edges[t, s]``):
    the union of every subset (a bit mask) in which each node needing an input has an edge from
    the subset and each node needing an output an edge to it."""
    n = len(alive)
    into = [sum(1 << s for s in range(n) if edges[i, s]) for i in range(n)]  # i's sources
    out_of = [sum(1 << t for t in range(n) if edges[t, i]) for i in range(n)]  # i's targets
    candidates = [i for i in range(n) if alive[i]]
    best = 0
    for r in range(len(candidates) + 1):
        for subset in itertools.combinations(candidates, r):
            mask = sum(1 << i for i in subset)
            if all((not needs_input[i] or into[i] & mask) and (not needs_output[i] or out_of[i] & mask) for i in subset):
                best |= mask
    return {i for i in range(n) if best >> i & 1}


def kept_between(edges: torch.Tensor, nodes: set[int]) -> set[tuple[int, int]]:
    return {(t, s) for t, s in edges.nonzero().tolist() if t in nodes and s in nodes}


def test_fixed_point_is_the_brute_force_one_on_random_graphs():
    g = torch.Generator().manual_seed(0)
    changed = 0
    for _ in range(300):
        n = int(torch.randint(1, 9, (1,), generator=g))
        edges = torch.rand(n, n, generator=g) < 0.3  # any graph: cycles and self-loops too
        alive = torch.rand(n, generator=g) < 0.85
        needs_input, needs_output = torch.rand(n, generator=g) < 0.7, torch.rand(n, generator=g) < 0.7
        live = prune_dead_nodes(edges, alive, needs_input=needs_input, needs_output=needs_output)
        expected = brute_force(edges, alive.tolist(), needs_input.tolist(), needs_output.tolist())
        assert set(live.alive.nonzero().flatten().tolist()) == expected
        assert set(map(tuple, live.edges.nonzero().tolist())) == kept_between(edges, expected)
        changed += len(expected) < int(alive.sum())
    assert changed > 50  # not vacuous: nodes die in many of the graphs


def random_feature_graph(g: torch.Generator) -> Graph:
    """A random acyclic feature graph: embeddings and error nodes (inputs), features, logits."""
    kinds = ["embedding"] * 2 + ["error"] * int(torch.randint(1, 3, (1,), generator=g))
    kinds += ["feature"] * int(torch.randint(2, 5, (1,), generator=g)) + ["logit"] * int(torch.randint(1, 3, (1,), generator=g))
    n = len(kinds)
    weights = torch.randn(n, n, generator=g, dtype=torch.float64) * (torch.rand(n, n, generator=g) < 0.45)
    adjacency = torch.tril(weights, diagonal=-1)  # sources before targets: acyclic
    inputs = [i for i, k in enumerate(kinds) if k in ("embedding", "error")]
    adjacency[inputs] = 0.0  # no edge into an input node
    logits = [i for i, k in enumerate(kinds) if k == "logit"]
    adjacency[:, logits] = 0.0  # no edge out of a logit
    probs = torch.rand(len(logits), generator=g, dtype=torch.float64)
    nodes = [Node(f"n{i}", kind, 0, 0, i) for i, kind in enumerate(kinds)]
    for j, i in enumerate(logits):
        nodes[i].token_prob = float(probs[j] / probs.sum())
    return Graph("p", ["p"], "random", "neurons", nodes, adjacency)


def test_feature_graph_pruning_ends_at_the_brute_force_fixed_point():
    """:func:`prune`'s masks are the brute-force fixed point of its own node and edge pruning
    (phases 3-4): features need an input and an output, error nodes an output."""
    g = torch.Generator().manual_seed(1)
    died = 0
    for trial in range(100):
        graph = random_feature_graph(g)
        config = PruneConfig(node_threshold=float(torch.rand(1, generator=g)) * 0.5 + 0.5, edge_threshold=0.9,
                             max_feature_nodes=None if trial % 3 else 2)
        kinds = [n.kind for n in graph.nodes]
        node_mask = node_pruning(kinds, node_influence(graph), config)
        edge_mask = edge_pruning(graph, node_mask, config)
        expected = brute_force(
            edge_mask, node_mask.tolist(), [k == "feature" for k in kinds], [k in ("feature", "error") for k in kinds]
        )
        result = prune(graph, config)
        assert set(result.node_mask.nonzero().flatten().tolist()) == expected, trial
        assert set(map(tuple, result.edge_mask.nonzero().tolist())) == kept_between(edge_mask, expected), trial
        died += len(expected) < int(node_mask.sum())
    assert died > 10, died  # not vacuous


def test_circuit_selection_ends_at_the_brute_force_fixed_point():
    """:func:`select_edges` at node level (a split head's q, k and v receivers are one node):
    ``embed`` needs no input, ``logits`` nothing, every head and MLP both; an edge stays when its
    source and its receiver's node are in the brute-force set."""
    g = torch.Generator().manual_seed(2)
    died = 0
    for trial in range(120):
        nodes = ComponentNodes(n_layers=int(torch.randint(1, 3, (1,), generator=g)), n_heads=2, split_qkv=trial % 2 == 1)
        scores = torch.randn(len(nodes.sources), len(nodes.receivers), generator=g) * nodes.edge_mask
        top = int(torch.randint(1, len(nodes.edges) // 2 + 2, (1,), generator=g))
        kept = select_edges(nodes, scores, SelectionConfig(top_edges=top))
        # the selection alone (top |score|, stable in edge order), written out here
        ranked = sorted(nodes.edges, key=lambda e: -abs(float(scores[e])))[:top]
        index = {node: i for i, node in enumerate(nodes.nodes)}
        owner = [index[r.node] for r in nodes.receiver_nodes]
        between = torch.zeros(len(nodes.nodes), len(nodes.nodes), dtype=torch.bool)
        for u, v in ranked:
            between[owner[v], u] = True
        kinds = [n.kind for n in nodes.nodes]
        expected = brute_force(
            between, [True] * len(kinds), [k in ("head", "mlp") for k in kinds], [k != "logits" for k in kinds]
        )
        want = {(u, v) for u, v in ranked if u in expected and owner[v] in expected}
        assert {tuple(e) for e in kept.nonzero().tolist()} == want, trial
        died += len(want) < len(ranked)
    assert died > 30, died  # not vacuous
