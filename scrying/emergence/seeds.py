"""A toy family trained over several seeds: the verdict of each seed, the verdict over seeds,
and the curves with their spread (bands), as one page.

Phases of :func:`over_seeds`:

1. **Per seed**: each seed's study is a whole study (its own training, scoring, verdict and
   report, :func:`scrying.emergence.run.run_study`), on the same items.
2. **Over seeds**: the verdict over seeds is the verdict every seed gives; when seeds disagree it
   is ``inconclusive``, and the counts say how they split. The finding names the agreement and
   quotes the first seed's sentence; when seeds disagree it says what they share instead: where
   exact match and per-token probability rise in each, and in how many seeds the smooth
   prediction reproduces exact match (the mirage test).
3. **Bands**: per metric and scale, the mean over seeds of the per-seed means and the band from
   the lowest to the highest seed (a family's scale, ``6 N D``, is the same for every seed).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from scrying.emergence.verdict import EmergenceSummary, jump_span
from scrying.html_pages import escape, write_report_page

BAND_METRICS = ("exact_match", "per_token_probability", "per_token_accuracy", "per_token_argmax_accuracy", "sampled_exact_match")


@dataclass(frozen=True)
class SeedsSummary:
    verdict: str
    finding: str
    seeds: dict[int, EmergenceSummary]
    bands: pd.DataFrame  # metric, scale, label, mean, low, high, n_seeds

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "finding": self.finding,
                "seeds": {str(s): {"verdict": v.verdict, "finding": v.finding} for s, v in self.seeds.items()}}


def over_seeds(seeds: dict[int, EmergenceSummary]) -> SeedsSummary:
    """The verdict, finding and bands of the module docstring."""
    counts = Counter(s.verdict for s in seeds.values())
    first = next(iter(seeds.values()))
    if len(counts) == 1:
        verdict = first.verdict
        finding = f"All {len(seeds)} seeds: {verdict}. Seed {next(iter(seeds))}: {first.finding}"
    else:
        verdict = "inconclusive"
        split = ", ".join(f"{n} {v}" for v, n in counts.most_common())
        finding = f"The seeds disagree ({split}). {_agreement(seeds)}"
    curves = pd.concat([s.curves.assign(seed=seed) for seed, s in seeds.items()])
    curves = curves[curves.metric.isin(BAND_METRICS)]
    bands = (curves.groupby(["metric", "scale"])
             .agg(label=("label", "first"), mean=("mean", "mean"), low=("mean", "min"), high=("mean", "max"),
                  n_seeds=("seed", "nunique"))
             .reset_index())
    return SeedsSummary(verdict, finding, seeds, bands)


def _agreement(seeds: dict[int, EmergenceSummary]) -> str:
    """What the disagreeing seeds still share: where exact match and per-token probability rise
    in each, and in how many a smooth fit of the per-token metric reproduces exact match (the
    mirage test)."""
    spans, together, reproduced, tested = [], 0, 0, 0
    for seed, summary in seeds.items():
        em = jump_span(summary.curves, "exact_match")
        p = jump_span(summary.curves, "per_token_probability")
        spans.append(f"seed {seed}: {em[0]} to {em[1]}" if em else f"seed {seed}: no rise")
        together += bool(em and p)
        if summary.prediction is not None and summary.prediction.smooth_reproduces is not None:
            tested += 1
            reproduced += bool(summary.prediction.smooth_reproduces)
    n = len(seeds)
    mirage = (f"a smooth fit of the per-token metric, raised to the target's length, reproduces exact match in "
              f"{reproduced} of {tested} seeds" + (" (no seed shows a mirage)" if tested and not reproduced else ""))
    return (f"Exact match rises ({'; '.join(spans)}), per-token probability rises with it in {together} of {n} "
            f"seeds, and {mirage}; whether the rise is sudden enough to count as a jump differs by seed.")


def seeds_figure(summary: SeedsSummary, *, scale_title: str = "scale (log axis)") -> go.Figure:
    """Per metric, every seed's curve (thin), their mean and the lowest-to-highest band."""
    metrics = [m for m in BAND_METRICS if m in set(summary.bands.metric)]
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[m.replace("_", " ") for m in metrics])
    for col, metric in enumerate(metrics, start=1):
        band = summary.bands[summary.bands.metric == metric].sort_values("scale")
        fig.add_trace(go.Scatter(x=list(band.scale) + list(band.scale)[::-1], y=list(band.high) + list(band.low)[::-1],
                                 fill="toself", line={"width": 0}, opacity=0.25, showlegend=col == 1,
                                 name="band: lowest to highest seed", hoverinfo="skip", fillcolor="#1f77b4"),
                      row=1, col=col)
        fig.add_trace(go.Scatter(x=band.scale, y=band["mean"], mode="lines", line={"color": "#1f77b4", "width": 3},
                                 name="mean over seeds", showlegend=col == 1), row=1, col=col)
        for seed, s in summary.seeds.items():
            part = s.curves[s.curves.metric == metric]
            fig.add_trace(go.Scatter(x=part.scale, y=part["mean"], mode="lines", line={"width": 1}, opacity=0.6,
                                     name=f"seed {seed} ({s.verdict})", legendgroup=str(seed), showlegend=col == 1,
                                     text=part.label, hovertemplate="%{text}<br>%{y:.4g}<extra></extra>"),
                          row=1, col=col)
        fig.update_xaxes(type="log", title_text=scale_title, row=1, col=col)
        fig.update_yaxes(title_text=f"{metric.replace('_', ' ')} (mean over items)", row=1, col=col)
    fig.update_annotations(font_size=11)
    fig.update_layout(height=380, title=f"Over {len(summary.seeds)} seeds: {summary.verdict}")
    return fig


def write_seeds_report(summary: SeedsSummary, path: Path | str, *, title: str, scale_title: str) -> Path:
    """The over-seeds page: the finding, each seed's verdict and sentence (linking its report),
    and the band figure."""
    rows = "".join(
        f"<tr><td><a href='seed-{seed}/report.html'>seed {seed}</a></td><td>{escape(s.verdict)}</td>"
        f"<td>{escape(s.finding)}</td></tr>"
        for seed, s in summary.seeds.items()
    )
    body = (f"<p><b>Finding:</b> {escape(summary.finding)}</p><p><b>Verdict over seeds: {escape(summary.verdict)}</b> "
            "(the verdict every seed gives; inconclusive when they differ).</p>"
            f"<table><tr><th>seed</th><th>verdict</th><th>finding</th></tr>{rows}</table>"
            + pio.to_html(seeds_figure(summary, scale_title=scale_title), include_plotlyjs=True, full_html=False))
    return write_report_page(path, title, body, summary.to_json())
