"""Influence, pruning, and the replacement and completeness scores of a graph.

Phases (circuit-tracer ``graph.py``; Ameisen et al. 2025 §"Pruning" and Appendix "Graph scores"):

1. **Normalise** ``|A|`` row-wise so each node's incoming edges sum to one.
2. **Influence** of every node on the logits: ``w (A + A^2 + ...)`` with ``w`` the logit
   probabilities, i.e. ``w ((I - A)^-1 - I)``, summed by power series until it vanishes
   (the graph is acyclic).
3. **Node pruning**: keep the nodes holding ``node_threshold`` (0.8) of cumulative influence;
   embeddings and logits always stay.
4. **Edge pruning** on the node-pruned matrix: edge score = normalised weight x influence of its
   target (plus the target's logit weight); keep ``edge_threshold`` (0.98) of cumulative score;
   then drop feature/error nodes left without outgoing edges, and features without incoming ones,
   until stable (:func:`scrying.circuits.dead_nodes.prune_dead_nodes`, the fixed point component
   circuits end with too). ``max_feature_nodes`` additionally caps the feature nodes kept.
5. **Scores**: replacement = token influence / (token + error influence); completeness =
   influence-weighted fraction of each node's input that does not come from error nodes.

``node_threshold`` and ``edge_threshold`` are cumulative fractions of influence (circuit-tracer's
names and meaning), not the count and absolute score of component-circuit selection
(:class:`~scrying.circuits.config.SelectionConfig`: ``top_edges``, ``min_abs_score``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scrying.attribution.graph import Graph
from scrying.axes import Bool, Float, Tensor
from scrying.circuits.dead_nodes import prune_dead_nodes
from scrying.errors import ConfigError
from scrying.path_influence import influence, normalize_rows


@dataclass(frozen=True, kw_only=True)
class PruneConfig:
    """How much of the influence pruning keeps: ``node_threshold`` and ``edge_threshold``,
    cumulative fractions (phases 3-4), and at most ``max_feature_nodes`` feature/component
    nodes (``None``: no cap)."""

    node_threshold: float = 0.8
    edge_threshold: float = 0.98
    max_feature_nodes: int | None = None

    def __post_init__(self) -> None:
        for name in ("node_threshold", "edge_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"PruneConfig.{name} must be in [0, 1], got {value}")
        if self.max_feature_nodes is not None and self.max_feature_nodes < 1:
            raise ConfigError(f"PruneConfig.max_feature_nodes must be >= 1, got {self.max_feature_nodes}")


def node_influence(graph: Graph) -> Float[Tensor, " node"]:
    return influence(normalize_rows(graph.adjacency), graph.logit_weights())


def _threshold(scores: Float[Tensor, " n"], fraction: float) -> float:
    ordered = scores.flatten().sort(descending=True).values
    if ordered.sum() <= 0:
        return float("inf")
    cumulative = ordered.cumsum(0) / ordered.sum()
    index = min(int(torch.searchsorted(cumulative, torch.tensor(fraction, dtype=cumulative.dtype))), len(ordered) - 1)
    return float(ordered[index])


@dataclass(frozen=True)
class PruneResult:
    node_mask: Bool[Tensor, " node"]
    edge_mask: Bool[Tensor, "node node"]
    influence: Float[Tensor, " node"]
    cumulative: Float[Tensor, " node"]  # cumulative influence fraction at each node's rank


def prune(graph: Graph, config: PruneConfig | None = None) -> PruneResult:
    """Masks of the nodes and edges that carry most of the influence on the logits (phases 3-4)."""
    config = config or PruneConfig()
    kinds = [n.kind for n in graph.nodes]
    scores = node_influence(graph)
    node_mask = node_pruning(kinds, scores, config)
    edge_mask = edge_pruning(graph, node_mask, config)
    live = prune_dead_nodes(
        edge_mask,
        node_mask,
        needs_input=torch.tensor([k in ("feature", "component") for k in kinds]),
        needs_output=torch.tensor([k in ("feature", "error", "component") for k in kinds]),
    )
    order = scores.argsort(descending=True)
    cumulative = torch.zeros_like(scores)
    total = scores.sum()
    cumulative[order] = scores[order].cumsum(0) / (total if total > 0 else 1)
    return PruneResult(live.alive, live.edges, scores, cumulative)


def node_pruning(kinds: list[str], scores: Float[Tensor, " node"], config: PruneConfig) -> Bool[Tensor, " node"]:
    """Phase 3: the nodes holding ``node_threshold`` of the cumulative influence ``scores``
    (embeddings and logits always), at most ``max_feature_nodes`` of them features/components."""
    always = torch.tensor([k in ("embedding", "logit") for k in kinds])
    has_inputs = torch.tensor([k in ("feature", "component") for k in kinds])
    node_mask = (scores >= _threshold(scores, config.node_threshold)) | always
    if config.max_feature_nodes is not None:
        ranked = torch.where(has_inputs & node_mask, scores, torch.tensor(-1.0, dtype=scores.dtype))
        keep = ranked.argsort(descending=True)[: config.max_feature_nodes]
        capped = torch.zeros_like(node_mask)
        capped[keep] = True
        node_mask &= capped | ~has_inputs
    return node_mask


def edge_pruning(graph: Graph, node_mask: Bool[Tensor, " node"], config: PruneConfig) -> Bool[Tensor, "node node"]:
    """Phase 4's edges: on the matrix of the kept nodes, the edges holding ``edge_threshold`` of
    the cumulative edge score (dead nodes not yet pruned)."""
    weights = graph.logit_weights()
    pruned = graph.adjacency.clone()
    pruned[~node_mask] = 0
    pruned[:, ~node_mask] = 0
    normalized = normalize_rows(pruned)
    edge_scores = normalized * (influence(normalized, weights) + weights)[:, None]
    return (edge_scores >= _threshold(edge_scores[edge_scores > 0], config.edge_threshold)) & (pruned != 0)


def pruned_graph(graph: Graph, result: PruneResult) -> Graph:
    """A new graph with only the kept nodes and edges (influence stored on the nodes)."""
    keep = result.node_mask.nonzero().flatten()
    adjacency = torch.where(result.edge_mask, graph.adjacency, torch.zeros_like(graph.adjacency))
    nodes = []
    for i in keep.tolist():
        node = graph.nodes[i]
        nodes.append(type(node)(**{**node.__dict__, "influence": float(result.cumulative[i])}))
    return Graph(
        prompt=graph.prompt,
        prompt_tokens=graph.prompt_tokens,
        model_name=graph.model_name,
        level=graph.level,
        nodes=nodes,
        adjacency=adjacency[keep][:, keep],
        bias=None if graph.bias is None else graph.bias[keep],
        metadata={**graph.metadata, "pruned_from": len(graph.nodes)},
    )


def graph_scores(graph: Graph, *, errors: Bool[Tensor, " node"] | None = None) -> tuple[float, float]:
    """(replacement score, completeness score) of an unpruned graph; ``errors``: the nodes that
    count as error (default: every error node)."""
    kinds = [n.kind for n in graph.nodes]
    if errors is None:
        errors = torch.tensor([k == "error" for k in kinds])
    tokens = torch.tensor([k == "embedding" for k in kinds])
    weights = graph.logit_weights()
    normalized = normalize_rows(graph.adjacency)
    scores = influence(normalized, weights)
    token_influence, error_influence = scores[tokens].sum(), scores[errors].sum()
    denominator = token_influence + error_influence
    replacement = float(token_influence / denominator) if denominator > 0 else 1.0
    non_error = 1 - normalized[:, errors].sum(-1)
    output = scores + weights
    completeness = float((non_error * output).sum() / output.sum())
    return replacement, completeness


def labelled_scores(graph: Graph) -> dict[str, float | None]:
    """Both definitions of the scores, named for what they count.

    * ``*_unselected_as_error``: every error node counts as error. A neuron graph's error nodes
      hold only the neurons not selected as nodes, so these scores measure how much of the
      computation the *selection* leaves out (about 200 of ~330k neuron-positions on Gemma 3
      270M), not reconstruction error.
    * ``*_unselected_excluded``: unselected features count as neither token nor error, as in
      circuit-tracer, whose error nodes hold only the transcoder's reconstruction error; for an
      exact basis (neurons: no reconstruction error) both scores are then 1. A basis whose error
      nodes mix the two (a transcoder here) cannot be split after the fact: ``None``.
    """
    replacement, completeness = graph_scores(graph)
    out: dict[str, float | None] = {
        "replacement_score_unselected_as_error": replacement,
        "completeness_score_unselected_as_error": completeness,
        "replacement_score_unselected_excluded": None,
        "completeness_score_unselected_excluded": None,
    }
    if graph.metadata.get("exact_basis"):
        none = torch.zeros(len(graph.nodes), dtype=torch.bool)
        excluded = graph_scores(graph, errors=none)
        out["replacement_score_unselected_excluded"], out["completeness_score_unselected_excluded"] = excluded
    return out
