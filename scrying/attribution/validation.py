"""Check a graph by intervention: predicted against measured effects of its top nodes.

Phases:

1. **Pick** the ``top_k`` feature nodes by influence on the logits.
2. **Predict** each one's effect on the target (demeaned logit of the graph's first logit node)
   if its activation is scaled by ``scale`` (0 = ablate): ``(1 - scale) x activation x total
   gradient`` in the frozen local replacement model, i.e. the graph's own linear account,
   direct and indirect paths included.
3. **Measure** the same intervention in the *real* model (nothing frozen), all interventions in
   one batched forward pass.
4. **Compare**: a table and the Spearman rank correlation of predicted vs measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from scipy.stats import spearmanr

from scrying.attribution.graph import Graph
from scrying.attribution.pruning import node_influence
from scrying.attribution.replacement import attribution_pass, clean_run
from scrying.errors import ConfigError, InvalidInputError
from scrying.prompts import tokenize
from scrying.sites import Component, Site, hooks


@dataclass(frozen=True, kw_only=True)
class ValidationConfig:
    top_k: int = 12
    scale: float = 0.0  # 0 ablates; 2.0 doubles; -1.0 flips

    def __post_init__(self) -> None:
        if self.top_k < 2:
            raise ConfigError(f"ValidationConfig.top_k must be >= 2 (a rank correlation needs two), got {self.top_k}")
        if self.scale == 1.0:
            raise ConfigError("ValidationConfig.scale must differ from 1.0 (that is no intervention)")


@dataclass(frozen=True)
class ValidationReport:
    """Predicted vs measured change of the target, per intervened node."""

    target: str
    scale: float
    table: pd.DataFrame  # node_id, label, activation, influence, predicted, measured
    spearman: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "scale": self.scale,
            "spearman": self.spearman,
            "rows": self.table.to_dict(orient="records"),
        }


def _demeaned(logits: torch.Tensor, token_id: int) -> torch.Tensor:
    return logits[..., token_id] - logits.mean(-1)


def validate_neuron_graph(model: Any, graph: Graph, config: ValidationConfig | None = None) -> ValidationReport:
    """Intervene on the graph's most influential neurons; compare with its predictions."""
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

    with attribution_pass(model, clean, 1, cut_mlps=False) as leaves:
        logits = model(tokens)
        _demeaned(logits[0, -1], target.feature).backward()
    predicted = []
    for i in chosen:
        node = graph.nodes[i]
        grad = leaves.post[node.layer].grad[0, node.pos, node.feature]
        predicted.append(float((1 - config.scale) * clean.post[node.layer, node.pos, node.feature] * grad))

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
    rho = float(spearmanr(table.predicted, table.measured).statistic)
    return ValidationReport(target=target.label, scale=config.scale, table=table, spearman=rho)


@torch.no_grad()
def _measure(model: Any, tokens: torch.Tensor, nodes: list, token_id: int, scale: float) -> list[float]:
    """Real-model change of the demeaned target logit when each node is scaled (row 0: clean)."""
    batch = len(nodes) + 1
    by_layer: dict[int, list[tuple[int, Any]]] = {}
    for row, node in enumerate(nodes, start=1):
        by_layer.setdefault(node.layer, []).append((row, node))

    def scale_rows(entries):
        def fn(act, hook):
            act = act.clone()
            for row, node in entries:
                act[row, node.pos, node.feature] *= scale
            return act

        return fn

    fwd = [(Site(Component.MLP_POST, layer), scale_rows(entries)) for layer, entries in by_layer.items()]
    with hooks(model, fwd):
        logits = model(tokens.expand(batch, -1))[:, -1]
    values = _demeaned(logits, token_id)
    return (values[0] - values[1:]).tolist()
