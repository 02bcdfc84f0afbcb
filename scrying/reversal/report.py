"""The report of a reversal probe: forward and reverse accuracy per relation with intervals,
the paired test, and the pairs known forward but not in reverse, in one self-contained HTML page
(plotly inlined, every string escaped)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from scrying.html_pages import escape, write_report_page
from scrying.reversal.records import PairRecord
from scrying.reversal.summary import known_one_way

_LABELS = {"exact": "greedy exact match", "top1": "top-1 among random distractors",
           "top1_hard": "top-1 among hard distractors"}
_SHOWN = ("exact", "top1", "top1_hard")


def figure(table: pd.DataFrame) -> go.Figure:
    """Three panels (exact match, top-1 among random and among hard distractors): forward and
    reverse bars per relation with 95% intervals; top-1 chance drawn as a marker."""
    fig = make_subplots(rows=1, cols=len(_SHOWN), subplot_titles=[_LABELS[m] for m in _SHOWN])
    colors = {"forward": "#1f77b4", "reverse": "#d62728"}
    for col, measure in enumerate(_SHOWN, start=1):
        for direction in ("forward", "reverse"):
            key = f"{direction}_{measure}"
            fig.add_trace(
                go.Bar(x=table.relation, y=table[key], name=direction, marker_color=colors[direction],
                       showlegend=col == 1, legendgroup=direction,
                       error_y={"type": "data", "symmetric": False, "array": table[key + "_high"] - table[key],
                                "arrayminus": table[key] - table[key + "_low"]},
                       hovertemplate=f"%{{x}} {direction}<br>%{{y:.3f}}<extra></extra>"),
                row=1, col=col,
            )
        if measure != "exact":
            fig.add_trace(go.Scatter(x=table.relation, y=table.reverse_chance, mode="markers", name="chance",
                                     showlegend=measure == "top1", marker={"symbol": "line-ew-open", "size": 30, "color": "black"}),
                          row=1, col=col)
        fig.update_yaxes(range=[0, 1.05], title_text="accuracy", row=1, col=col)
    fig.update_layout(barmode="group", height=420)
    return fig


def lens_figure(lens: pd.DataFrame) -> go.Figure:
    """Per layer and direction: the median log-probability of the answer's first token under the
    logit lens, and the share of prompts where it is within the top 10, over the pairs decoded."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["median log-prob of the first answer token",
                                                        "share with the first answer token in the top 10"])
    colors = {"forward": "#1f77b4", "reverse": "#d62728"}
    for direction, part in lens.groupby("direction"):
        per_layer = part.groupby("layer")
        fig.add_trace(go.Scatter(x=list(per_layer.groups), y=per_layer.logprob.median(), name=direction,
                                 mode="lines+markers", line={"color": colors.get(direction)}), row=1, col=1)
        fig.add_trace(go.Scatter(x=list(per_layer.groups), y=per_layer["rank"].apply(lambda r: float((r <= 10).mean())),
                                 name=direction, showlegend=False, mode="lines+markers",
                                 line={"color": colors.get(direction)}), row=1, col=2)
    fig.update_xaxes(title_text="layer (residual stream after the block)")
    fig.update_layout(height=380)
    return fig


def patching_figure(summary: pd.DataFrame) -> go.Figure:
    """Per block and direction: the mean indirect effect of the subject's last-token state
    (:func:`scrying.reversal.causal_tracing.trace_summary`) with its 95% interval."""
    fig = go.Figure()
    colors = {"forward": "#1f77b4", "reverse": "#d62728"}
    for direction, part in summary.groupby("direction"):
        fig.add_trace(go.Scatter(
            x=part.layer, y=part.indirect_effect, name=direction, mode="lines+markers", line={"color": colors.get(direction)},
            error_y={"type": "data", "symmetric": False, "array": part.ci_high - part.indirect_effect,
                     "arrayminus": part.indirect_effect - part.ci_low},
        ))
    fig.update_xaxes(title_text="block whose input is restored at the subject's last token")
    fig.update_yaxes(title_text="p(answer) restored − corrupted")
    fig.update_layout(height=380)
    return fig


def write_report(
    table: pd.DataFrame, records: list[PairRecord], path: Path | str, *, title: str = "Reversal-curse probe",
    graphs: dict[str, str] | None = None, lens: pd.DataFrame | None = None, patching: pd.DataFrame | None = None,
) -> Path:
    """A self-contained HTML page: the summary table, the figure, the pairs known forward (top-1)
    but not in reverse, the logit lens over them (``lens``: :func:`scrying.reversal.lens.lens_table`)
    causal tracing of their subject tokens (``patching``:
    :func:`scrying.reversal.causal_tracing.causal_trace_table`) and links to attribution graphs
    (``graphs``: label -> relative path)."""
    summary_rows = "".join(
        f"<tr><td>{escape(r.relation)}</td><td>{r.n}</td>"
        + "".join(
            f"<td>{r[f'forward_{m}']:.2f} [{r[f'forward_{m}_low']:.2f}, {r[f'forward_{m}_high']:.2f}]</td>"
            f"<td>{r[f'reverse_{m}']:.2f} [{r[f'reverse_{m}_low']:.2f}, {r[f'reverse_{m}_high']:.2f}]</td>"
            f"<td>{r[f'diff_{m}']:+.2f} [{r[f'diff_{m}_low']:+.2f}, {r[f'diff_{m}_high']:+.2f}], p={r[f'p_{m}']:.3g}</td>"
            for m in _SHOWN
        )
        + f"<td>{r.forward_mean_logprob:.2f} / {r.reverse_mean_logprob:.2f}</td></tr>"
        for _, r in table.iterrows()
    )
    gap = [records[i] for i in known_one_way(records)]
    gap_rows = "".join(
        f"<tr><td>{escape(r.relation)}</td><td>{escape(r.forward.prompt)} <b>{escape(r.b)}</b></td>"
        f"<td>{r.forward.rank}/{r.forward.n_candidates}</td>"
        f"<td>{escape(r.reverse.prompt)} <b>{escape(r.a)}</b></td>"
        f"<td>{r.reverse.rank}/{r.reverse.n_candidates}</td><td>{escape(r.reverse.greedy)}</td></tr>"
        for r in gap
    )
    links = "".join(f"<li><a href='{escape(href)}'>{escape(label)}</a></li>" for label, href in (graphs or {}).items())
    plot = pio.to_html(figure(table), include_plotlyjs=True, full_html=False)
    lens_plot = "" if lens is None or lens.empty else (
        f"<h2>Logit lens over these pairs ({lens['index'].nunique()} pairs)</h2><p>The residual stream after each block at "
        "the last prompt position, decoded with the model's final norm and unembedding.</p>"
        + pio.to_html(lens_figure(lens), include_plotlyjs=False, full_html=False)
    )
    patching_plot = ""
    if patching is not None and not patching.empty:
        from scrying.reversal.causal_tracing import CausalTraceConfig, trace_summary

        summary = trace_summary(patching)
        noise = CausalTraceConfig()  # the settings `scrying reversal --lens` traces with
        clean = summary.groupby("direction")[["p_clean", "p_corrupt"]].first()
        means = "; ".join(f"{d}: clean {r.p_clean:.3f}, corrupted {r.p_corrupt:.3f}" for d, r in clean.iterrows())
        patching_plot = (
            f"<h2>Causal tracing of the subject over these pairs ({patching['index'].nunique()} pairs)</h2><p>The subject's "
            f"token embeddings get Gaussian noise ({noise.noise:g} standard deviations of the subject embeddings, "
            f"{noise.samples} draws); the "
            "residual stream entering one block at the subject's last token is then set back to its clean value. "
            "Plotted: how much that restores the probability of the answer's first token, averaged over pairs "
            f"with 95% bootstrap intervals (Meng et al. 2022). Mean answer probability {escape(means)}.</p>"
            + pio.to_html(patching_figure(summary), include_plotlyjs=False, full_html=False)
        )
    m_heads = "".join(f"<th>{escape(_LABELS[m])} forward</th><th>reverse</th><th>forward − reverse</th>" for m in _SHOWN)
    body = (
        "<p>Per relation: accuracy in each direction with 95% percentile-bootstrap intervals over pairs; "
        "forward minus reverse over the same pairs with its interval and two-sided sign-flip permutation p-value.</p>"
        f"<table><tr><th>relation</th><th>pairs</th>{m_heads}<th>mean log-prob per token fwd / rev</th></tr>{summary_rows}</table>"
        f"{plot}"
        + (f"<h2>Attribution graphs</h2><ul>{links}</ul>" if links else "")
        + f"<h2>Known forward (top-1), not in reverse: {len(gap)} pairs</h2>"
        "<table><tr><th>relation</th><th>forward prompt</th><th>rank</th><th>reverse prompt</th><th>rank</th>"
        f"<th>reverse greedy</th></tr>{gap_rows}</table>{lens_plot}{patching_plot}"
    )
    return write_report_page(path, title, body, table.to_dict(orient="records"))
