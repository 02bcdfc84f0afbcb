"""Component-level graphs: EAP-IG circuits (:mod:`scrying.circuits`) as attribution graphs.

Phases: tokenize the prompt (and the corrupted prompt, which must have the same token length);
choose the metric — logit difference between the target and the corrupted prompt's top token
when a corrupted prompt is given, else the target's log-probability against a mean-activation
baseline; score every edge with EAP-IG; measure the ``top_k`` strongest edges by exact
patching (the validation); select the circuit (:mod:`scrying.circuits.selection`) and the
fraction of the metric it recovers; convert to :class:`~scrying.attribution.graph.Graph` with
one node per embedding, attention head, MLP and the logit (summed over positions), each made
from the component graph's typed node (:class:`~scrying.circuits.nodes.ComponentNode`). With ``split_qkv``
the edges into a head's query, key and value inputs are scored and validated separately; the
graph's edge into the head is their sum (exact: the three inputs are one residual stream), and
the validation table names the part.
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd
import torch

from scrying.attribution.cards import component_cards
from scrying.attribution.config import TraceConfig
from scrying.attribution.graph import Graph
from scrying.attribution.nodes import (
    LogitTarget,
    Node,
    head_node,
    mlp_node,
    summed_embedding_node,
    summed_logit_node,
)
from scrying.axes import Bool, Float, Int, Model, Tensor
from scrying.circuits.circuit import ComponentCircuit, find_circuit, measure_edges
from scrying.circuits.config import EAPConfig, SelectionConfig
from scrying.circuits.eap import RunPair, check_pair, run_pair
from scrying.circuits.faithfulness import recovered
from scrying.circuits.nodes import ComponentNode, ComponentNodes
from scrying.circuits.selection import score_matrix, select_edges
from scrying.errors import InvalidInputError
from scrying.metrics import LogitDiff, Metric, TargetLogProb
from scrying.prompts import single_token, token_strings, tokenize
from scrying.validation_report import ValidationReport, compare

METHOD = (
    "predicted: the edge's EAP-IG score (integrated-gradient estimate of the metric change when "
    "the edge alone is corrupted); measured: that change, by exact patching of the edge in the "
    "real model"
)


def graph_node(node: ComponentNode, n_layers: int, n_heads: int, target: LogitTarget) -> Node:
    """The graph node of a component-graph node. All are summed over positions (``pos`` -1,
    written at the last token, where the next token is predicted); ``column`` lays them out:
    heads at their index, the MLP at ``n_heads``, embeddings and the logit in the middle."""
    if node.kind == "head":
        return head_node(node.layer, node.head)
    if node.kind == "mlp":
        return mlp_node(node.layer, n_heads)
    if node.kind == "embed":
        return summed_embedding_node(n_heads)
    return summed_logit_node(n_layers, target, n_heads)


class ComponentTrace(NamedTuple):
    """The full EAP-IG graph, the circuit selected from it, and the validation by patching."""

    graph: Graph
    circuit: Graph
    validation: ValidationReport


class _Metric(NamedTuple):
    """What the edges are scored against: the metric, its name, the EAP-IG settings and the
    corrupted prompt's tokens (``None``: the mean-input baseline)."""

    metric: Metric
    name: str
    eap: EAPConfig
    corrupt: Int[Tensor, "1 pos"] | None


def build_component_graph(model: Model, prompt: str, config: TraceConfig, *, model_name: str = "") -> ComponentTrace:
    """The EAP-IG component graph of ``prompt``, its circuit (``config.circuit``: top edges,
    then dead-node pruning, as Hanna et al. 2024) with the fraction of the metric it recovers
    (exact patching of every other edge), and the validation of the top edges by patching
    (the phases of the module docstring)."""
    tokens = tokenize(model, prompt)
    target = _target(model, tokens, config)
    scoring = _metric(model, tokens, target, config)
    circuit = find_circuit(model, tokens, scoring.corrupt, scoring.metric, scoring.eap)
    circuit = measure_edges(model, tokens, scoring.metric, circuit, top=config.validation.top_k)
    nodes = ComponentNodes.of(model, split_qkv=config.split_qkv)
    selection = _selection(config.circuit, len(nodes.edges))
    kept = select_edges(nodes, score_matrix(nodes, circuit.edges), selection)
    graph_nodes = [graph_node(n, model.cfg.n_layers, model.cfg.n_heads, target) for n in nodes.nodes]
    adjacency, in_circuit = _edges(nodes, circuit, kept, len(graph_nodes))
    graph = Graph(
        prompt=prompt,
        prompt_tokens=token_strings(model, tokens[0]),
        model_name=model_name,
        level="components",
        nodes=graph_nodes,
        adjacency=adjacency,
        metadata={
            "targets": [target.token],
            "metric": scoring.name,
            "clean_metric": circuit.clean_metric,
            "corrupt_metric": circuit.corrupt_metric,
            "corrupt_prompt": config.corrupt,
            "split_qkv": config.split_qkv,
            "x_labels": [f"H{h}" for h in range(model.cfg.n_heads)] + ["MLP"],
        },
    )
    record = {  # the stored record's keys, as graphs have always been written
        "rule": "top-n edges by |EAP-IG score|, then dead-node pruning (Hanna et al. 2024)",
        "top_n": selection.top_edges,
        "threshold": selection.min_abs_score,
        "kept_edges": int(kept.sum()),
        "recovered": recovered(model, tokens, circuit, scoring.metric, kept),
    }
    small = _circuit_graph(graph, in_circuit, record)
    small.metadata["cards"] = component_cards(
        model, tokens, small, [n.node_id for n in graph_nodes], nodes, circuit.pair, scoring.metric, scoring.name
    )
    return ComponentTrace(graph, small, _validation(nodes, circuit, graph, scoring.name))


def _selection(config: SelectionConfig, n_edges: int) -> SelectionConfig:
    """``config``, its ``top_edges`` capped at the graph's ``n_edges`` (a small model: every edge)."""
    if config.top_edges is not None and config.top_edges > n_edges:
        return SelectionConfig(top_edges=n_edges)
    return config


def _target(model: Model, tokens: Int[Tensor, "1 pos"], config: TraceConfig) -> LogitTarget:
    """The requested target token (default: the top-1) and its probability."""
    with torch.no_grad():
        probs = model(tokens)[0, -1].double().softmax(-1)
    target = single_token(model, config.target, what="target token") if config.target else int(probs.argmax())
    return LogitTarget(target, model.tokenizer.decode([target]), float(probs[target]))


def _metric(model: Model, tokens: Int[Tensor, "1 pos"], target: LogitTarget, config: TraceConfig) -> _Metric:
    """The logit difference between the target and the corrupted prompt's top token when a
    corrupted prompt is given, else the target's log-probability against the mean input."""
    if config.corrupt is None:
        eap = EAPConfig(method="eap-ig", baseline="mean-input", split_qkv=config.split_qkv)
        name = f"log p({target.token!r}), mean-input baseline"
        return _Metric(TargetLogProb(target=(target.token_id,)), name, eap, None)
    corrupt = tokenize(model, config.corrupt, what="corrupt prompt")
    check_pair(tokens, corrupt)
    with torch.no_grad():
        corrupt_order = model(corrupt)[0, -1].argsort(descending=True).tolist()
    incorrect = next(t for t in corrupt_order if t != target.token_id)
    eap = EAPConfig(method="eap-ig", baseline="corrupt", split_qkv=config.split_qkv)
    name = f"logit[{target.token!r}] - logit[{model.tokenizer.decode([incorrect])!r}]"
    return _Metric(LogitDiff(correct=(target.token_id,), incorrect=(incorrect,)), name, eap, corrupt)


def _node_of_receivers(nodes: ComponentNodes) -> list[int]:
    """The graph node (the index of :attr:`ComponentNodes.nodes`) each receiver is an input of."""
    index = {node: i for i, node in enumerate(nodes.nodes)}
    return [index[r.node] for r in nodes.receiver_nodes]


def _edges(
    nodes: ComponentNodes, circuit: ComponentCircuit, kept: Bool[Tensor, "src dst"], n: int
) -> tuple[Float[Tensor, "node node"], Bool[Tensor, "node node"]]:
    """The graph's ``[target, source]`` EAP-IG scores (a split head's q, k and v edges summed,
    in the table's order) and which of its edges are the circuit's."""
    owner = _node_of_receivers(nodes)
    adjacency = torch.zeros(n, n, dtype=torch.float64)
    in_circuit = torch.zeros(n, n, dtype=torch.bool)
    pairs = nodes.edge_index(circuit.edges["source"], circuit.edges["target"])
    for (u, v), score in zip(pairs, circuit.edges["score"].tolist(), strict=True):
        adjacency[owner[v], u] += score  # sources are the first nodes, in order
        if kept[u, v]:
            in_circuit[owner[v], u] = True
    return adjacency, in_circuit


def _validation(nodes: ComponentNodes, circuit: ComponentCircuit, graph: Graph, metric_name: str) -> ValidationReport:
    """The measured edges' EAP-IG scores against their exact patched effects; each edge named by
    its graph nodes and, into a split head, the part (``A0.1 -> A1.0<q>``)."""
    owner = _node_of_receivers(nodes)
    measured = circuit.edges.dropna(subset=["patched_effect"])
    pairs = nodes.edge_index(measured["source"], measured["target"])
    ids = [node.node_id for node in graph.nodes]
    table = pd.DataFrame(
        {
            "edge": [f"{ids[u]} -> {ids[owner[v]]}{nodes.receiver_nodes[v].part_tag}" for u, v in pairs],
            "predicted": measured["score"].astype(float).tolist(),
            "measured": measured["patched_effect"].astype(float).tolist(),
        }
    )
    return compare(table, target=f"{metric_name} (edge patched: metric change)", method=METHOD)


def _circuit_graph(graph: Graph, in_circuit: Bool[Tensor, "node node"], record: dict) -> Graph:
    """The circuit as a graph: its edges, and the nodes they touch."""
    alive = (in_circuit.any(0) | in_circuit.any(1)).nonzero().flatten().tolist()
    return Graph(
        prompt=graph.prompt,
        prompt_tokens=graph.prompt_tokens,
        model_name=graph.model_name,
        level="components",
        nodes=[graph.nodes[i] for i in alive],
        adjacency=torch.where(in_circuit, graph.adjacency, 0.0)[alive][:, alive],
        metadata={**graph.metadata, "circuit": record, "pruned_from": len(graph.nodes)},
    )


def component_inputs(
    model: Model, graph: Graph
) -> tuple[Int[Tensor, "1 pos"], ComponentNodes, RunPair, Metric, str, list[str]]:
    """What :func:`~scrying.attribution.cards.component_cards` needs for a component graph traced
    earlier: its tokens, nodes, the clean and baseline runs, the metric (rebuilt from the stored
    target, corrupt prompt and q/k/v setting as :func:`build_component_graph` built it; refused
    when it comes out other than the stored one, e.g. on another model) and the node ids."""
    meta = graph.metadata
    config = TraceConfig(level="components", target=meta["targets"][0], corrupt=meta.get("corrupt_prompt"),
                         split_qkv=bool(meta.get("split_qkv", False)))
    tokens = tokenize(model, graph.prompt)
    target = _target(model, tokens, config)
    scoring = _metric(model, tokens, target, config)
    if meta.get("metric") not in (None, scoring.name):
        raise InvalidInputError(f"the graph's metric is {meta['metric']!r}, but this model gives {scoring.name!r}: is it the model it was traced on?")
    nodes = ComponentNodes.of(model, split_qkv=config.split_qkv)
    pair = run_pair(model, tokens, scoring.corrupt, scoring.metric, nodes, scoring.eap.baseline)
    node_ids = [graph_node(n, model.cfg.n_layers, model.cfg.n_heads, target).node_id for n in nodes.nodes]
    return tokens, nodes, pair, scoring.metric, scoring.name, node_ids
