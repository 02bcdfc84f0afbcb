"""Graph nodes: what a node is, by typed fields, and the one place its id and label are written.

A node *is* its typed fields: ``kind``, ``layer``, ``pos``, ``feature`` (the feature or neuron
index, a head's index, an embedding's or a logit's token id) and, for a logit, its ``token``.
Its ``node_id`` (the graph's key for it) and its ``label`` are written from those fields by the
constructors below, and nothing reads them back: code that needs a node's layer, head or token
reads the field. A node at a position has circuit-tracer's id
(:func:`scrying.attribution.graph_json.circuit_tracer_id`); a component graph's nodes, summed over
positions, have scrying's short ids (``A{layer}.{head}``, ``M{layer}``, ``E``,
``{n_layers + 1}_{token_id}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from scrying.attribution.graph_json import circuit_tracer_id

NodeKind = Literal["embedding", "feature", "error", "component", "logit"]


@dataclass
class Node:
    """A node. ``layer`` is -1 for embeddings and ``n_layers`` for logits; ``pos`` -1 means
    summed over positions; ``feature`` is the feature or neuron index (feature nodes), the head
    index (attention components; -1 for an MLP), the token id (embeddings and logits; -1 for
    embeddings summed over positions), -1 for error nodes; ``column`` is a layout column for
    nodes summed over positions (head index, ``n_heads`` for an MLP) and ``None`` for nodes at a
    position; ``token`` is a logit's token (``None`` for every other node)."""

    node_id: str
    kind: NodeKind
    layer: int
    pos: int  # -1: summed over positions
    feature: int = -1
    label: str = ""
    activation: float | None = None
    influence: float | None = None
    token_prob: float | None = None
    is_target: bool = False
    details: str = ""  # extra hover text (e.g. tokens a neuron's output promotes)
    column: int | None = None  # layout column of a node summed over positions
    token: str | None = None  # a logit's token


@dataclass(frozen=True)
class LogitTarget:
    """A token the graph explains: its id, its string and its probability."""

    token_id: int
    token: str
    probability: float


def logit_label(target: LogitTarget) -> str:
    return f"Output {target.token!r} (p={target.probability:.3f})"


# ---------------------------------------------------------------------- nodes at a position
def feature_node(layer: int, pos: int, index: int, label: str, activation: float) -> Node:
    return Node(circuit_tracer_id("feature", layer, index, pos), "feature", layer, pos, index, label, activation)


def error_node(layer: int, pos: int, basis_name: str) -> Node:
    """What the basis's features leave unexplained at ``layer``, ``pos``."""
    return Node(circuit_tracer_id("error", layer, -1, pos), "error", layer, pos, -1, f"L{layer} other {basis_name} @{pos}")


def embedding_node(pos: int, token_id: int, token: str) -> Node:
    return Node(circuit_tracer_id("embedding", -1, token_id, pos), "embedding", -1, pos, token_id, f"{token!r} @{pos}")


def logit_node(n_layers: int, pos: int, target: LogitTarget, *, is_target: bool) -> Node:
    return Node(
        circuit_tracer_id("logit", n_layers, target.token_id, pos), "logit", n_layers, pos, target.token_id,
        logit_label(target), token_prob=target.probability, is_target=is_target, token=target.token,
    )


# ---------------------------------------------------------------------- nodes summed over positions
def head_node(layer: int, head: int) -> Node:
    """An attention head, laid out in column ``head``."""
    return Node(f"A{layer}.{head}", "component", layer, -1, head, f"attention L{layer} H{head}", column=head)


def mlp_node(layer: int, n_heads: int) -> Node:
    """An MLP, laid out right of its layer's heads."""
    return Node(f"M{layer}", "component", layer, -1, -1, f"MLP L{layer}", column=n_heads)


def summed_embedding_node(n_heads: int) -> Node:
    """The token embeddings at every position, laid out in the middle."""
    return Node("E", "embedding", -1, -1, -1, "token embeddings (all positions)", column=n_heads // 2)


def summed_logit_node(n_layers: int, target: LogitTarget, n_heads: int) -> Node:
    """The target logit (read at the last position), laid out in the middle."""
    return Node(
        f"{n_layers + 1}_{target.token_id}", "logit", n_layers, -1, target.token_id, logit_label(target),
        token_prob=target.probability, is_target=True, column=n_heads // 2, token=target.token,
    )
