"""Check a graph by intervention: predicted against measured effects of its top nodes.

Phases:

1. **Pick** the ``top_k`` feature nodes by influence on the logits.
2. **Predict** each one's effect on the target (demeaned logit of the graph's first logit node)
   if its activation is scaled by ``scale`` (0 = ablate): ``(1 - scale) x activation x total
   gradient`` in the frozen local replacement model with later neurons live (direct and
   indirect paths; computed from the frozen model, not from the graph's pruned edges).
3. **Measure** the same intervention in the *real* model (nothing frozen), all interventions in
   one batched forward pass.
4. **Compare**: a :class:`scrying.validation.ValidationReport` (table, Spearman and Pearson
   with bootstrap intervals, slope).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from scrying.attribution.graph import Graph, Node
from scrying.attribution.influence import node_influence
from scrying.attribution.replacement import attribution_pass, clean_run
from scrying.axes import Model
from scrying.errors import ConfigError, InvalidInputError
from scrying.metrics import demeaned_logit
from scrying.prompts import tokenize
from scrying.sites import Component, HookFn, Site, hooks
from scrying.validation import ValidationReport, compare

METHOD = (
    "predicted: (1 - scale) x activation x total gradient of the target in the frozen local "
    "replacement model (norm scales, attention patterns and MLP gates frozen; later neurons "
    "live), not a sum over the graph's pruned edges; measured: the target's change when the "
    "neuron is scaled by `scale` in the real model"
)


@dataclass(frozen=True, kw_only=True)
class ValidationConfig:
    top_k: int = 12
    scale: float = 0.0  # 0 ablates; 2.0 doubles; -1.0 flips

    def __post_init__(self) -> None:
        if self.top_k < 2:
            raise ConfigError(f"ValidationConfig.top_k must be >= 2 (a rank correlation needs two), got {self.top_k}")
        if self.scale == 1.0:
            raise ConfigError("ValidationConfig.scale must differ from 1.0 (that is no intervention)")


def validate_neuron_graph(model: Model, graph: Graph, config: ValidationConfig | None = None) -> ValidationReport:
    """Intervene on the graph's most influential neurons; compare with the frozen model's
    first-order prediction (table columns: node_id, label, activation, influence, predicted,
    measured)."""
    config = config or ValidationConfig()
    if graph.level != "neurons":
        raise InvalidInputError(f"validate_neuron_graph needs a neuron-level graph, got level {graph.level!r}")
    influence = node_influence(graph)
    features = [i for i, n in enumerate(graph.nodes) if n.kind == "feature"]
    if len(features) < 2:
        raise InvalidInputError(f"graph has {len(features)} feature nodes; validation needs at least 2")
    chosen = sorted(features, key=lambda i: -float(influence[i]))[: config.top_k]
    target = next(n for n in graph.nodes if n.kind == "logit" and n.is_target)
    tokens = tokenize(model, graph.prompt)
    clean = clean_run(model, tokens)

    with attribution_pass(model, clean, 1, cut=False) as leaves:
        logits = model(tokens)
        demeaned_logit(logits[0, -1], target.feature).backward()
    predicted = []
    for i in chosen:
        node = graph.nodes[i]
        grad = leaves.features[node.layer].grad[0, node.pos, node.feature]
        predicted.append(float((1 - config.scale) * clean.features[node.layer, node.pos, node.feature] * grad))

    measured = _measure(model, tokens, [graph.nodes[i] for i in chosen], target.feature, config.scale)
    table = pd.DataFrame(
        {
            "node_id": [graph.nodes[i].node_id for i in chosen],
            "label": [graph.nodes[i].label for i in chosen],
            "activation": [graph.nodes[i].activation for i in chosen],
            "influence": [float(influence[i]) for i in chosen],
            "predicted": predicted,
            "measured": measured,
        }
    )
    what = f"demeaned logit of {target.label}"
    return compare(table, target=what, method=METHOD, settings={"scale": config.scale})


@torch.no_grad()
def _measure(model: Model, tokens: torch.Tensor, nodes: list[Node], token_id: int, scale: float) -> list[float]:
    """Real-model change of the demeaned target logit when each node is scaled (row 0: clean)."""
    batch = len(nodes) + 1
    by_layer: dict[int, list[tuple[int, Node]]] = {}
    for row, node in enumerate(nodes, start=1):
        by_layer.setdefault(node.layer, []).append((row, node))

    def scale_rows(entries: list[tuple[int, Node]]) -> HookFn:
        def fn(act: torch.Tensor, hook: object) -> torch.Tensor:
            act = act.clone()
            for row, node in entries:
                act[row, node.pos, node.feature] *= scale
            return act

        return fn

    fwd = [(Site(Component.MLP_POST, layer), scale_rows(entries)) for layer, entries in by_layer.items()]
    with hooks(model, fwd):
        logits = model(tokens.expand(batch, -1))[:, -1]
    values = demeaned_logit(logits, token_id)
    return (values[0] - values[1:]).tolist()
