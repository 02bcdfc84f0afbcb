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
   That model is linear in a node's value: every node is measured at the first scale, the most
   influential at every scale, and the rest derived (:class:`ValidationConfig`).
4. **(b) Frozen vs real model**: the same interventions in the real model. At the first scale the
   gap is located by unfreezing one thing at a time, cumulatively (:func:`stages`): the
   unselected features (error nodes), then attention patterns, then the final norm's scale (the
   one between the last block and the logits: frozen, it counts a change along the final
   residual stream's own direction, which the real norm divides away), then every norm scale, then the
   basis: for neurons their MLP gates (which *are* the real MLP: one step), for transcoders
   first the features' activity masks (TopK recomputed, the clean reconstruction error kept),
   then the real MLP. The last stage is the real model.
5. **Baseline**: the real model's first-order estimate, ``(scale - 1) x activation x gradient``
   (one backward pass, nothing frozen, the gradient flowing through the real MLP as well as
   the features: for a transcoder, along each feature's decoder row), so a reader sees whether
   the graph beats the cheap attribution.
6. **Report**: one :class:`~scrying.validation_report.ValidationReport` per comparison (Spearman and
   Pearson with bootstrap intervals, slope), in a :class:`GraphValidation`; its text
   (:meth:`GraphValidation.lines`, :meth:`GraphValidation.summary`) says where an interval
   includes 0.

Cost: every stage's interventions (all its scales) are rows of a few batched passes through
:func:`~scrying.attribution.replacement.intervened_targets`, which reads the target column
alone, starts each pass at its earliest node's block from the clean run's residual stream, and
computes a frozen basis's active features only; its agreement with the reference
:func:`~scrying.attribution.replacement.intervention_pass` is tested.
"""

from __future__ import annotations

import logging
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
    checked_clean_run,
    clean_run,
    intervened_targets,
)
from scrying.axes import Model
from scrying.errors import ConfigError, InvalidInputError
from scrying.models.adapter import final_resid, logit_columns
from scrying.prompts import tokenize
from scrying.validation_report import ValidationReport, compare

logger = logging.getLogger(__name__)

#: Cumulative unfreezing stages of phase 4 for an exact basis (neurons; the last one is the
#: real model). A gated MLP's neurons are the MLP: lifting their gates *is* the real MLP, so
#: there is nothing to split.
STAGES: tuple[tuple[str, frozenset[Unfreeze]], ...] = (
    ("frozen", frozenset()),
    ("+ error nodes live", frozenset({"errors"})),
    ("+ attention patterns live", frozenset({"errors", "patterns"})),
    ("+ final norm live", frozenset({"errors", "patterns", "final_norm"})),
    ("+ norm scales live", frozenset({"errors", "patterns", "norms"})),
    ("+ MLP gates live (real model)", frozenset({"errors", "patterns", "norms", "basis"})),
)

#: The stages for an inexact basis (transcoders): the last step split in two, the features'
#: activity masks computed live (the MLP still replaced by the transcoder plus its clean
#: reconstruction error), then the real MLP (the error recomputed: the real model).
INEXACT_STAGES: tuple[tuple[str, frozenset[Unfreeze]], ...] = STAGES[:-1] + (
    ("+ features' masks live", frozenset({"errors", "patterns", "norms", "masks"})),
    ("+ real MLP (real model)", frozenset({"errors", "patterns", "norms", "basis"})),
)


def stages(basis: FeatureBasis) -> tuple[tuple[str, frozenset[Unfreeze]], ...]:
    """The unfreezing stages of ``basis``: :data:`STAGES`, or :data:`INEXACT_STAGES` where the
    basis has an error term of its own."""
    return STAGES if basis.exact else INEXACT_STAGES


@dataclass(frozen=True, kw_only=True)
class ValidationConfig:
    """How many nodes to check (``top_k``), at which ``scales`` (0 ablates, 0.5 halves, 1.5
    amplifies), and how many intervened copies of the prompt per forward pass: at most ``chunk``
    and at most ``chunk_tokens`` tokens in all (copies x prompt length: 64 copies of a 15-token
    prompt, 4 of a 1,024-token one). Rows are sorted by layer, so a pass starts at its earliest
    node's block.

    The frozen model is linear in a node's value (its patterns, norm scales and masks are
    constants), so a node's change at scale ``s`` is its change at the first scale times
    ``(s - 1) / (first - 1)``: every node is measured at the first scale, the
    ``linearity_check`` most influential at every scale, and the others' changes at the other
    scales are derived, unless a checked node departs from the derived value by more than
    ``linearity_tolerance`` of the largest change, in which case every node is measured (and a
    warning logged). The check's largest deviation is reported (``frozen_linearity``)."""

    top_k: int = 100
    scales: tuple[float, ...] = (0.0, 0.5, 1.5)
    chunk: int = 64
    chunk_tokens: int = 4096
    linearity_check: int = 8  # frozen model: nodes measured at every scale (the rest: derived, see below)
    linearity_tolerance: float = 1e-4  # of the largest change (float32 rounding: ~1e-6): beyond it, every scale is measured

    def __post_init__(self) -> None:
        if self.top_k < 2:
            raise ConfigError(f"ValidationConfig.top_k must be >= 2 (a rank correlation needs two), got {self.top_k}")
        if not self.scales or any(s == 1.0 for s in self.scales):
            raise ConfigError(f"ValidationConfig.scales must be non-empty and must not contain 1.0 (no intervention), got {self.scales}")
        if self.chunk < 1:
            raise ConfigError(f"ValidationConfig.chunk must be >= 1, got {self.chunk}")
        if self.chunk_tokens < 1:
            raise ConfigError(f"ValidationConfig.chunk_tokens must be >= 1, got {self.chunk_tokens}")
        if self.linearity_check < 1 or self.linearity_tolerance <= 0:
            raise ConfigError(f"ValidationConfig.linearity_check must be >= 1 and linearity_tolerance > 0, got {self.linearity_check}, {self.linearity_tolerance}")


@dataclass(frozen=True)
class GraphValidation:
    """Every comparison of a graph's check, by name; ``headline`` names the one a summary
    quotes."""

    reports: dict[str, ValidationReport]
    headline: str
    frozen_linearity: dict | None = None  # the frozen model's linearity check (ValidationConfig)

    @property
    def main(self) -> ValidationReport:
        return self.reports[self.headline]

    def summary(self) -> pd.DataFrame:
        """One row per comparison: n, Spearman and Pearson with intervals and whether each
        interval includes 0 (``*_includes_0``: indistinguishable from 0), slope."""
        return pd.DataFrame(
            [
                {
                    "comparison": name,
                    "n": r.n,
                    "spearman": r.spearman.value,
                    "spearman_low": r.spearman.ci_low,
                    "spearman_high": r.spearman.ci_high,
                    "spearman_includes_0": r.indistinguishable_from_zero()["spearman"],
                    "pearson": r.pearson.value,
                    "pearson_low": r.pearson.ci_low,
                    "pearson_high": r.pearson.ci_high,
                    "pearson_includes_0": r.indistinguishable_from_zero()["pearson"],
                    "slope": r.slope,
                }
                for name, r in self.reports.items()
            ]
        )

    def lines(self) -> list[str]:
        """The text report: one line per comparison (:meth:`ValidationReport.describe`), each
        correlation whose interval includes 0 said to be indistinguishable from 0."""
        return [f"{name} (n={report.n}): {report.describe()}" for name, report in self.reports.items()]

    def to_json(self) -> dict:
        out = {"headline": self.headline, "reports": {k: r.to_json() for k, r in self.reports.items()}}
        if self.frozen_linearity is not None:
            out["frozen_linearity"] = self.frozen_linearity
        return out


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
    clean: CleanRun | None = None,
) -> GraphValidation:
    """Intervene on the graph's most influential features (phases 1-6 of the module docstring);
    ``basis``: the one the graph was built in (default: neurons); ``clean``: the prompt's clean
    run in it, where the caller has one (the graph build's)."""
    config = config or ValidationConfig()
    influence = node_influence(graph)
    chosen = _pick(graph, influence, config.top_k)
    target = _target(graph)
    ids = [n.node_id for n in chosen]
    from_pruned = predicted_changes(pruned, ids, target.node_id, config.scales)
    from_full = predicted_changes(graph, ids, target.node_id, config.scales)
    tokens = tokenize(model, graph.prompt)
    basis = _basis_of(graph, basis if basis is not None or clean is None else clean.basis)
    clean = checked_clean_run(clean, tokens, basis) if clean is not None else clean_run(model, tokens, basis)
    steps = stages(clean.basis)
    measured, deviation = _measure_stages(model, clean, graph, chosen, target, config, steps)
    gradient = _real_gradient(model, clean, chosen, target.feature)
    base = pd.DataFrame(
        {
            "node_id": ids,
            "layer": [n.layer for n in chosen],
            "pos": [n.pos for n in chosen],
            "label": [n.label for n in chosen],
            "activation": [n.activation for n in chosen],
            "influence": [float(influence[graph.index[i]]) for i in ids],
        }
    )
    what = f"change of the demeaned logit of {target.label}"
    reports: dict[str, ValidationReport] = {}
    for j, scale in enumerate(config.scales):
        reports |= _scale_reports(base, from_pruned[:, j], from_full[:, j], measured, gradient, scale, what)
    reports |= _stage_reports(base, from_pruned[:, 0], measured, config.scales[0], what, steps)
    linearity = {"checked_nodes": min(config.linearity_check, len(chosen)), "max_relative_deviation": deviation,
                 "tolerance": config.linearity_tolerance} if len(config.scales) > 1 else None
    return GraphValidation(reports, headline=f"graph vs frozen, scale {config.scales[0]:g}", frozen_linearity=linearity)


def _pick(graph: Graph, influence: torch.Tensor, top_k: int) -> list[Node]:
    """Phase 1: the ``top_k`` active feature nodes with the most influence on the logits."""
    features = [i for i, n in enumerate(graph.nodes) if n.kind == "feature" and n.activation]
    if len(features) < 2:
        raise InvalidInputError(f"graph has {len(features)} active feature nodes; validation needs at least 2")
    return [graph.nodes[i] for i in sorted(features, key=lambda i: -float(influence[i]))[:top_k]]


def _measure_stages(
    model: Model,
    clean: CleanRun,
    graph: Graph,
    chosen: list[Node],
    target: Node,
    config: ValidationConfig,
    steps: tuple[tuple[str, frozenset[Unfreeze]], ...],
) -> tuple[dict[tuple[str, float], torch.Tensor], float]:
    """Phases 3-4: the target's change for each chosen node, by ``(stage, scale)``: every scale
    in the frozen model (the graph's features live; the first measured, the others derived by
    linearity and checked: :class:`ValidationConfig`) and in the real model (keyed ``"frozen"``
    and ``"real"``), the first scale at every stage between; and the linearity check's largest
    relative deviation."""
    live = torch.zeros_like(clean.features, dtype=torch.bool)
    for node in (n for n in graph.nodes if n.kind == "feature"):
        live[node.layer, node.pos, node.feature] = True
    measured: dict[tuple[str, float], torch.Tensor] = {}
    chunk = max(1, min(config.chunk, config.chunk_tokens // clean.tokens.shape[-1]))
    deviation = 0.0
    for i, (name, unfrozen) in enumerate(steps):
        ends = i in (0, len(steps) - 1)
        scales = config.scales if ends else config.scales[:1]
        key = ("frozen" if i == 0 else "real") if ends else name
        if i == 0 and len(scales) > 1:
            values, deviation = _measure_linear(model, clean, chosen, target.feature, config, live, chunk)
        else:
            values = _measure(model, clean, chosen, target.feature, scales, live, unfrozen, chunk)
        measured |= {(key, scale): values[:, j] for j, scale in enumerate(scales)}
    return measured, deviation


def _measure_linear(
    model: Model, clean: CleanRun, chosen: list[Node], token_id: int, config: ValidationConfig, live: torch.Tensor, chunk: int
) -> tuple[torch.Tensor, float]:
    """The frozen model's changes at every scale: measured at the first, derived at the others
    and checked on the ``linearity_check`` first nodes (:class:`ValidationConfig`);
    ``(changes [node scale], largest relative deviation of the checked nodes)``."""
    scales = config.scales
    first = _measure(model, clean, chosen, token_id, scales[:1], live, frozenset(), chunk)
    factors = torch.tensor([(s - 1.0) / (scales[0] - 1.0) for s in scales], dtype=first.dtype)
    derived = first * factors
    checked = chosen[: config.linearity_check]
    others = _measure(model, clean, checked, token_id, scales[1:], live, frozenset(), chunk)
    size = float(torch.cat([first.abs().flatten(), others.abs().flatten()]).max())
    deviation = float((others - derived[: len(checked), 1:]).abs().max()) / size if size > 0 else 0.0
    if deviation <= config.linearity_tolerance:
        derived[: len(checked), 1:] = others
        return derived, deviation
    logger.warning("the frozen model departs from linearity by %.3g of the largest change (tolerance %.3g): measuring every scale",
                   deviation, config.linearity_tolerance)
    return _measure(model, clean, chosen, token_id, scales, live, frozenset(), chunk), deviation


#: What each comparison of :func:`_scale_reports` measures, by its name's start.
_METHODS = {
    "graph vs frozen": "predicted: signed path sums through the pruned graph's edges; measured: the "
    "intervention in the frozen local replacement model the graph was built in "
    "(unselected features clamped: they are its error nodes). That model is linear, so both "
    "sides scale with (scale - 1) and every scale gives the same correlations; at scales after "
    "the first, all but the most influential nodes' changes are derived from the first by that "
    "linearity, which the measured ones check (frozen_linearity)",
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
    frozen, real = measured["frozen", scale].numpy(), measured["real", scale].numpy()
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
    base: pd.DataFrame,
    from_pruned: torch.Tensor,
    measured: dict[tuple[str, float], torch.Tensor],
    first: float,
    what: str,
    steps: tuple[tuple[str, frozenset[Unfreeze]], ...],
) -> dict[str, ValidationReport]:
    """Phase 6 at the first scale: the pruned graph against each partly unfrozen model."""
    return {
        f"graph vs {name}, scale {first:g}": compare(
            base.assign(predicted=from_pruned.numpy(), measured=measured[name, first].numpy()),
            target=what, settings={"scale": first},
            method=f"predicted: signed path sums through the pruned graph's edges; measured: the "
            f"intervention in the frozen model with, cumulatively, {name.removeprefix('+ ')}",
        )
        for name, _ in steps[1:-1]
    }


def _basis_of(graph: Graph, given: FeatureBasis | None = None) -> FeatureBasis:
    basis = graph.metadata.get("basis", "neurons")
    if given is not None and given.name == basis:
        return given
    if basis != "neurons":
        raise InvalidInputError(f"validation of a {basis!r} graph needs that basis; only 'neurons' is known here")
    return NeuronBasis()


def _measure(
    model: Model,
    clean: CleanRun,
    nodes: list[Node],
    token_id: int,
    scales: tuple[float, ...],
    live: torch.Tensor,
    unfrozen: frozenset[Unfreeze],
    chunk: int,
) -> torch.Tensor:
    """Change of the demeaned target logit when each node is scaled by each of ``scales``
    (``[node scale]``): one row per (node, scale) plus the unintervened row, sorted by layer so
    that each pass of ``chunk`` rows starts at its earliest node's block
    (:func:`~scrying.attribution.replacement.intervened_targets`: the target column alone)."""
    rows = [
        (n.layer, j, k, Intervention(features={(n.layer, n.pos, n.feature): s * float(clean.features[n.layer, n.pos, n.feature])}))
        for j, n in enumerate(nodes)
        for k, s in enumerate(scales)
    ]
    rows.sort(key=lambda r: r[0])
    column = torch.tensor([token_id])
    batches = [[Intervention()] + [r[3] for r in rows[: chunk - 1]]]
    batches += [[r[3] for r in rows[start : start + chunk]] for start in range(chunk - 1, len(rows), chunk)]
    values = torch.cat([intervened_targets(model, clean, b, column, live=live, unfrozen=unfrozen)[:, 0].double() for b in batches])
    out = torch.empty(len(nodes), len(scales), dtype=torch.float64)
    for (_, j, k, _), value in zip(rows, values[1:], strict=True):
        out[j, k] = value - values[0]
    return out


def _real_gradient(model: Model, clean: CleanRun, nodes: list[Node], token_id: int) -> torch.Tensor:
    """d target / d feature in the real model (nothing frozen), at each node: the demeaned
    target logit at the last position read from its unembedding column and mean row."""
    with attribution_pass(model, clean, 1, cut=False, frozen=False) as leaves:
        resid = final_resid(model, clean.tokens)[:, -1]
        logit_columns(model, resid, torch.tensor([[token_id]]), demean=True).sum().backward()
    return torch.tensor([leaves.gradient(n.layer, n.pos, n.feature) for n in nodes], dtype=torch.float64)
