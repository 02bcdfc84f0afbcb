"""The report of an emergence study: its finding in one sentence at the top; every metric
against scale, side by side, with intervals; predict-and-compare (the smooth continuous fit
raised to L over the measured exact match) and the scaling law; the verdict and its rule; as
plotly figures (:func:`figure`, :func:`prediction_figure`, :func:`scaling_figure`) and one
self-contained HTML file (plotly inlined, every string escaped)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from scrying.emergence.metrics import METRICS
from scrying.emergence.verdict import EmergenceSummary
from scrying.errors import InvalidInputError
from scrying.html_pages import escape, write_report_page

SCALE_TITLE = "scale (log axis)"


def figure(
    summary: EmergenceSummary, mechanism: pd.DataFrame | None = None, references: pd.DataFrame | None = None,
    *, scale_title: str = SCALE_TITLE,
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
        fig.update_xaxes(type="log", title_text=scale_title, row=r + 1, col=c + 1)
        fig.update_yaxes(title_text=_UNITS.get(name, name.replace("_", " ")), row=r + 1, col=c + 1)
    if mechanism is not None:
        r, c = divmod(len(panels) - 1, cols)
        ordered = mechanism.sort_values("scale")
        for column in ("induction", "previous_token"):
            fig.add_trace(go.Scatter(x=ordered.scale, y=ordered[column], mode="lines+markers", name=f"{column} score",
                                     text=ordered.label, hovertemplate="%{text}<br>%{y:.3f}<extra></extra>"),
                          row=r + 1, col=c + 1)
        fig.update_xaxes(type="log", title_text=scale_title, row=r + 1, col=c + 1)
        fig.update_yaxes(title_text="head score (0-1)", row=r + 1, col=c + 1)
    fig.update_annotations(font_size=11)  # the panel titles, which would otherwise overlap
    fig.update_layout(height=320 * rows, title=f"verdict: {summary.verdict}: every metric against scale")
    return fig


_UNITS = {
    "exact_match": "exact match (fraction of items)", "sampled_exact_match": "sampled exact match (fraction)",
    "multiple_choice_grade": "grade (fraction of items)", "token_edit_distance": "edit distance (tokens)",
    "brier_score": "Brier score", "per_token_probability": "per-token probability",
    "target_log_likelihood": "log-likelihood (nats)", "per_token_accuracy": "per-token accuracy (fraction)",
    "per_token_argmax_accuracy": "per-token argmax accuracy, teacher-forced (fraction)",
}


def _band(fig: go.Figure, x: pd.Series, low: pd.Series, high: pd.Series, colour: str, name: str, **where: int) -> None:
    fig.add_trace(go.Scatter(x=list(x) + list(x)[::-1], y=list(high) + list(low)[::-1], fill="toself", fillcolor=colour,
                             line={"width": 0}, opacity=0.25, hoverinfo="skip", name=name, showlegend=False), **where)


def prediction_figure(summary: EmergenceSummary, *, scale_title: str = SCALE_TITLE) -> go.Figure:
    """Predict-and-compare (Schaeffer et al. 2023, Figs. 2-3): left, the continuous metric and
    its smooth fit against scale; right, the measured exact match beside the smooth fit raised to
    L and the measured continuous metric raised to L, each with its 95% band."""
    prediction = summary.prediction
    if prediction is None:
        raise InvalidInputError("this study has no exact match, so nothing to predict")
    t = prediction.table
    measured = prediction.measured.replace("_", " ")
    continuous = prediction.continuous.replace("_", " ")
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        f"{continuous} and its smooth fit (degree {prediction.degree} in log scale)",
        f"{measured}: measured vs predicted from {continuous}^L"))
    fig.add_trace(go.Scatter(x=t.scale, y=t.continuous, mode="markers", name=f"{continuous} (measured)", text=t.label,
                             hovertemplate="%{text}<br>%{y:.4g}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=t.scale, y=t.smooth_continuous, mode="lines", name="smooth fit"), row=1, col=1)
    for name, colour, label in (("measured", "#1f77b4", f"{measured} (measured)"),
                                ("smooth", "#ff7f0e", f"smooth fit^L (reproduces: {prediction.smooth_reproduces})"),
                                ("direct", "#2ca02c", f"measured {continuous}^L (reproduces: {prediction.direct_reproduces})")):
        _band(fig, t.scale, t[f"{name}_low"], t[f"{name}_high"], colour, label, row=1, col=2)
        fig.add_trace(go.Scatter(x=t.scale, y=t[name], mode="lines+markers" if name == "measured" else "lines",
                                 line={"color": colour, "dash": None if name == "measured" else "dash"}, name=label,
                                 text=t.label, hovertemplate="%{text}<br>%{y:.4g}<extra></extra>"), row=1, col=2)
    for col, title in ((1, continuous), (2, f"{measured} (fraction of items)")):
        fig.update_xaxes(type="log", title_text=scale_title, row=1, col=col)
        fig.update_yaxes(title_text=title, range=[-0.02, 1.02], row=1, col=col)
    fig.update_annotations(font_size=11)
    fig.update_layout(height=380, title=f"Predict and compare ({prediction.mode} outputs): {summary.verdict}")
    return fig


def scaling_figure(summary: EmergenceSummary, *, scale_title: str = SCALE_TITLE) -> go.Figure:
    """Per-token loss against scale in log-log axes with the fitted power law and its band."""
    law = summary.scaling
    if law is None:
        raise InvalidInputError("this study has no per-token probabilities, so no scaling law")
    t = law.table
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=t.scale, y=t.loss, mode="markers", name="per-token loss", text=t.label,
        error_y={"type": "data", "symmetric": False, "array": t.loss_high - t.loss, "arrayminus": t.loss - t.loss_low},
        hovertemplate="%{text}<br>%{y:.4g} nats<extra></extra>"))
    _band(fig, t.scale, t.fitted_low, t.fitted_high, "#ff7f0e", "fit band")
    fig.add_trace(go.Scatter(x=t.scale, y=t.fitted, mode="lines", line={"color": "#ff7f0e"},
                             name=f"L = {law.a:.3g} C^-{law.alpha:.3f} (alpha [{law.alpha_ci[0]:.3f}, {law.alpha_ci[1]:.3f}], R² {law.r2:.2f})"))
    fig.update_xaxes(type="log", title_text=scale_title)
    fig.update_yaxes(type="log", title_text="per-token loss of the target (nats, log axis)")
    fig.update_layout(height=380, title="Scaling law: per-token loss against scale (power law fit)")
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
    scale_title: str = SCALE_TITLE,
    preface: str = "",
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
    plot = pio.to_html(figure(summary, mechanism, references, scale_title=scale_title), include_plotlyjs=True, full_html=False)
    if summary.prediction is not None:
        plot += pio.to_html(prediction_figure(summary, scale_title=scale_title), include_plotlyjs=False, full_html=False)
    if summary.scaling is not None:
        law = summary.scaling
        plot += (f"<p>Scaling law: per-token loss = {law.a:.3g} &times; scale<sup>-{law.alpha:.3f}</sup>, alpha 95% "
                 f"interval [{law.alpha_ci[0]:.3f}, {law.alpha_ci[1]:.3f}], R² {law.r2:.2f} in log-log axes.</p>")
        plot += pio.to_html(scaling_figure(summary, scale_title=scale_title), include_plotlyjs=False, full_html=False)
    reference_table = _reference_table(references) if references is not None and len(references) else ""
    body = (
        f"<p><b>Finding:</b> {escape(summary.finding)}</p>{preface}"
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
