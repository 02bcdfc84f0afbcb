"""What a graph itself predicts for an intervention: signed path sums through its edges.

An edge ``A[t, s]`` of a feature graph is ``a_s x d t / d a_s`` (direct effect, activation x
gradient) in the local replacement model, which is linear in the features. Dividing by the
source's activation gives the direct derivative ``M[t, s] = A[t, s] / a_s``; the total
derivative along every path of the (acyclic) graph is ``T = M + M^2 + ... = (I - M)^-1 - I``.
Scaling feature ``s`` by ``scale`` changes its activation by ``(scale - 1) a_s``, so the graph
predicts the target's change

    delta_t(s, scale) = (scale - 1) x a_s x T[t, s]        (= (scale - 1) x sum over paths of the
                                                             products of normalised edge weights)

Only feature nodes pass effects on: error and embedding nodes have no incoming edges. On the
unpruned graph this is exact in the frozen model with the graph's unselected features clamped
(they are its error nodes); on a pruned graph the difference to the unpruned one is what pruning
lost.
"""

from __future__ import annotations

import torch

from scrying.attribution.graph import Graph
from scrying.axes import Float, Tensor
from scrying.errors import InvalidInputError


def total_derivatives(graph: Graph, target: str) -> dict[str, float]:
    """``T[target, s]`` for every node ``s`` of ``graph`` (0 where no path leads to the target)."""
    index = graph.index
    if target not in index:
        raise InvalidInputError(f"node {target!r} is not in the graph")
    n = len(graph.nodes)
    activation = torch.tensor(
        [n_.activation if n_.kind == "feature" and n_.activation else 0.0 for n_ in graph.nodes],
        dtype=torch.float64,
    )
    adjacency = graph.adjacency.double()
    derivative = torch.where(activation != 0, adjacency / torch.where(activation != 0, activation, 1.0), 0.0)
    # row vector x = e_t (I - M)^-1, i.e. (I - M)^T x^T = e_t; T[t, s] = x[s] for s != t
    e_t = torch.zeros(n, dtype=torch.float64)
    e_t[index[target]] = 1.0
    x = torch.linalg.solve((torch.eye(n, dtype=torch.float64) - derivative).T, e_t)
    x[index[target]] -= 1.0
    return {node.node_id: float(x[i]) for i, node in enumerate(graph.nodes)}


def predicted_changes(
    graph: Graph, sources: list[str], target: str, scales: tuple[float, ...]
) -> Float[Tensor, "source scale"]:
    """The graph's predicted change of ``target`` when each of ``sources`` (feature node ids) is
    scaled by each of ``scales``; a source the graph does not hold (pruned away) predicts 0."""
    total = total_derivatives(graph, target)
    index = graph.index
    out = torch.zeros(len(sources), len(scales), dtype=torch.float64)
    for i, source in enumerate(sources):
        if source not in index:
            continue
        node = graph.nodes[index[source]]
        if node.kind != "feature":
            raise InvalidInputError(f"node {source!r} is a {node.kind} node; only features can be scaled")
        for j, scale in enumerate(scales):
            out[i, j] = (scale - 1.0) * (node.activation or 0.0) * total[source]
    return out
