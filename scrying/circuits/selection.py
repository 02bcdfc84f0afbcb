"""Which edges of a scored component graph form the circuit.

The rule of Hanna et al. 2024, "Have Faith in Faithfulness" (sec. 3), as implemented in their
repository hannamw/EAP-IG (``src/eap/graph.py``: ``Graph.apply_topn``, ``Graph.apply_threshold``
and ``Graph.prune``, which replaced the older ``prune_dead_nodes``):

1. **Select** the ``top_edges`` edges by ``|score|`` (ties in the order of
   :attr:`~scrying.circuits.nodes.ComponentNodes.edges`), or every edge with
   ``|score| >= min_abs_score`` (:class:`~scrying.circuits.config.SelectionConfig`). Only edges
   that exist (:attr:`~scrying.circuits.nodes.ComponentNodes.edge_mask`) are candidates.
2. **Prune dead nodes** (:func:`scrying.circuits.dead_nodes.prune_dead_nodes`, the fixed point
   feature-graph pruning ends with too): a node is alive when it has a kept incoming edge
   (``embed`` needs none) and a kept outgoing edge (``logits`` needs none); an edge stays kept
   only when its source and its receiver's node are alive. With q/k/v-split receivers the head
   ``a{l}.h{h}`` is one node: it has an incoming edge when any of ``<q>``, ``<k>``, ``<v>`` has
   one, and when it dies, the edges into all three go (EAP-IG's ``forward_to_backward`` map).

The fixed point keeps exactly the selected edges that lie on a path ``embed -> ... -> logits``
of selected edges; its size is at most ``top_edges``.
"""

from __future__ import annotations

import pandas as pd
import torch
from jaxtyping import Bool

from scrying.axes import Float, Tensor
from scrying.circuits.config import SelectionConfig
from scrying.circuits.dead_nodes import prune_dead_nodes
from scrying.circuits.nodes import EMBED, LOGITS, ComponentNodes
from scrying.errors import InvalidInputError


def select_edges(
    nodes: ComponentNodes, scores: Float[Tensor, "src dst"], config: SelectionConfig
) -> Bool[Tensor, "src dst"]:
    """The kept edges: ``config``'s top-edges or minimum-score selection, then dead-node pruning.

    The two strongest edges lead to ``m0``, which writes nowhere selected, so they are pruned:

    >>> nodes = ComponentNodes(n_layers=1, n_heads=1)
    >>> scores = torch.zeros(3, 3)
    >>> scores[0, 0], scores[1, 1], scores[0, 2] = 3.0, -2.0, 1.0  # embed->a0.h0, a0.h0->m0, embed->logits
    >>> kept = select_edges(nodes, scores, SelectionConfig(top_edges=3))
    >>> [(nodes.sources[u], nodes.receivers[v]) for u, v in kept.nonzero().tolist()]
    [('embed', 'logits')]
    """
    want = (len(nodes.sources), len(nodes.receivers))
    if tuple(scores.shape) != want:
        kind = "q/k/v-split" if nodes.split_qkv else "unsplit"
        raise InvalidInputError(
            f"edge scores must be [{want[0]}, {want[1]}] for the {kind} component nodes, "
            f"got {tuple(scores.shape)}"
        )
    exists = nodes.edge_mask.to(scores.device)
    if bool(torch.isnan(scores[exists]).any()):
        raise InvalidInputError("edge scores contain NaN")
    return _prune_dead_nodes(nodes, _select(scores, exists, config))


def _select(scores: Tensor, exists: Tensor, config: SelectionConfig) -> Tensor:
    magnitude = scores.abs()
    if config.min_abs_score is not None:
        return exists & (magnitude >= config.min_abs_score)
    top = config.top_edges
    assert top is not None  # SelectionConfig guarantees exactly one
    n_edges = int(exists.sum())
    if top > n_edges:
        raise InvalidInputError(
            f"SelectionConfig.top_edges is {top}, but the graph has only {n_edges} edges"
        )
    # Receiver-major order is the order of ComponentNodes.edges; a stable sort keeps it for ties.
    ranked = magnitude.T.masked_fill(~exists.T, -torch.inf).flatten()
    order = torch.argsort(ranked, descending=True, stable=True)[:top]
    kept_t = torch.zeros_like(ranked, dtype=torch.bool)
    kept_t[order] = True
    return kept_t.reshape(exists.T.shape).T.contiguous()


def _receiver_owner(nodes: ComponentNodes, device: torch.device) -> Bool[Tensor, "node dst"]:
    """``owner[n, v]``: receiver v is an input of node n (nodes: the sources, then logits)."""
    index = {node: i for i, node in enumerate(nodes.nodes)}
    owner = torch.zeros(len(nodes.nodes), len(nodes.receivers), dtype=torch.bool, device=device)
    for v, receiver in enumerate(nodes.receiver_nodes):
        owner[index[receiver.node], v] = True
    return owner


def _prune_dead_nodes(nodes: ComponentNodes, kept: Tensor) -> Tensor:
    """Dead-node pruning at node level (a head's q, k and v receivers are one node), mapped
    back to the receivers: an edge stays when its source and its receiver's node live."""
    owner = _receiver_owner(nodes, kept.device)
    n_src = len(nodes.sources)
    between = torch.zeros(len(nodes.nodes), len(nodes.nodes), dtype=torch.bool, device=kept.device)
    between[:, :n_src] = (owner.float() @ kept.float().T) > 0  # [node, source]: any receiver's edge
    is_embed = torch.tensor([n == EMBED for n in nodes.nodes], device=kept.device)
    is_logits = torch.tensor([n == LOGITS for n in nodes.nodes], device=kept.device)
    alive = prune_dead_nodes(
        between, torch.ones_like(is_embed), needs_input=~(is_embed | is_logits), needs_output=~is_logits
    ).alive
    receiver_alive = (owner & alive[:, None]).any(0)
    return kept & alive[:n_src, None] & receiver_alive[None, :]


def score_matrix(nodes: ComponentNodes, edges: pd.DataFrame) -> Float[Tensor, "src dst"]:
    """Scores laid out as ``[source, receiver]`` from a table with columns ``source``,
    ``target`` and ``score`` (e.g. :attr:`ComponentCircuit.edges
    <scrying.circuits.circuit.ComponentCircuit.edges>`); 0 for edges not in the table."""
    index = torch.tensor(
        nodes.edge_index(edges["source"], edges["target"]), dtype=torch.long
    ).reshape(-1, 2)
    scores = torch.zeros(len(nodes.sources), len(nodes.receivers))
    scores[index[:, 0], index[:, 1]] = torch.tensor(edges["score"].to_numpy(), dtype=scores.dtype)
    return scores
