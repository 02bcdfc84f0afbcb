"""The report of a reversal probe: forward and reverse accuracy per relation with intervals,
the paired test, the pairs known forward but not in reverse, and (given) the linear probes of
where each direction is stored, in one self-contained HTML page (plotly inlined, every string
escaped)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from scrying.html_pages import escape, write_report_page
from scrying.reversal.experiment import CONDITION_LABELS
from scrying.reversal.records import PairRecord
from scrying.reversal.summary import interval_cell, known_one_way

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


def probe_figure(summary: pd.DataFrame) -> go.Figure:
    """One panel per relation of :func:`scrying.reversal.linear_probes.probe_summary` (``all``
    last): held-out probe accuracy per layer, forward (``b`` read at ``a``'s last token) and
    reverse (``a`` at ``b``'s), with 95% intervals; the shuffled-label control dashed; chance
    dotted. Layer ``-1`` is the token embeddings."""
    relations = list(dict.fromkeys(summary.relation))
    fig = make_subplots(rows=1, cols=len(relations), subplot_titles=relations, shared_yaxes=True)
    colors = {"forward": "#1f77b4", "reverse": "#d62728"}
    for col, relation in enumerate(relations, start=1):
        part = summary[summary.relation == relation]
        for direction, cell in part.groupby("direction", sort=True):
            first = col == 1
            fig.add_trace(go.Scatter(
                x=cell.layer.tolist(), y=cell.accuracy.tolist(), mode="lines+markers", name=f"{direction} probe", legendgroup=direction,
                showlegend=first, line={"color": colors.get(direction)},
                error_y={"type": "data", "symmetric": False, "array": (cell.accuracy_high - cell.accuracy).tolist(),
                         "arrayminus": (cell.accuracy - cell.accuracy_low).tolist()},
                hovertemplate=f"{relation} {direction}, layer %{{x}}<br>held-out accuracy %{{y:.3f}}<extra></extra>"),
                row=1, col=col)
            fig.add_trace(go.Scatter(
                x=cell.layer.tolist(), y=cell.shuffled.tolist(), mode="lines", name=f"{direction} shuffled labels", legendgroup=direction,
                showlegend=first, line={"color": colors.get(direction), "dash": "dash"},
                hovertemplate=f"{relation} {direction} shuffled, layer %{{x}}<br>%{{y:.3f}}<extra></extra>"),
                row=1, col=col)
            fig.add_trace(go.Scatter(
                x=cell.layer.tolist(), y=cell.chance.tolist(), mode="lines", name=f"{direction} chance", legendgroup=direction,
                showlegend=first, line={"color": colors.get(direction), "dash": "dot", "width": 1}),
                row=1, col=col)
        fig.update_xaxes(title_text="layer (-1: embeddings)", row=1, col=col)
    fig.update_yaxes(range=[0, 1.05], title_text="held-out top-1 accuracy", row=1, col=1)
    fig.update_layout(height=420)
    return fig


def probe_text_table(summary: pd.DataFrame, relation: str | None = None) -> str:
    """Per layer: held-out accuracy [95% interval] forward and reverse, the shuffled controls and
    chance, for ``relation`` (default: ``all`` when present, else the first)."""
    relation = relation or ("all" if "all" in set(summary.relation) else summary.relation.iloc[0])
    part = summary[summary.relation == relation]
    by = {(r.direction, r.layer): r for r in part.itertuples()}
    layers = sorted(set(part.layer))
    n = {d: int(part[part.direction == d].n.iloc[0]) for d in ("forward", "reverse")}
    lines = [f"linear probes, {relation}: {n['forward']} pairs forward, {n['reverse']} reverse (layer -1: token embeddings)",
             f"{'layer':>5}  {'forward':>18} {'shuffled':>8} {'chance':>6}  {'reverse':>18} {'shuffled':>8} {'chance':>6}"]
    for layer in layers:
        cells = []
        for d in ("forward", "reverse"):
            r = by[d, layer]
            cells.append(f"{r.accuracy:.2f} [{r.accuracy_low:.2f}, {r.accuracy_high:.2f}]".rjust(18)
                         + f" {r.shuffled:>8.2f} {r.chance:>6.3f}")
        lines.append(f"{layer:>5}  {cells[0]}  {cells[1]}")
    return "\n".join(lines) + "\n"


def write_report(
    table: pd.DataFrame, records: list[PairRecord], path: Path | str, *, title: str = "Reversal-curse probe",
    graphs: dict[str, str] | None = None, lens: pd.DataFrame | None = None, patching: pd.DataFrame | None = None,
    probes: pd.DataFrame | None = None,
) -> Path:
    """A self-contained HTML page: the summary table, the figure, the pairs known forward (top-1)
    but not in reverse, the logit lens over them (``lens``: :func:`scrying.reversal.lens.lens_table`)
    causal tracing of their subject tokens (``patching``:
    :func:`scrying.reversal.causal_tracing.causal_trace_table`) and links to attribution graphs
    (``graphs``: label -> relative path) and the linear probes per layer (``probes``:
    :func:`scrying.reversal.linear_probes.probe_summary`)."""
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
    probe_plot = ""
    if probes is not None and not probes.empty:
        probe_plot = (
            "<h2>Where each direction is stored: linear probes</h2><p>A multinomial logistic regression over the "
            "relation's answers reads <i>b</i> from the residual stream at <i>a</i>'s last token of the forward prompt, "
            "and <i>a</i> at <i>b</i>'s last token of the reverse prompt, per layer (Allen-Zhu &amp; Li 2023); accuracy "
            "on held-out pairs (5 folds by pair) with 95% bootstrap intervals, beside the same probe trained on labels "
            "shuffled among the training pairs, and chance (<code>scrying.reversal.linear_probes</code>).</p>"
            + pio.to_html(probe_figure(probes), include_plotlyjs=False, full_html=False)
            + f"<pre>{escape(probe_text_table(probes))}</pre>"
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
        f"<th>reverse greedy</th></tr>{gap_rows}</table>{lens_plot}{patching_plot}{probe_plot}"
    )
    return write_report_page(path, title, body, table.to_dict(orient="records"))


def findings_markdown(probes: pd.DataFrame, toy: dict[str, dict], table: pd.DataFrame, *,
                      finetune: dict[str, dict] | None = None, sizes: pd.DataFrame | None = None) -> str:
    """Notebook 04's closing cell, written from the stored numbers: the stored probe's pooled
    top-1 among random and hard distractors (``table``: the summary of ``results.jsonl``), the toy
    experiment's three conditions (``toy``:
    :func:`scrying.reversal.experiment.read_experiment_summary` of ``toy_cure``), the fine-tune's
    (``finetune``, the same reader on ``finetune``), the probe across sizes (``sizes``: the rows
    of :func:`scrying.reversal.sizes.size_table`) and the linear probes (``probes``:
    :func:`scrying.reversal.linear_probes.probe_summary`)."""

    pooled = table.set_index("relation").loc["all"]
    curse, control, cure = toy["forward_only"], toy["both_directions_control"], toy["reverse_training"]
    if pooled.diff_top1_hard_low > 0:
        order = "forward is the better direction, the reversal curse's sign"
    elif pooled.diff_top1_hard_high < 0:
        order = "reverse is the better direction, the opposite of the reversal curse"
    else:
        order = "the two directions are indistinguishable"
    lines = [
        "## What this notebook found",
        "",
        f"- **Real facts, Gemma 3 270M** (the stored run, {int(pooled.n)} pairs): among random distractors top-1 is "
        f"{pooled.forward_top1:.2f} forward and {pooled.reverse_top1:.2f} reverse, near ceiling both ways; among hard "
        f"distractors it is {interval_cell(pooled, 'forward_top1_hard')} forward and {interval_cell(pooled, 'reverse_top1_hard')} reverse "
        f"(p={pooled.p_top1_hard:.2g}): {order}.",
        f"- **The curse, on the toy** (fictitious people stated name-first only): reverse top-1 is "
        f"{interval_cell(curse, 'reverse_top1')}, chance {curse['reverse_chance']:.2f}, while forward exact match is "
        f"{interval_cell(curse, 'forward_exact')}.",
        f"- **The cure, both kinds**: Berglund's both-directions control (the test facts also stated in reverse) gives "
        f"reverse top-1 {interval_cell(control, 'reverse_top1')}; reverse training (Golovneva et al. 2024: every training sentence "
        f"also in its entity-preserving reversal, no reverse statement of a test fact) gives {interval_cell(cure, 'reverse_top1')} "
        f"(reverse exact match {interval_cell(cure, 'reverse_exact')}, forward exact match {interval_cell(cure, 'forward_exact')}).",
    ]
    if finetune is not None:
        lines.append(_finetune_line(finetune))
    if sizes is not None:
        lines.append(_sizes_line(sizes))
    for relation in dict.fromkeys(probes.relation):
        part = probes[probes.relation == relation]
        peaks = []
        for direction in ("forward", "reverse"):
            rows = part[part.direction == direction]
            embed, best = _embeddings_and_best(rows)
            control = rows.shuffled.max()
            verdict = ("" if control < best.accuracy_low else
                       "; not distinguishable from its shuffled control, which reaches this interval")
            peaks.append(f"{direction} {interval_cell(best, 'accuracy')} at layer {int(best.layer)} "
                         f"({embed.accuracy:.2f} from the embeddings; shuffled labels at most {control:.2f}, "
                         f"chance {rows.chance.iloc[0]:.3f}{verdict})")
        n_fwd, n_rev = (int(part[part.direction == d].n.iloc[0]) for d in ("forward", "reverse"))
        counted = f"{n_fwd} pairs" if n_fwd == n_rev else f"{n_fwd} pairs forward, {n_rev} prompts reverse"
        lines.append(f"- **Linear probes, {relation}** ({counted}, held out by prompt), best layer: "
                     f"{peaks[0]}; {peaks[1]}.")
    return "\n".join(lines)


def _finetune_line(finetune: dict[str, dict]) -> str:
    parts = []
    for name, row in finetune.items():
        parts.append(f"{CONDITION_LABELS.get(name, name)}: forward top-1 {interval_cell(row, 'forward_top1')}, reverse "
                     f"{interval_cell(row, 'reverse_top1')} after {int(row['steps_run'])} steps ({row['seconds_per_step']:.1f} s a step)")
    chance = next(iter(finetune.values()))["reverse_chance"]
    return f"- **The fine-tune, Gemma 3 270M** (fictitious people, held-out phrasings, chance {chance:.2f}): " + "; ".join(parts) + "."


def _sizes_line(sizes: pd.DataFrame) -> str:
    pooled = sizes[sizes.relation == "all"].sort_values("params", kind="stable")
    parts = [f"{row.label} {row.forward_top1_hard:.2f} / {row.reverse_top1_hard:.2f} (p={row.p_top1_hard:.2g})"
             for row in pooled.itertuples()]
    return (f"- **Across sizes** (the same {int(pooled.n.iloc[0])} pairs, top-1 among hard distractors, forward / reverse): "
            + "; ".join(parts) + ".")


def probe_markdown(probes: pd.DataFrame) -> str:
    """The linear probes as one Markdown table (the README's): per relation, the pairs (forward /
    reverse prompts where they differ), chance, accuracy from the token embeddings and at the
    best layer per direction (95% intervals), and the shuffled control's maximum over layers."""
    lines = ["| relation | pairs | chance | forward: embeddings | forward: best layer | reverse: embeddings | "
             "reverse: best layer | shuffled control, max over layers |", "|---|---|---|---|---|---|---|---|"]
    for relation in dict.fromkeys(probes.relation):
        part = probes[probes.relation == relation]
        by = {d: part[part.direction == d] for d in ("forward", "reverse")}
        n = [int(by[d].n.iloc[0]) for d in by]
        chance = [f"{by[d].chance.iloc[0]:.3f}" for d in by]
        cells = []
        for d in by:
            embed, best = _embeddings_and_best(by[d])
            cells += [interval_cell(embed, "accuracy"), f"{interval_cell(best, 'accuracy')} (layer {int(best.layer)})"]
        shuffled = " / ".join(f"{by[d].shuffled.max():.2f}" for d in by)
        lines.append(f"| {relation} | {n[0] if n[0] == n[1] else f'{n[0]} / {n[1]}'} | "
                     f"{chance[0] if chance[0] == chance[1] else ' / '.join(chance)} | " + " | ".join(cells) + f" | {shuffled} |")
    return "\n".join(lines) + "\n"


def _embeddings_and_best(rows: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """One relation and direction's probe rows: the token embeddings' row (the lowest layer) and
    the most accurate layer's."""
    return rows[rows.layer == rows.layer.min()].iloc[0], rows.loc[rows.accuracy.idxmax()]
