"""Dead-node pruning: the one fixed point both pruning paths end with.

A feature graph's pruning (:func:`scrying.attribution.influence.prune`, circuit-tracer's) and a
component circuit's selection (:func:`scrying.circuits.selection.select_edges`, Hanna et al.
2024's ``Graph.prune``) both finish the same way: until nothing changes, drop every edge at a
dead node, and every node left without a kept incoming edge (where it needs one) or a kept
outgoing edge (where it needs one). What each path passes in is which nodes need which: inputs
(embeddings, error nodes, ``embed``) need no incoming edge, outputs (logits) no outgoing one.

The result is the largest set of initially alive nodes in which every node has the edges it
needs from and to nodes of the set (the conditions only get easier as the set grows, so the
union of all such sets is one, and the iteration, which removes only nodes no such set holds,
stops there), with the kept edges between its nodes.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from scrying.axes import Bool, Tensor
from scrying.errors import InvalidInputError


class LiveGraph(NamedTuple):
    """The nodes alive at the fixed point and the kept edges between them."""

    edges: Bool[Tensor, "node node"]  # [target, source]
    alive: Bool[Tensor, " node"]


def prune_dead_nodes(
    edges: Bool[Tensor, "node node"],
    alive: Bool[Tensor, " node"],
    *,
    needs_input: Bool[Tensor, " node"],
    needs_output: Bool[Tensor, " node"],
) -> LiveGraph:
    """The fixed point of dead-node pruning (see the module docstring) of the kept ``edges``
    (``edges[target, source]``) among the ``alive`` nodes."""
    n = alive.shape[0]
    for name, mask in (("edges", edges), ("needs_input", needs_input), ("needs_output", needs_output)):
        if mask.dtype != torch.bool or tuple(mask.shape) != ((n, n) if name == "edges" else (n,)):
            raise InvalidInputError(f"prune_dead_nodes: {name} must be a bool tensor of shape "
                                    f"{(n, n) if name == 'edges' else (n,)}, got {mask.dtype} {tuple(mask.shape)}")
    while True:
        edges = edges & alive[:, None] & alive[None, :]
        still = alive & (~needs_output | edges.any(0)) & (~needs_input | edges.any(1))
        if torch.equal(still, alive):
            return LiveGraph(edges, alive)
        alive = still
