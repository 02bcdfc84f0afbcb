"""Node cards: what a graph page shows when a node is clicked, computed once and stored in the graph.

``graph.metadata["cards"]`` maps a node id to a JSON object the viewer renders
(``scrying/viewer/assets/viewer.js``, section "cards"):

* a **feature** (transcoder latent or MLP neuron): ``promotes`` / ``suppresses`` — the tokens its
  decoder row (a neuron: its column of the MLP's output projection) raises and lowers most through
  the MLP post-norm gain, the final norm's gain and the unembedding
  (:func:`scrying.models.adapter.mlp_output_logits`), each with that logit; ``contexts`` — its
  top-activating corpus contexts (:mod:`scrying.contexts`: tokens, the feature's activation on each,
  the activating token's index), from ``windows`` when given, else what the basis's files
  already hold (a transcoder set's ``labels.json``); ``contexts_from`` says which;
* an **attention head** (component graphs): ``pattern`` — its attention pattern on this prompt
  (``[query][key]``, tokens as labels); and for every component, ``effect`` — the exact change
  of the graph's metric when that node alone is patched to its baseline value
  (:func:`scrying.circuits.patching.node_effects`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch

from scrying.attribution.basis import FeatureBasis
from scrying.attribution.graph import Graph
from scrying.axes import Int, Model, Tensor
from scrying.circuits.eap import RunPair
from scrying.circuits.nodes import ComponentNodes
from scrying.circuits.patching import node_effects
from scrying.contexts import ContextConfig, top_contexts
from scrying.errors import ConfigError
from scrying.metrics import Metric
from scrying.models.adapter import final_resid, mlp_output_logits
from scrying.sites import Component, Site, recorded


@dataclass(frozen=True, kw_only=True)
class CardConfig:
    top_tokens: int = 5  # promoted and suppressed tokens per feature
    contexts: ContextConfig = field(default_factory=ContextConfig)

    def __post_init__(self) -> None:
        if self.top_tokens < 1:
            raise ConfigError(f"CardConfig.top_tokens must be >= 1, got {self.top_tokens}")


def _round(x: float) -> float:
    return float(f"{x:.4g}")


@torch.no_grad()
def feature_cards(
    model: Model,
    graph: Graph,
    basis: FeatureBasis,
    windows: Int[Tensor, "batch seq"] | None = None,
    config: CardConfig | None = None,
    *,
    contexts_from: str = "",
) -> dict[str, dict[str, Any]]:
    """A card per feature node of ``graph`` (see the module docstring); ``contexts_from`` names
    ``windows``' text for the page."""
    config = config or CardConfig()
    by_layer: dict[int, list[int]] = defaultdict(list)
    for node in graph.nodes:
        if node.kind == "feature" and node.feature not in by_layer[node.layer]:
            by_layer[node.layer].append(node.feature)
    layers = sorted(by_layer)
    decode = model.tokenizer.decode
    tokens: dict[tuple[int, int], dict[str, Any]] = {}
    for layer in layers:
        logits = mlp_output_logits(model, layer, basis.write_rows(model, layer, by_layer[layer]).detach()).double()
        k = min(config.top_tokens, logits.shape[-1])
        up, down = logits.topk(k, dim=-1), (-logits).topk(k, dim=-1)
        for j, index in enumerate(by_layer[layer]):
            tokens[(layer, index)] = {
                "promotes": [[decode([t]), _round(v)] for t, v in zip(up.indices[j].tolist(), up.values[j].tolist(), strict=True)],
                "suppresses": [[decode([t]), _round(-v)] for t, v in zip(down.indices[j].tolist(), down.values[j].tolist(), strict=True)],
            }
    contexts: dict[tuple[int, int], tuple[list[dict[str, Any]], str]] = {}
    if windows is not None and layers:
        columns = [(ly, i) for ly in layers for i in by_layer[ly]]
        wanted = {ly: torch.tensor(by_layer[ly]) for ly in layers}
        sites = [s for ly in layers for s in basis.unit_sites(model, ly)]

        def read(store: dict[Site, Tensor]) -> Tensor:
            return torch.cat([basis.unit_values(store, ly, wanted[ly]) for ly in layers], dim=-1)

        found = top_contexts(model, windows, sites, read, len(columns), config.contexts)
        for key, mine in zip(columns, found, strict=True):
            contexts[key] = ([c.to_json() for c in mine], contexts_from or f"{windows.shape[0]} corpus windows")
    else:
        for ly in layers:
            for i in by_layer[ly]:
                stored = basis.stored_card(ly, i)
                if stored is not None:
                    contexts[(ly, i)] = (list(stored.get("contexts", [])), "the transcoders' labels.json")
    cards = {}
    for node in graph.nodes:
        if node.kind != "feature":
            continue
        key = (node.layer, node.feature)
        card: dict[str, Any] = {"kind": basis.name, **tokens[key]}
        if key in contexts:
            card["contexts"], card["contexts_from"] = contexts[key]
        cards[node.node_id] = card
    return cards


@torch.no_grad()
def component_cards(
    model: Model,
    clean: Int[Tensor, "1 pos"],
    graph: Graph,
    node_ids: list[str],
    nodes: ComponentNodes,
    pair: RunPair,
    metric: Metric,
    metric_name: str,
) -> dict[str, dict[str, Any]]:
    """A card per component node of ``graph`` (a head's pattern on the prompt; every
    component's exact patching effect on the metric), keyed by node id; ``node_ids``: the graph
    node id of each of ``nodes.nodes``, in order."""
    source_of = {name: i for i, name in enumerate(nodes.sources)}
    graph_index = {n.node_id: n for n in graph.nodes}
    wanted = [
        (graph_index[node_id], source_of[c.name])
        for node_id, c in zip(node_ids, nodes.nodes, strict=True)
        if node_id in graph_index and c.name in source_of and graph_index[node_id].kind == "component"
    ]
    if not wanted:
        return {}
    effects = node_effects(model, clean, pair, metric, [u for _, u in wanted], nodes).tolist()
    head_layers = sorted({node.layer for node, _ in wanted if node.feature >= 0})
    with recorded(model, [Site(Component.PATTERN, ly) for ly in head_layers]) as store:
        final_resid(model, clean)
    cards = {}
    for (node, _), effect in zip(wanted, effects, strict=True):
        card: dict[str, Any] = {"kind": "component", "effect": _round(effect), "effect_of": f"patching it alone to its baseline value: change of {metric_name}"}
        if node.feature >= 0:
            pattern = store[Site(Component.PATTERN, node.layer)][0, node.feature].double()
            card["pattern"] = [[round(v, 3) for v in row] for row in pattern.tolist()]
        cards[node.node_id] = card
    return cards


