"""The page's figures beside the graph: scores and the validation by intervention, each figure
with one sentence saying what it means, and the predicted-vs-measured scatter drawn as SVG; and
what the page says in words (:func:`summarise`): the sentence it opens with, the gallery's
one-line finding, and each validated node's three numbers (:func:`node_checks`).

Phases of :func:`summarise` (nothing reruns a model):

1. **Sources**: the influence on the outputs of every node of the embedded graph
   (:func:`scrying.attribution.influence.influence`, the rule the sliders use), summed over the
   graph's sources: a path into the output starts at a prompt token or at an error node (what the
   basis leaves unexplained), so their shares add to one.
2. **Validation**: the headline report's scale names the two comparisons a reader needs, the graph
   against the real model and the activation x gradient baseline against the real model
   (:mod:`scrying.attribution.validation`); a Spearman whose interval holds 0 is said to be
   indistinguishable from 0, and a baseline above the graph is said to be above it.
3. **Sentence**: the error share and the tokens that carry most of the rest, graph vs real beside
   the baseline; component (EAP-IG) graphs: what the circuit recovers and EAP-IG vs exact patching.

Input is what the graph JSON stores (``scrying.metadata``: ``scores``, ``validation`` as
:meth:`scrying.attribution.validation.GraphValidation.to_json` writes it), its fields checked by
:mod:`~scrying.viewer.schema` before it comes here. Every string is escaped; numbers are
formatted here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from scrying.errors import InvalidInputError
from scrying.html_pages import escape
from scrying.path_influence import influence, normalize_rows
from scrying.validation_report import has_unfreezing, unfreezing_against_real
from scrying.viewer.schema import is_number

#: What each score or correlation means, one sentence each.
MEANINGS = {
    "replacement_score_unselected_as_error": "Share of the influence on the output that reaches it from the prompt's "
    "tokens rather than from error nodes (here every neuron not selected as a node counts as error).",
    "completeness_score_unselected_as_error": "Share of each node's input, weighted by the node's influence, that "
    "comes from nodes of the graph rather than from error nodes (unselected neurons counted as error).",
    "replacement_score_unselected_excluded": "The replacement score when unselected neurons count as neither token "
    "nor error, as in circuit-tracer (1 for an exact basis: neurons leave no reconstruction error).",
    "completeness_score_unselected_excluded": "The completeness score with unselected neurons counted as neither "
    "token nor error, as in circuit-tracer.",
    "circuit_recovers": "Fraction of the clean-minus-corrupt metric the circuit's edges keep when every other edge "
    "is corrupted (exact patching).",
    "spearman": "Spearman: do the interventions the graph predicts to matter most also matter most when measured "
    "(rank agreement, 1 = same order)?",
    "pearson": "Pearson: linear agreement of predicted and measured effects, in their units.",
    "slope": "Slope: measured change per unit of predicted change (1 = the graph gets the sizes right, "
    "below 1 = it overstates them).",
}


#: What a page shows for a missing value (never "undefined").
MISSING = "— (not computed for this graph)"


def _fmt(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(value)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(row.get(c))}</td>" for c in columns) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def scores_html(scores: dict[str, int | float | None], facts: dict[str, Any]) -> str:
    """The graph's facts and scores, each score with its meaning."""
    items = "".join(
        f"<dt>{escape(name.replace('_', ' '))}: {_fmt(value)}</dt><dd>{escape(MEANINGS.get(name, ''))}</dd>"
        for name, value in scores.items()
    )
    return (
        "<section class='report' id='scores'><h2>Graph and scores</h2>"
        + table([{"property": k, "value": v} for k, v in facts.items()], ["property", "value"])
        + f"<dl>{items}</dl></section>"
    )


def _estimate(value: int | float | None, ci: list[int | float | None] | None) -> str:
    if value is None:
        return MISSING
    low, high = ci or (None, None)
    return f"{value:.3f}" + (f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else "")


def scatter_svg(rows: list[dict[str, Any]], *, size: int = 300) -> str:
    """Predicted (x) against measured (y), one dot per intervention, with the diagonal y = x."""
    points = [
        (float(r["predicted"]), float(r["measured"]))
        for r in rows
        if is_number(r.get("predicted")) and is_number(r.get("measured"))
    ]
    if not points:
        return "<p>No interventions to plot.</p>"
    values = [v for p in points for v in p]
    low, high = min(values), max(values)
    if high == low:
        low, high = low - 1, high + 1
    pad = 0.05 * (high - low)
    low, high = low - pad, high + pad
    m, inner = 40, size - 50

    def sx(v: float) -> float:
        return m + inner * (v - low) / (high - low)

    def sy(v: float) -> float:
        return size - m + 10 - inner * (v - low) / (high - low)

    dots = "".join(f"<circle class='dot' r='3.5' cx='{sx(x):.1f}' cy='{sy(y):.1f}'/>" for x, y in points)
    return (
        f"<svg class='scatter' width='{size}' height='{size}' role='img' aria-label='predicted against measured'>"
        f"<rect class='frame' x='{m}' y='{size - m + 10 - inner}' width='{inner}' height='{inner}'/>"
        f"<line class='diag' x1='{sx(low):.1f}' y1='{sy(low):.1f}' x2='{sx(high):.1f}' y2='{sy(high):.1f}'/>"
        f"{dots}"
        f"<text x='{m + inner / 2}' y='{size - 4}' text-anchor='middle'>predicted by the graph</text>"
        f"<text x='12' y='{size / 2}' text-anchor='middle' transform='rotate(-90 12 {size / 2})'>measured</text>"
        f"<text x='{m}' y='{size - m + 24}'>{low:.3g}</text>"
        f"<text x='{m + inner}' y='{size - m + 24}' text-anchor='end'>{high:.3g}</text>"
        "</svg>"
    )


def validation_html(validation: dict[str, Any]) -> str:
    """A validation (``GraphValidation.to_json``): the headline's scatter and what it compares,
    one summary row per comparison, the meaning of each figure, and the headline's table."""
    reports = validation["reports"]
    headline = reports[validation["headline"]]
    rows, methods = [], {}
    for name, report in reports.items():
        rows.append(
            {
                "comparison": name,
                "n": len(report["rows"]),
                "Spearman": _estimate(report["spearman"], report.get("spearman_ci")),
                "Pearson": _estimate(report["pearson"], report.get("pearson_ci")),
                "slope": MISSING if report["slope"] is None else f"{report['slope']:.3f}",
            }
        )
        methods.setdefault(report["method"], []).append(name)
    confidence = int(round(100 * headline.get("confidence", 0.95)))
    meanings = "".join(f"<li>{escape(MEANINGS[k])}</li>" for k in ("spearman", "pearson", "slope"))
    columns = list(headline["rows"][0].keys()) if headline["rows"] else []
    return (
        "<section class='report' id='validation'><h2>Validation by intervention</h2>"
        f"<p>Target: {escape(headline['target'])}. Headline comparison: <b>{escape(validation['headline'])}</b> "
        f"(Spearman {_estimate(headline['spearman'], headline.get('spearman_ci'))}, slope "
        f"{MISSING if headline['slope'] is None else format(headline['slope'], '.3f')}).</p>"
        "<div class='columns'>"
        f"<div>{scatter_svg(headline['rows'])}<p>Each dot is one intervention; on the dashed line the graph "
        "predicted exactly what was measured.</p></div>"
        f"<div><ul>{meanings}</ul>"
        f"<p>Predicted vs measured, with {confidence}% bootstrap intervals over the interventions:</p>"
        + table(rows, ["comparison", "n", "Spearman", "Pearson", "slope"])
        + "<ul>"
        + "".join(f"<li><b>{escape(', '.join(names))}</b>: {escape(method)}.</li>" for method, names in methods.items())
        + "</ul></div></div>"
        + _unfreezing_html(validation)
        + f"<details><summary>{escape(validation['headline'])}: every intervention</summary>"
        + table(headline["rows"], columns)
        + "</details></section>"
    )


def _unfreezing_html(validation: dict[str, Any]) -> str:
    """A feature graph's models of the unfreezing, each against the real one
    (:func:`~scrying.validation_report.unfreezing_against_real`); nothing for other validations."""
    if not has_unfreezing(validation):
        return ""
    try:
        stages = unfreezing_against_real(validation)
    except InvalidInputError as err:  # a hand-written validation the schema accepts (rows without node ids or numbers)
        return f"<h3>Where the frozen model departs from the real one</h3><p>Not shown: {escape(str(err))}.</p>"
    rows = [{"model": name, "n": v["n"], "Spearman against the real model": _estimate(v["spearman"], [v["low"], v["high"]]),
             "against the model before": "—" if v["moved"] is None else f"{v['moved']:.3f}"} for name, v in stages.items()]
    return ("<h3>Where the frozen model departs from the real one</h3>"
            "<p>The same interventions in the frozen model, then with one thing after another unfrozen (cumulatively), "
            "each ranked against the real model: the step that raises the Spearman most is what the frozen model gets "
            "most wrong.</p>" + table(rows, ["model", "n", "Spearman against the real model", "against the model before"]))


# ---------------------------------------------------------------------- the page in words
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
    :func:`scrying.attribution.influence.node_influence`'s score (one rule, :mod:`scrying.path_influence`), from the JSON's links."""
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


def _spearman_of(report: dict[str, Any] | None) -> Estimate | None:
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
    return _spearman_of(reports.get(f"graph vs real, scale {scale:g}")), _spearman_of(reports.get(f"activation x gradient vs real, scale {scale:g}"))


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
    first = (f"The circuit's edges keep {100 * recovered:.0f}% of the change {meta.get('metric') or 'the metric'} makes "
             "between the clean and corrupted prompts" if recovered is not None else "No recovered share is stored for this circuit")
    estimate = _spearman_of(headline)
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
