"""The strongest path through a scored component graph.

Phases: (1) build a :class:`networkx.DiGraph` from the edges table, weight ``|score|``;
(2) dynamic programming over a topological order for the *widest* path from ``embed`` to
``logits``: the path whose weakest edge is strongest (maximise ``min |score|`` along the path,
which does not depend on the metric's scale); ties are broken by the larger product of
``|score|``.
"""

from __future__ import annotations

import math

import networkx as nx
import pandas as pd

from scrying.errors import InvalidInputError


def edges_graph(edges: pd.DataFrame) -> nx.DiGraph:
    """Directed graph with one edge per row of ``edges`` (columns source, target, score)."""
    graph = nx.DiGraph()
    for row in edges.itertuples(index=False):
        graph.add_edge(row.source, row.target, score=float(row.score), weight=abs(float(row.score)))
    return graph


def strongest_path(edges: pd.DataFrame, source: str = "embed", target: str = "logits") -> list[str]:
    """Node names of the widest path from ``source`` to ``target`` (see the module docstring)."""
    graph = edges_graph(edges[edges["score"] != 0])
    if source not in graph or target not in graph:
        raise InvalidInputError(f"no scored edges connect {source!r} to {target!r}")
    best: dict[str, tuple[float, float]] = {source: (math.inf, 0.0)}  # (bottleneck, log product)
    parent: dict[str, str] = {}
    for node in nx.topological_sort(graph):
        if node not in best:
            continue
        width, logp = best[node]
        for _, nxt, data in graph.out_edges(node, data=True):
            cand = (min(width, data["weight"]), logp + math.log(data["weight"]))
            if nxt not in best or cand > best[nxt]:
                best[nxt] = cand
                parent[nxt] = node
    if target not in best:
        raise InvalidInputError(f"no path from {source!r} to {target!r}")
    path = [target]
    while path[-1] != source:
        path.append(parent[path[-1]])
    return path[::-1]
