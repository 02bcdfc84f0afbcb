"""The page's figures beside the graph: scores and the validation by intervention, each figure
with one sentence saying what it means, and the predicted-vs-measured scatter drawn as SVG.

Input is what the graph JSON stores (``scrying.metadata``: ``scores``, ``validation`` as
:meth:`scrying.attribution.validation.GraphValidation.to_json` writes it), its fields checked by
:mod:`~scrying.viewer.schema` before it comes here. Every string is escaped; numbers are
formatted here.
"""

from __future__ import annotations

from typing import Any

from scrying.html_pages import escape
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
        f"<details><summary>{escape(validation['headline'])}: every intervention</summary>"
        + table(headline["rows"], columns)
        + "</details></section>"
    )
