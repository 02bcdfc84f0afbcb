"""The report of an emergence study: every metric against scale, side by side, with intervals,
the p^L prediction over the measured exact match, the verdict and its rule, in one plotly
figure and one self-contained HTML file (plotly inlined, every string escaped)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from scrying.emergence.metrics import METRICS
from scrying.emergence.verdict import EmergenceSummary
from scrying.html_pages import escape, write_report_page


def figure(
    summary: EmergenceSummary, mechanism: pd.DataFrame | None = None, references: pd.DataFrame | None = None
) -> go.Figure:
    """One panel per metric: mean over items against scale (log axis), 95% intervals; the exact
    match panel also draws the predicted accuracy p^L. With ``mechanism`` (head detector scores
    per member) a last panel draws the largest previous-token and induction scores on the same
    scale axis. With ``references`` (:func:`scrying.emergence.references.reference_curves`) each
    reference model is a separate marker with its interval in every panel, not joined to the
    family's curve."""
    names = [m for m in METRICS if m in summary.metrics and m != "predicted_accuracy"]
    cols = 3
    rows = math.ceil((len(names) + (mechanism is not None)) / cols)
    titles = []
    panels = names + (["mechanism"] if mechanism is not None else [])
    for name in names:
        s = summary.metrics[name]
        titles.append(f"{name.replace('_', ' ')} ({METRICS[name][0]}): B {s.breakthroughness:.2f} [{s.ci[0]:.2f}, {s.ci[1]:.2f}]")
    if mechanism is not None:
        titles.append("mechanism: largest head scores (Olsson et al. 2022)")
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles)
    curves = summary.curves
    for i, name in enumerate(names):
        r, c = divmod(i, cols)
        part = curves[curves.metric == name]
        fig.add_trace(
            go.Scatter(
                x=part.scale, y=part["mean"], mode="lines+markers", name=name, showlegend=False,
                error_y={"type": "data", "symmetric": False, "array": part.ci_high - part["mean"], "arrayminus": part["mean"] - part.ci_low},
                text=part.label, hovertemplate="%{text}<br>scale %{x:.3g}<br>%{y:.4g}<extra></extra>",
            ),
            row=r + 1, col=c + 1,
        )
        if references is not None:
            for j, ref in enumerate(references[references.metric == name].itertuples(index=False)):
                fig.add_trace(
                    go.Scatter(
                        x=[ref.scale], y=[ref.mean], mode="markers",
                        marker={"symbol": "diamond", "size": 10, "color": _REFERENCE_COLOURS[j % len(_REFERENCE_COLOURS)]},
                        error_y={"type": "data", "symmetric": False, "array": [ref.ci_high - ref.mean],
                                 "arrayminus": [ref.mean - ref.ci_low]},
                        name=f"reference: {ref.label}", legendgroup=ref.label, showlegend=i == 0,
                        hovertemplate=f"{escape(ref.label)} (reference)<br>scale %{{x:.3g}}<br>%{{y:.4g}}<extra></extra>",
                    ),
                    row=r + 1, col=c + 1,
                )
        if name == "exact_match":
            predicted = curves[curves.metric == "predicted_accuracy"]
            fig.add_trace(
                go.Scatter(x=predicted.scale, y=predicted["mean"], mode="lines", line={"dash": "dash"},
                           name="predicted p^L", hovertemplate="p^L %{y:.4g}<extra></extra>"),
                row=r + 1, col=c + 1,
            )
        fig.update_xaxes(type="log", title_text="scale", row=r + 1, col=c + 1)
    if mechanism is not None:
        r, c = divmod(len(panels) - 1, cols)
        ordered = mechanism.sort_values("scale")
        for column in ("induction", "previous_token"):
            fig.add_trace(go.Scatter(x=ordered.scale, y=ordered[column], mode="lines+markers", name=f"{column} score",
                                     text=ordered.label, hovertemplate="%{text}<br>%{y:.3f}<extra></extra>"),
                          row=r + 1, col=c + 1)
        fig.update_xaxes(type="log", title_text="scale", row=r + 1, col=c + 1)
    fig.update_annotations(font_size=11)  # the panel titles, which would otherwise overlap
    fig.update_layout(height=320 * rows, title=f"verdict: {summary.verdict}")
    return fig


_JUMPS = {True: "yes", False: "no", None: "undecided"}
_REFERENCE_COLOURS = ("#d62728", "#9467bd", "#8c564b", "#e377c2")
_REFERENCE_METRICS = ("exact_match", "per_token_probability", "target_log_likelihood", "token_edit_distance")


def _reference_table(references: pd.DataFrame) -> str:
    table = references.pivot_table(index=["label", "scale"], columns="metric", values="mean", sort=False)
    head = "".join(f"<th>{escape(m.replace('_', ' '))}</th>" for m in _REFERENCE_METRICS if m in table.columns)
    body = "".join(
        f"<tr><td>{escape(label)}</td><td>{scale:.3g}</td>"
        + "".join(f"<td>{row[m]:.4g}</td>" for m in _REFERENCE_METRICS if m in table.columns)
        + "</tr>"
        for (label, scale), row in table.iterrows()
    )
    return (
        "<p>Reference models, scored on the same items and drawn as separate markers (not part of the family, "
        f"its breakthroughness or its verdict):</p><table><tr><th>reference</th><th>scale</th>{head}</tr>{body}</table>"
    )


def write_report(
    summary: EmergenceSummary,
    path: Path | str,
    *,
    title: str = "Emergence study",
    mechanism: pd.DataFrame | None = None,
    references: pd.DataFrame | None = None,
) -> Path:
    """A self-contained HTML page: verdict, rule, per-metric and per-model tables (and the
    reference models' table), the figure."""
    metric_rows = "".join(
        f"<tr><td>{escape(name)}</td><td>{escape(METRICS[name][0])}</td><td>{s.breakthroughness:.3f}</td>"
        f"<td>[{s.ci[0]:.3f}, {s.ci[1]:.3f}]</td><td>{s.linearity:.3f}</td><td>{_JUMPS[s.jumps]}</td></tr>"
        for name, s in summary.metrics.items()
    )
    labels = dict(zip(summary.curves["model"], summary.curves["label"], strict=True))
    model_rows = "".join(
        f"<tr><td title='{escape(r.model)}'>{escape(labels.get(r.model, r.model))}</td><td>{r.scale:.3g}</td><td>{r.exact_match:.4f} [{r.ci_low:.4f}, {r.ci_high:.4f}]</td>"
        f"<td>{r.predicted_accuracy:.4g}</td><td>{escape(r.within)}</td><td>{escape(r.items_needed)}</td></tr>"
        for r in summary.models.itertuples(index=False)
    )
    plot = pio.to_html(figure(summary, mechanism, references), include_plotlyjs=True, full_html=False)
    reference_table = _reference_table(references) if references is not None and len(references) else ""
    body = (
        f"<p><b>Verdict: {escape(summary.verdict)}</b> over {summary.n_items} items.</p>"
        f"<p>Rule: {escape(summary.rule)}.</p>"
        "<table><tr><th>metric</th><th>kind</th><th>breakthroughness (1 = ramp)</th><th>interval</th>"
        f"<th>linearity R² vs log scale</th><th>jumps</th></tr>{metric_rows}</table>"
        "<p>Exact match per model with its Clopper-Pearson interval, the accuracy p^L predicts, and the items "
        "needed to see one exact match with 95% probability at that accuracy:</p>"
        "<table><tr><th>model</th><th>scale</th><th>exact match</th><th>predicted p^L</th><th>within</th>"
        f"<th>items needed</th></tr>{model_rows}</table>{reference_table}{plot}"
    )
    return write_report_page(path, title, body, summary.to_json())
