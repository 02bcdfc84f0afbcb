"""Check a feature graph by intervention, in two layers.

Phases of :func:`validate_feature_graph`:

1. **Pick** the ``top_k`` feature nodes of the full graph by influence on the logits.
2. **Predict** from the graph itself: each node scaled by each of ``scales`` changes the target
   (the demeaned logit of the graph's target logit node) by the signed path sum through the
   *pruned* graph's edges (:mod:`scrying.attribution.path_sums`); the same sum through the
   unpruned graph is reported beside it, and their difference is what pruning lost.
3. **(a) Graph vs frozen model**: the same interventions in the local replacement model the graph
   was built in (norm scales, attention patterns and the basis's nonlinearity frozen; the graph's
   selected features live, its unselected ones clamped, since they are its error nodes). The
   unpruned graph's prediction agrees to rounding; any gap of the pruned one is pruning loss.
4. **(b) Frozen vs real model**: the same interventions in the real model. At the first scale the
   gap is located by unfreezing one thing at a time, cumulatively: the unselected features
   (error nodes), then attention patterns, then norm scales, then the basis's own nonlinearity
   (MLP gates); the last stage is the real model.
5. **Baseline**: the real model's first-order estimate, ``(scale - 1) x activation x gradient``
   (one backward pass, nothing frozen), so a reader sees whether the graph beats the cheap
   attribution.
6. **Report**: one :class:`~scrying.validation_report.ValidationReport` per comparison (Spearman and
   Pearson with bootstrap intervals, slope), in a :class:`GraphValidation`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from scrying.attribution.basis import FeatureBasis, NeuronBasis
from scrying.attribution.graph import Graph, Node
from scrying.attribution.influence import node_influence
from scrying.attribution.path_sums import predicted_changes
from scrying.attribution.replacement import (
    CleanRun,
    Intervention,
    Unfreeze,
    attribution_pass,
    clean_run,
    intervention_pass,
)
from scrying.axes import Model
from scrying.errors import ConfigError, InvalidInputError
from scrying.metrics import demeaned_logit
from scrying.prompts import tokenize
from scrying.validation_report import ValidationReport, compare

#: Cumulative unfreezing stages of phase 4 (the last one is the real model).
STAGES: tuple[tuple[str, frozenset[Unfreeze]], ...] = (
    ("frozen", frozenset()),
    ("+ error nodes live", frozenset({"errors"})),
    ("+ attention patterns live", frozenset({"errors", "patterns"})),
    ("+ norm scales live", frozenset({"errors", "patterns", "norms"})),
    ("+ MLP gates live (real model)", frozenset({"errors", "patterns", "norms", "basis"})),
)


@dataclass(frozen=True, kw_only=True)
class ValidationConfig:
    """How many nodes to check (``top_k``), at which ``scales`` (0 ablates, 0.5 halves, 1.5
    amplifies), and how many intervened copies of the prompt per forward pass (``chunk``)."""

    top_k: int = 50
    scales: tuple[float, ...] = (0.0, 0.5, 1.5)
    chunk: int = 8

    def __post_init__(self) -> None:
        if self.top_k < 2:
            raise ConfigError(f"ValidationConfig.top_k must be >= 2 (a rank correlation needs two), got {self.top_k}")
        if not self.scales or any(s == 1.0 for s in self.scales):
            raise ConfigError(f"ValidationConfig.scales must be non-empty and must not contain 1.0 (no intervention), got {self.scales}")
        if self.chunk < 1:
            raise ConfigError(f"ValidationConfig.chunk must be >= 1, got {self.chunk}")


@dataclass(frozen=True)
class GraphValidation:
    """Every comparison of a graph's check, by name; ``headline`` names the one a summary
    quotes."""

    reports: dict[str, ValidationReport]
    headline: str

    @property
    def main(self) -> ValidationReport:
        return self.reports[self.headline]

    def summary(self) -> pd.DataFrame:
        """One row per comparison: n, Spearman and Pearson with intervals, slope."""
        return pd.DataFrame(
            [
                {
                    "comparison": name,
                    "n": r.n,
                    "spearman": r.spearman.value,
                    "spearman_low": r.spearman.ci_low,
                    "spearman_high": r.spearman.ci_high,
                    "pearson": r.pearson.value,
                    "pearson_low": r.pearson.ci_low,
                    "pearson_high": r.pearson.ci_high,
                    "slope": r.slope,
                }
                for name, r in self.reports.items()
            ]
        )

    def to_json(self) -> dict:
        return {"headline": self.headline, "reports": {k: r.to_json() for k, r in self.reports.items()}}


def _target(graph: Graph) -> Node:
    try:
        return next(n for n in graph.nodes if n.kind == "logit" and n.is_target)
    except StopIteration:
        raise InvalidInputError("graph has no target logit node") from None


def validate_feature_graph(
    model: Model,
    graph: Graph,
    pruned: Graph,
    config: ValidationConfig | None = None,
    *,
    basis: FeatureBasis | None = None,
) -> GraphValidation:
    """Intervene on the graph's most influential features (phases 1-6 of the module docstring);
    ``basis``: the one the graph was built in (default: neurons)."""
    config = config or ValidationConfig()
    influence = node_influence(graph)
    chosen = _pick(graph, influence, config.top_k)
    target = _target(graph)
    ids = [n.node_id for n in chosen]
    from_pruned = predicted_changes(pruned, ids, target.node_id, config.scales)
    from_full = predicted_changes(graph, ids, target.node_id, config.scales)
    clean = clean_run(model, tokenize(model, graph.prompt), _basis_of(graph, basis))
    measured = _measure_stages(model, clean, graph, chosen, target, config)
    gradient = _real_gradient(model, clean, chosen, target.feature)
    base = pd.DataFrame(
        {
            "node_id": ids,
            "label": [n.label for n in chosen],
            "activation": [n.activation for n in chosen],
            "influence": [float(influence[graph.index[i]]) for i in ids],
        }
    )
    what = f"change of the demeaned logit of {target.label}"
    reports: dict[str, ValidationReport] = {}
    for j, scale in enumerate(config.scales):
        reports |= _scale_reports(base, from_pruned[:, j], from_full[:, j], measured, gradient, scale, what)
    reports |= _stage_reports(base, from_pruned[:, 0], measured, config.scales[0], what)
    return GraphValidation(reports, headline=f"graph vs frozen, scale {config.scales[0]:g}")


def _pick(graph: Graph, influence: torch.Tensor, top_k: int) -> list[Node]:
    """Phase 1: the ``top_k`` active feature nodes with the most influence on the logits."""
    features = [i for i, n in enumerate(graph.nodes) if n.kind == "feature" and n.activation]
    if len(features) < 2:
        raise InvalidInputError(f"graph has {len(features)} active feature nodes; validation needs at least 2")
    return [graph.nodes[i] for i in sorted(features, key=lambda i: -float(influence[i]))[:top_k]]


def _measure_stages(
    model: Model, clean: CleanRun, graph: Graph, chosen: list[Node], target: Node, config: ValidationConfig
) -> dict[tuple[str, float], torch.Tensor]:
    """Phases 3-4: the target's change for each chosen node, by ``(stage, scale)``: every scale
    in the frozen model (the graph's features live) and in the real model, the first scale at
    every stage between."""
    live = torch.zeros_like(clean.features, dtype=torch.bool)
    for node in (n for n in graph.nodes if n.kind == "feature"):
        live[node.layer, node.pos, node.feature] = True
    first = config.scales[0]
    measured: dict[tuple[str, float], torch.Tensor] = {}
    for name, unfrozen in STAGES:
        for scale in config.scales if name in (STAGES[0][0], STAGES[-1][0]) else (first,):
            measured[name, scale] = _measure(model, clean, chosen, target.feature, scale, live, unfrozen, config.chunk)
    return measured


#: What each comparison of :func:`_scale_reports` measures, by its name's start.
_METHODS = {
    "graph vs frozen": "predicted: signed path sums through the pruned graph's edges; measured: the "
    "intervention in the frozen local replacement model the graph was built in "
    "(unselected features clamped: they are its error nodes). That model is linear, so both "
    "sides scale with (scale - 1) and every scale gives the same correlations",
    "unpruned graph vs frozen": "predicted: signed path sums through every edge of the unpruned graph; measured: "
    "the same frozen-model intervention (agreement to rounding expected: a gap is a bug)",
    "frozen vs real": "predicted: the intervention's effect in the frozen replacement model; measured: "
    "the same intervention in the real model (nothing frozen)",
    "graph vs real": "predicted: signed path sums through the pruned graph's edges; measured: the "
    "intervention in the real model",
    "activation x gradient vs real": "predicted: (scale - 1) x activation x gradient in the real model (the cheap "
    "baseline, no graph); measured: the intervention in the real model",
}


def _scale_reports(
    base: pd.DataFrame,
    from_pruned: torch.Tensor,
    from_full: torch.Tensor,
    measured: dict[tuple[str, float], torch.Tensor],
    gradient: torch.Tensor,
    scale: float,
    what: str,
) -> dict[str, ValidationReport]:
    """Phase 6 at one scale: the graphs against the frozen and the real model, the frozen
    against the real model, and the activation x gradient baseline against the real model."""
    frozen, real = measured[STAGES[0][0], scale].numpy(), measured[STAGES[-1][0], scale].numpy()
    table = base.assign(
        predicted=from_pruned.numpy(), unpruned_graph=from_full.numpy(),
        pruning_loss=(from_full - from_pruned).numpy(), measured=frozen, real=real,
    )
    tables = {
        "graph vs frozen": table,
        "unpruned graph vs frozen": table.drop(columns=["predicted"]).rename(columns={"unpruned_graph": "predicted"}),
        "frozen vs real": base.assign(predicted=frozen, measured=real),
        "graph vs real": table.drop(columns=["measured"]).rename(columns={"real": "measured"}),
        "activation x gradient vs real": base.assign(
            predicted=(scale - 1.0) * base["activation"].to_numpy() * gradient.numpy(), measured=real
        ),
    }
    return {
        f"{name}, scale {scale:g}": compare(rows, target=what, settings={"scale": scale}, method=_METHODS[name])
        for name, rows in tables.items()
    }


def _stage_reports(
    base: pd.DataFrame, from_pruned: torch.Tensor, measured: dict[tuple[str, float], torch.Tensor], first: float, what: str
) -> dict[str, ValidationReport]:
    """Phase 6 at the first scale: the pruned graph against each partly unfrozen model."""
    return {
        f"graph vs {name}, scale {first:g}": compare(
            base.assign(predicted=from_pruned.numpy(), measured=measured[name, first].numpy()),
            target=what, settings={"scale": first},
            method=f"predicted: signed path sums through the pruned graph's edges; measured: the "
            f"intervention in the frozen model with, cumulatively, {name.removeprefix('+ ')}",
        )
        for name, _ in STAGES[1:-1]
    }


def _basis_of(graph: Graph, given: FeatureBasis | None = None) -> FeatureBasis:
    basis = graph.metadata.get("basis", "neurons")
    if given is not None and given.name == basis:
        return given
    if basis != "neurons":
        raise InvalidInputError(f"validation of a {basis!r} graph needs that basis; only 'neurons' is known here")
    return NeuronBasis()


@torch.no_grad()
def _measure(
    model: Model,
    clean: CleanRun,
    nodes: list[Node],
    token_id: int,
    scale: float,
    live: torch.Tensor,
    unfrozen: frozenset[Unfreeze],
    chunk: int,
) -> torch.Tensor:
    """Change of the demeaned target logit when each node is scaled, ``chunk`` rows a pass."""
    rows = [Intervention()] + [
        Intervention(features={(n.layer, n.pos, n.feature): scale * float(clean.features[n.layer, n.pos, n.feature])})
        for n in nodes
    ]
    values = []
    for start in range(0, len(rows), chunk):
        logits, _ = intervention_pass(model, clean, rows[start : start + chunk], live=live, unfrozen=unfrozen, last_only=True)
        values.append(demeaned_logit(logits[:, -1].double(), token_id))
    out = torch.cat(values)
    return (out[1:] - out[0]).cpu()


def _real_gradient(model: Model, clean: CleanRun, nodes: list[Node], token_id: int) -> torch.Tensor:
    """d target / d feature in the real model (nothing frozen), at each node."""
    with attribution_pass(model, clean, 1, cut=False, frozen=False) as leaves:
        logits = model(clean.tokens)
        demeaned_logit(logits[0, -1], token_id).backward()
    return torch.tensor([leaves.gradient(n.layer, n.pos, n.feature) for n in nodes], dtype=torch.float64)
