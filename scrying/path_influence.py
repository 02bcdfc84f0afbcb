"""Influence through a weighted graph, the one rule every consumer uses (circuit-tracer's
``graph.py``; Ameisen et al. 2025, "Pruning"): normalise ``|A|`` row-wise so each node's incoming
edges sum to one, then sum ``w (A + A^2 + ...)`` until it vanishes (the graph is acyclic).
Shared by the attribution graphs (:mod:`scrying.attribution.influence`) and the viewer's reading
of a stored graph (:mod:`scrying.viewer.report`), which must agree."""

from __future__ import annotations

from scrying.axes import Float, Tensor


def normalize_rows(matrix: Float[Tensor, "node node"]) -> Float[Tensor, "node node"]:
    absolute = matrix.abs().double()
    return absolute / absolute.sum(-1, keepdim=True).clamp(min=1e-10)


def influence(normalized: Float[Tensor, "node node"], weights: Float[Tensor, " node"], max_iter: int = 10_000) -> Float[Tensor, " node"]:
    """``weights @ (A + A^2 + ...)`` for an acyclic normalised adjacency ``A``."""
    current = weights.double() @ normalized
    total = current.clone()
    for _ in range(max_iter):
        if not current.any():
            return total
        current = current @ normalized
        total += current
    raise RuntimeError(f"influence did not converge in {max_iter} steps: is the graph cyclic?")
