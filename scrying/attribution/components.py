"""Component-level graphs: EAP-IG circuits (:mod:`scrying.circuits`) as attribution graphs.

Phases: tokenize the prompt (and the corrupted prompt, which must have the same token length);
choose the metric — logit difference between the target and the corrupted prompt's top token
when a corrupted prompt is given, else the target's log-probability against a mean-activation
baseline; score every edge with EAP-IG; measure the ``top_k`` strongest edges by exact
patching (the validation); convert to :class:`~scrying.attribution.graph.Graph` with one node
per embedding, attention head, MLP and the logit (summed over positions). With ``split_qkv``
the edges into a head's query, key and value inputs are scored and validated separately; the
graph's edge into the head is their sum (exact: the three inputs are one residual stream), and
the validation table names the part.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import pandas as pd
import torch

from scrying.attribution.config import TraceConfig
from scrying.attribution.graph import Graph, Node
from scrying.axes import Model
from scrying.circuits.circuit import find_circuit, measure_edges
from scrying.circuits.config import EAPConfig, SelectionConfig
from scrying.circuits.eap import check_pair
from scrying.circuits.faithfulness import recovered
from scrying.circuits.nodes import ComponentNodes
from scrying.circuits.selection import score_matrix, select_edges
from scrying.metrics import LogitDiff, Metric, TargetLogProb
from scrying.prompts import single_token, token_strings, tokenize
from scrying.validation import ValidationReport, compare

METHOD = (
    "predicted: the edge's EAP-IG score (integrated-gradient estimate of the metric change when "
    "the edge alone is corrupted); measured: that change, by exact patching of the edge in the "
    "real model"
)

_HEAD = re.compile(r"^a(\d+)\.h(\d+)")
_MLP = re.compile(r"^m(\d+)")


def _node(name: str, n_layers: int, n_heads: int, target: int, prob: float, label: str) -> Node:
    """The graph node of an EAP-IG node name. All are summed over positions (``pos`` -1, written
    at the last token, where the next token is predicted); ``column`` lays them out: heads at
    their index, the MLP at ``n_heads``, embeddings and the logit in the middle."""
    if (m := _HEAD.match(name)) is not None:
        layer, head = int(m.group(1)), int(m.group(2))
        return Node(f"A{layer}.{head}", "component", layer, -1, head, f"attention L{layer} H{head}", column=head)
    if (m := _MLP.match(name)) is not None:
        layer = int(m.group(1))
        return Node(f"M{layer}", "component", layer, -1, -1, f"MLP L{layer}", column=n_heads)
    if name.startswith("embed"):
        return Node("E", "embedding", -1, -1, -1, "token embeddings (all positions)", column=n_heads // 2)
    return Node(
        f"{n_layers + 1}_{target}", "logit", n_layers, -1, target, label, None, None, prob, True, column=n_heads // 2
    )


def _part(name: str) -> str:
    """``"<q>"``, ``"<k>"`` or ``"<v>"`` of a split head receiver's name, else ``""``."""
    return name[name.index("<") :] if "<" in name else ""


class ComponentTrace(NamedTuple):
    """The full EAP-IG graph, the circuit selected from it, and the validation by patching."""

    graph: Graph
    circuit: Graph
    validation: ValidationReport


def build_component_graph(model: Model, prompt: str, config: TraceConfig, *, model_name: str = "") -> ComponentTrace:
    """The EAP-IG component graph of ``prompt``, its circuit (``config.circuit``: top-n edges,
    then dead-node pruning, as Hanna et al. 2024) with the fraction of the metric it recovers
    (exact patching of every other edge), and the validation of the top edges by patching."""
    tokens = tokenize(model, prompt)
    with torch.no_grad():
        probs = model(tokens)[0, -1].double().softmax(-1)
    target = single_token(model, config.target, what="target token") if config.target else int(probs.argmax())
    target_label = f"Output {model.tokenizer.decode([target])!r} (p={float(probs[target]):.3f})"
    if config.corrupt is not None:
        corrupt = tokenize(model, config.corrupt, what="corrupt prompt")
        check_pair(tokens, corrupt)
        with torch.no_grad():
            corrupt_order = model(corrupt)[0, -1].argsort(descending=True).tolist()
        incorrect = next(t for t in corrupt_order if t != target)
        metric: Metric = LogitDiff(correct=(target,), incorrect=(incorrect,))
        eap = EAPConfig(method="eap-ig", baseline="corrupt", split_qkv=config.split_qkv)
        metric_name = f"logit[{model.tokenizer.decode([target])!r}] - logit[{model.tokenizer.decode([incorrect])!r}]"
    else:
        corrupt = None
        metric = TargetLogProb(target=(target,))
        eap = EAPConfig(method="eap-ig", baseline="mean-input", split_qkv=config.split_qkv)
        metric_name = f"log p({model.tokenizer.decode([target])!r}), mean-input baseline"
    circuit = find_circuit(model, tokens, corrupt, metric, eap)
    circuit = measure_edges(model, tokens, metric, circuit, top=config.validation.top_k)
    index_of = ComponentNodes.of(model, split_qkv=config.split_qkv)
    selection_config = config.circuit
    if selection_config.top_n is not None and selection_config.top_n > len(index_of.edges):
        selection_config = SelectionConfig(top_n=len(index_of.edges))  # a small model: every edge
    kept = select_edges(index_of, score_matrix(index_of, circuit.edges), selection_config)
    fraction = recovered(model, tokens, circuit, metric, kept)
    kept_names = {(index_of.sources[u], index_of.receivers[v]) for u, v in kept.nonzero().tolist()}

    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    nodes: dict[str, Node] = {}
    for name in circuit.nodes:
        node = _node(name, n_layers, n_heads, target, float(probs[target]), target_label)
        nodes.setdefault(node.node_id, node)
    ordered = list(nodes.values())
    index = {n.node_id: i for i, n in enumerate(ordered)}

    def node_id(name: str) -> str:
        return _node(name, n_layers, n_heads, target, 0.0, "").node_id

    adjacency = torch.zeros(len(ordered), len(ordered), dtype=torch.float64)
    in_circuit = torch.zeros(len(ordered), len(ordered), dtype=torch.bool)
    for row in circuit.edges.itertuples(index=False):
        adjacency[index[node_id(row.target)], index[node_id(row.source)]] += row.score
        if (row.source, row.target) in kept_names:
            in_circuit[index[node_id(row.target)], index[node_id(row.source)]] = True
    measured = circuit.edges.dropna(subset=["patched_effect"])
    table = pd.DataFrame(
        {
            "edge": [f"{node_id(r.source)} -> {node_id(r.target)}{_part(r.target)}" for r in measured.itertuples(index=False)],
            "predicted": measured["score"].astype(float).tolist(),
            "measured": measured["patched_effect"].astype(float).tolist(),
        }
    )
    validation = compare(table, target=f"{metric_name} (edge patched: metric change)", method=METHOD)
    graph = Graph(
        prompt=prompt,
        prompt_tokens=token_strings(model, tokens[0]),
        model_name=model_name,
        level="components",
        nodes=ordered,
        adjacency=adjacency,
        metadata={
            "targets": [model.tokenizer.decode([target])],
            "metric": metric_name,
            "clean_metric": circuit.clean_metric,
            "corrupt_metric": circuit.corrupt_metric,
            "corrupt_prompt": config.corrupt,
            "split_qkv": config.split_qkv,
            "x_labels": [f"H{h}" for h in range(n_heads)] + ["MLP"],
        },
    )
    alive = (in_circuit.any(0) | in_circuit.any(1)).nonzero().flatten().tolist()
    selection = {
        "rule": "top-n edges by |EAP-IG score|, then dead-node pruning (Hanna et al. 2024)",
        "top_n": selection_config.top_n,
        "threshold": config.circuit.threshold,
        "kept_edges": int(kept.sum()),
        "recovered": fraction,
    }
    small = Graph(
        prompt=prompt,
        prompt_tokens=graph.prompt_tokens,
        model_name=model_name,
        level="components",
        nodes=[ordered[i] for i in alive],
        adjacency=torch.where(in_circuit, adjacency, 0.0)[alive][:, alive],
        metadata={**graph.metadata, "circuit": selection, "pruned_from": len(ordered)},
    )
    return ComponentTrace(graph, small, validation)
