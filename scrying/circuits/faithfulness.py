"""How much of the behaviour a circuit recovers, and the faithfulness curve.

Phases (Hanna et al. 2024, sec. 3, "faithfulness"; Conmy et al. 2023): (1) for each k, select
the top-k edges by ``|score|`` and prune dead nodes
(:func:`scrying.circuits.selection.select_edges`, the rule of hannamw/EAP-IG's
``Graph.apply_topn``), which can leave fewer than k edges; (2)
corrupt every edge not kept with exact patching (:func:`scrying.circuits.patching.patch_edges`,
as EAP-IG's ``evaluate_graph``), and every edge for the corrupt reference; (3) normalise
``recovered = (m(circuit) - m(corrupt)) / (m(clean) - m(corrupt))`` (1: all of the clean
behaviour, 0: none); (4) return a table and a plotly figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from jaxtyping import Bool

from scrying.axes import Float, Int, Model, Tensor
from scrying.circuits.circuit import ComponentCircuit
from scrying.circuits.config import FaithfulnessConfig, PatchConfig, SelectionConfig
from scrying.circuits.nodes import ComponentNodes
from scrying.circuits.patching import patch_edges
from scrying.circuits.selection import score_matrix, select_edges
from scrying.errors import InvalidInputError
from scrying.metrics import Metric


def edge_counts(n_edges: int, config: FaithfulnessConfig) -> list[int]:
    """The k values: log-spaced from ``min_edges`` to ``n_edges``, 0 and any explicit ks."""
    ks = {0, n_edges, *(k for k in config.ks if k <= n_edges)}
    if config.n_points > 0 and n_edges > 0:
        lo = max(config.min_edges, 1)
        ks |= {int(round(k)) for k in np.geomspace(lo, n_edges, config.n_points)}
    return sorted(ks)


def recovered(
    model: Model,
    clean: Int[Tensor, "batch pos"],
    circuit: ComponentCircuit,
    metric: Metric,
    kept_mask: Bool[Tensor, "src dst"],
) -> float:
    """Fraction of the behaviour the circuit ``kept_mask`` recovers when every other edge is
    corrupted: ``(m(circuit) - m(corrupt)) / (m(clean) - m(corrupt))``, with ``m(corrupt)``
    the metric with every edge corrupted (NaN when clean and corrupt agree)."""
    nodes = ComponentNodes.of(model, split_qkv=circuit.config.split_qkv)
    _, fraction = _patched(model, clean, circuit, metric, nodes, kept_mask[None], PatchConfig())
    return float(fraction[0])


def _patched(
    model: Model,
    clean: Tensor,
    circuit: ComponentCircuit,
    metric: Metric,
    nodes: ComponentNodes,
    kept: Bool[Tensor, "variant src dst"],
    config: PatchConfig,
) -> tuple[Float[Tensor, " variant"], Float[Tensor, " variant"]]:
    """Metric and fraction recovered of each kept-edge variant (one patching call, with the
    all-corrupt reference as an extra first variant)."""
    want = (len(nodes.sources), len(nodes.receivers))
    if tuple(kept.shape[1:]) != want:
        kind = "q/k/v-split" if nodes.split_qkv else "unsplit"
        raise InvalidInputError(
            f"kept edge mask must be [{want[0]}, {want[1]}] for the circuit's {kind} component nodes, "
            f"got {tuple(kept.shape[1:])}"
        )
    edges = nodes.edge_mask.to(kept.device)
    corrupted = torch.cat([edges[None], edges & ~kept])
    values = patch_edges(model, clean, circuit.pair, metric, corrupted, nodes, config)
    m_clean, m_corrupt = float(circuit.pair.clean_metric.mean()), float(values[0])
    span = m_clean - m_corrupt
    fraction = (
        (values[1:] - m_corrupt) / span if span else torch.full_like(values[1:], float("nan"))
    )
    return values[1:], fraction


def faithfulness_curve(
    model: Model,
    clean: Int[Tensor, "batch pos"],
    circuit: ComponentCircuit,
    metric: Metric,
    config: FaithfulnessConfig | None = None,
) -> tuple[pd.DataFrame, go.Figure]:
    """Metric recovered vs circuit size. One row per k: ``edges`` (k, the edges requested),
    ``kept`` (edges left after dead-node pruning, at most k), ``fraction`` (``kept`` over all
    edges), ``metric`` and ``recovered``. The figure plots ``recovered`` against ``kept``."""
    config = config or FaithfulnessConfig()
    nodes = ComponentNodes.of(model, split_qkv=circuit.config.split_qkv)
    scores = score_matrix(nodes, circuit.edges)
    n_edges = len(nodes.edges)
    ks = edge_counts(n_edges, config)
    kept = torch.stack([select_edges(nodes, scores, SelectionConfig(top_edges=k)) for k in ks])
    patch = PatchConfig(chunk=config.chunk, progress=config.progress)
    values, fraction = _patched(model, clean, circuit, metric, nodes, kept, patch)
    sizes = kept.sum(dim=(1, 2)).tolist()
    table = pd.DataFrame(
        {
            "edges": ks,
            "kept": sizes,
            "fraction": [s / max(n_edges, 1) for s in sizes],
            "metric": values.tolist(),
            "recovered": fraction.tolist(),
        }
    )
    fig = go.Figure(
        go.Scatter(
            x=table["kept"],
            y=table["recovered"],
            mode="lines+markers",
            customdata=table["edges"],
            hovertemplate="kept %{x} edges (top %{customdata}, dead nodes pruned)"
            "<br>recovered %{y:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        xaxis_title="edges kept (top-k by |score|, dead nodes pruned)",
        yaxis_title="metric recovered",
        xaxis_type="log" if len(ks) > 2 else "linear",
        title="Faithfulness",
    )
    return table, fig
