"""Plotly figures: per-head effect heatmap (layer x head, interval on hover), pruning curve."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go


def effect_heatmap(table: pd.DataFrame, *, title: str = "") -> go.Figure:
    """Heatmap of ``effect`` by layer (rows) and head (columns); hover shows the interval."""
    n_layers = int(table["layer"].max()) + 1
    n_heads = int(table["head"].max()) + 1
    grid = np.full((n_layers, n_heads), np.nan)
    custom = np.full((n_layers, n_heads, 2), np.nan)
    for r in table.itertuples():
        grid[r.layer, r.head] = r.effect
        custom[r.layer, r.head] = (r.ci_low, r.ci_high)
    bound = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0
    metric = table["metric"].iloc[0] if "metric" in table else "metric"
    method = table["method"].iloc[0] if "method" in table else ""
    level = f"{float(table['confidence'].iloc[0]):.0%}" if "confidence" in table else "bootstrap"
    fig = go.Figure(
        go.Heatmap(
            z=grid,
            x=list(range(n_heads)),
            y=list(range(n_layers)),
            customdata=custom,
            colorscale="RdBu",
            zmid=0.0,
            zmin=-bound,
            zmax=bound,
            colorbar={"title": f"Δ {metric}"},
            hovertemplate=(
                "layer %{y} head %{x}<br>effect %{z:.4f}<br>"
                f"{level} CI [%{{customdata[0]:.4f}}, %{{customdata[1]:.4f}}]<extra></extra>"
            ),
        )
    )
    fig.update_layout(
        title=title or f"Change in {metric} when each head is {method}-ablated",
        xaxis_title="head",
        yaxis_title="layer",
        yaxis={"autorange": "reversed"},
    )
    return fig


def pruning_figure(curve: pd.DataFrame, *, metric: str = "metric", title: str = "") -> go.Figure:
    """Metric vs fraction of heads ablated (least important first)."""
    fig = go.Figure(
        go.Scatter(
            x=curve["fraction"],
            y=curve["metric"],
            mode="lines+markers",
            text=curve["last_head"],
            hovertemplate="%{x:.1%} ablated (last: %{text})<br>" + metric + " %{y:.4f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title or "Pruning curve: heads ablated from least to most important",
        xaxis_title="fraction of heads ablated",
        yaxis_title=metric,
        xaxis={"tickformat": ".0%"},
    )
    return fig
