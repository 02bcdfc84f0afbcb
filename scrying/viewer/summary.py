"""What a graph page says in words: the sentence it opens with, the gallery's one-line finding,
and each validated node's three numbers, all read from the graph JSON (nothing reruns a model).

Phases of :func:`summarise`:

1. **Sources**: the influence on the outputs of every node of the embedded graph
   (:func:`scrying.attribution.influence.influence`, the rule the sliders use), summed over the
   graph's sources: a path into the output starts at a prompt token or at an error node (what the
   basis leaves unexplained), so their shares add to one.
2. **Validation**: the headline report's scale names the two comparisons a reader needs, the graph
   against the real model and the activation x gradient baseline against the real model
   (:mod:`scrying.attribution.validation`); a Spearman whose interval holds 0 is said to be
   indistinguishable from 0, and a baseline above the graph is said to be above it.
3. **Sentence**: what the answer mostly comes from, the error share, graph vs real beside the
   baseline; component (EAP-IG) graphs: what the circuit recovers and EAP-IG vs exact patching.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

#: How many token sources the sentence names.
TOP_SOURCES = 3


@dataclass(frozen=True)
class Estimate:
    """A Spearman correlation and its interval (``None`` where the report has none)."""

    value: float
    low: float | None
    high: float | None

    def text(self) -> str:
        ci = f" [{self.low:.2f}, {self.high:.2f}]" if self.low is not None and self.high is not None else ""
        return f"{self.value:.2f}{ci}"

    @property
    def holds_zero(self) -> bool:
        return self.low is not None and self.high is not None and self.low <= 0.0 <= self.high


@dataclass(frozen=True)
class Summary:
    """The page's words about one graph. ``sentence``: the opening paragraph; ``finding``: its
    first clause, for the gallery's row; ``graph_vs_real`` and ``baseline``: Spearman of the graph's
    predictions and of activation x gradient against the real model (``None``: not validated, or
    a component graph); ``error_share``: the share of the output's influence that starts at error
    nodes."""

    sentence: str
    finding: str
    graph_vs_real: Estimate | None
    baseline: Estimate | None
    error_share: float | None


def _own_nodes(data: dict[str, Any]) -> list[dict[str, Any]]:
    own = data.get("scrying") or {}
    return own.get("nodes") or [{} for _ in data["nodes"]]


def _kind(node: dict[str, Any], mine: dict[str, Any]) -> str:
    if mine.get("kind"):
        return str(mine["kind"])
    return {"embedding": "embedding", "logit": "logit", "mlp reconstruction error": "error"}.get(node.get("feature_type", ""), "feature")


def node_influence(data: dict[str, Any]) -> list[float]:
    """Each node's influence on the outputs in the embedded graph (phase 1): the viewer's and
    :func:`scrying.attribution.influence.node_influence`'s score, from the JSON's links."""
    from scrying.attribution.influence import influence, normalize_rows

    index = {n["node_id"]: i for i, n in enumerate(data["nodes"])}
    n = len(index)
    adjacency = torch.zeros(n, n, dtype=torch.float64)
    for link in data["links"]:
        adjacency[index[link["target"]], index[link["source"]]] = float(link["weight"])
    weights = torch.tensor(
        [float(node.get("token_prob") or 0.0) if _kind(node, mine) == "logit" else 0.0
         for node, mine in zip(data["nodes"], _own_nodes(data), strict=True)],
        dtype=torch.float64,
    )
    return influence(normalize_rows(adjacency), weights).tolist()


def _estimate(report: dict[str, Any] | None) -> Estimate | None:
    if not report or report.get("spearman") is None:
        return None
    low, high = report.get("spearman_ci") or (None, None)
    return Estimate(float(report["spearman"]), None if low is None else float(low), None if high is None else float(high))


def stored_validation(data: dict[str, Any]) -> dict[str, Any]:
    """The validation a graph JSON stores (``scrying.metadata.validation``; ``{}``: none)."""
    return ((data.get("scrying") or {}).get("metadata") or {}).get("validation") or {}


def validation_pair(validation: dict[str, Any]) -> tuple[Estimate | None, Estimate | None]:
    """(graph vs real, activation x gradient vs real) at the headline's scale (phase 2)."""
    reports = validation.get("reports") or {}
    headline = reports.get(validation.get("headline")) or {}
    if "scale" not in headline:
        return None, None
    scale = float(headline["scale"])
    return _estimate(reports.get(f"graph vs real, scale {scale:g}")), _estimate(reports.get(f"activation x gradient vs real, scale {scale:g}"))


def _target(data: dict[str, Any]) -> str:
    logits = [(n, m) for n, m in zip(data["nodes"], _own_nodes(data), strict=True) if _kind(n, m) == "logit"]
    chosen = [pair for pair in logits if pair[0].get("is_target_logit")] or logits[:1]
    if not chosen:
        return "the output"
    node, mine = chosen[0]
    label = mine.get("label") or node.get("clerp") or node["node_id"]
    token = label.removeprefix("Output ").rsplit(" (p=", 1)[0]
    return f"{token} ({100 * float(node.get('token_prob') or 0.0):.0f}%)"


def _components_summary(data: dict[str, Any], validation: dict[str, Any]) -> Summary:
    meta = (data.get("scrying") or {}).get("metadata") or {}
    headline = (validation.get("reports") or {}).get(validation.get("headline"))
    recovered = (meta.get("scores") or {}).get("circuit_recovers")
    first = (f"The circuit's edges keep {100 * recovered:.0f}% of the change {meta.get('metric', 'the metric')} makes "
             "between the clean and corrupted prompts" if recovered is not None else "No recovered share is stored for this circuit")
    estimate = _estimate(headline)
    check = (f"; its EAP-IG edge scores against exact patching of each edge: Spearman {estimate.text()}"
             + (" (indistinguishable from 0)" if estimate.holds_zero else "")
             if estimate else "; not validated by intervention")
    return Summary(first + check + ".", first + ".", None, None, None)


def summarise(data: dict[str, Any], validation: dict[str, Any] | None = None) -> Summary:
    """The page's sentence and the gallery's finding for graph JSON ``data`` (checked by
    :func:`scrying.viewer.schema.check_graph`) and its ``validation`` (default: the one it
    stores); see the module docstring."""
    validation = validation if validation is not None else stored_validation(data)
    if any(m.get("kind") == "component" for m in _own_nodes(data)):
        return _components_summary(data, validation)
    scores = node_influence(data)
    tokens = list(((data.get("scrying") or {}).get("prompt_tokens")) or data["metadata"].get("prompt_tokens") or [])
    by_token: dict[int, float] = {}
    error = total = 0.0
    for (node, mine), score in zip(zip(data["nodes"], _own_nodes(data), strict=True), scores, strict=True):
        kind = _kind(node, mine)
        if kind == "embedding":
            pos = int(mine.get("pos", node.get("ctx_idx", -1)))
            by_token[pos] = by_token.get(pos, 0.0) + score
            total += score
        elif kind == "error":
            error += score
            total += score
    target = _target(data)
    if total <= 0:
        first = f"{target}: no path from the prompt reaches the output in this graph"
        error_share = None
    else:
        error_share = error / total
        named = sorted(by_token.items(), key=lambda item: -item[1])[:TOP_SOURCES]
        names = ", ".join(
            f"{tokens[pos]!r} ({100 * share / total:.0f}%)" if 0 <= pos < len(tokens) else f"position {pos} ({100 * share / total:.0f}%)"
            for pos, share in named
        )
        first = (f"Of the influence reaching {target} in this graph, {100 * error_share:.0f}% starts at error nodes "
                 f"(what the graph's nodes leave unexplained), the rest at the prompt's tokens, most at {names}")
    graph, baseline = validation_pair(validation)
    if graph is None:
        check = "not validated against the real model"
    else:
        check = f"graph vs real model, Spearman {graph.text()}" + (" (indistinguishable from 0)" if graph.holds_zero else "")
        if baseline is not None:
            side = "below" if baseline.value > graph.value else "at or above"
            check += f", {side} the activation × gradient baseline {baseline.text()}"
    return Summary(f"{first}. Checked by intervention: {check}.", f"{first}.", graph, baseline, error_share)


def node_checks(validation: dict[str, Any] | None) -> dict[str, Any] | None:
    """Each validated node's three numbers, from the headline report's rows of ``validation``
    (``GraphValidation.to_json``): ``{"report": name, "target": what changes, "rows": {node_id:
    [graph, frozen model, real model]}}`` (``None`` when there is none or its rows are not per
    node, as in a component graph's per-edge check)."""
    validation = validation or {}
    name = validation.get("headline")
    report = (validation.get("reports") or {}).get(name) or {}
    rows = {
        row["node_id"]: [row.get("predicted"), row.get("measured"), row.get("real")]
        for row in report.get("rows") or []
        if isinstance(row.get("node_id"), str)
    }
    if not rows:
        return None
    return {"report": name, "target": report.get("target", ""), "rows": rows}
