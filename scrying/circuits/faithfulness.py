"""Faithfulness curve: how much of the behaviour the top-k edges recover.

Phases (Hanna et al. 2024, sec. 3, "faithfulness"; Conmy et al. 2023): (1) rank edges by
``|score|``; (2) for each k, keep the top-k edges and corrupt every other edge with exact
patching (:func:`scrying.circuits.patching.patch_edges`); (3) normalise
``recovered = (m(circuit) - m(corrupt)) / (m(clean) - m(corrupt))`` (1: all of the clean
behaviour, 0: none); (4) return a table and a plotly figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch

from scrying.axes import Int, Model, Tensor
from scrying.circuits.circuit import ComponentCircuit
from scrying.circuits.config import FaithfulnessConfig, PatchConfig
from scrying.circuits.nodes import ComponentNodes
from scrying.circuits.patching import patch_edges
from scrying.metrics import Metric


def edge_counts(n_edges: int, config: FaithfulnessConfig) -> list[int]:
    """The k values: log-spaced from ``min_edges`` to ``n_edges``, 0 and any explicit ks."""
    ks = {0, n_edges, *(k for k in config.ks if k <= n_edges)}
    if config.n_points > 0 and n_edges > 0:
        lo = max(config.min_edges, 1)
        ks |= {int(round(k)) for k in np.geomspace(lo, n_edges, config.n_points)}
    return sorted(ks)


def faithfulness_curve(
    model: Model,
    clean: Int[Tensor, "batch pos"],
    circuit: ComponentCircuit,
    metric: Metric,
    config: FaithfulnessConfig | None = None,
) -> tuple[pd.DataFrame, go.Figure]:
    """Metric recovered vs edges kept (``circuit``'s edges, ranked by ``|score|``)."""
    config = config or FaithfulnessConfig()
    nodes = ComponentNodes.of(model, split_qkv=circuit.config.split_qkv)
    pair, scores = circuit.pair, circuit.edges
    ranked = scores.reindex(scores["score"].abs().sort_values(ascending=False).index)
    index = torch.tensor(nodes.edge_index(ranked["source"], ranked["target"]), dtype=torch.long).reshape(-1, 2)
    us, vs = index[:, 0], index[:, 1]
    ks = edge_counts(len(ranked), config)
    masks = nodes.edge_mask.repeat(len(ks), 1, 1)
    for i, k in enumerate(ks):
        masks[i, us[:k], vs[:k]] = False
    values = patch_edges(model, clean, pair, metric, masks, nodes, PatchConfig(chunk=config.chunk, progress=config.progress))
    m_clean = float(pair.clean_metric.mean())
    m_corrupt = float(values[0])  # k = 0: every edge corrupted
    span = m_clean - m_corrupt
    table = pd.DataFrame(
        {
            "edges": ks,
            "fraction": [k / max(len(ranked), 1) for k in ks],
            "metric": values.tolist(),
            "recovered": [(float(v) - m_corrupt) / span if span else float("nan") for v in values],
        }
    )
    fig = go.Figure(go.Scatter(x=table["edges"], y=table["recovered"], mode="lines+markers"))
    fig.update_layout(
        xaxis_title="edges kept (top-k by |score|)",
        yaxis_title="metric recovered",
        xaxis_type="log" if len(ks) > 2 else "linear",
        title="Faithfulness",
    )
    return table, fig
