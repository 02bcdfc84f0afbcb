"""Pictures of a graph: a plotly figure for notebooks, and the graph's page (the offline viewer of
:mod:`scrying.viewer`, which reads the graph's JSON).

Layout of the figure: layers run upwards (embeddings at the bottom, logits at the top), prompt
positions run across; nodes sharing a (layer, position) cell are spread horizontally. Edge width
follows ``|weight|``, colour its sign (blue excites, red inhibits). Every string that comes from
the prompt or the tokenizer is HTML-escaped before it reaches a page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from scrying.attribution.graph import Graph, Node
from scrying.html_pages import escape
from scrying.viewer import PageConfig, write_page

_COLORS = {"embedding": "#7f7f7f", "feature": "#2ca02c", "error": "#bcbd22", "component": "#9467bd", "logit": "#d62728"}
_WIDTH_BINS = 4


def _positions(graph: Graph) -> dict[str, tuple[float, float]]:
    cells: dict[tuple[int, int], list[int]] = {}
    for i, node in enumerate(graph.nodes):
        cells.setdefault((node.layer, _column(graph, node)), []).append(i)
    coords: dict[str, tuple[float, float]] = {}
    for (layer, column), members in cells.items():
        members.sort(key=lambda i: -(graph.nodes[i].influence or 0.0))
        width = min(0.8, 0.12 * (len(members) - 1))
        for rank, i in enumerate(members):
            offset = 0.0 if len(members) == 1 else -width / 2 + width * rank / (len(members) - 1)
            coords[graph.nodes[i].node_id] = (float(column + offset), float(layer))
    return coords


def _column(graph: Graph, node: Node) -> int:
    """A node's x column: its layout column if it has one (component graphs), else its token
    position; nodes summed over positions with no column go right of the last position."""
    if node.column is not None:
        return node.column
    return node.pos if node.pos >= 0 else len(_x_labels(graph))


def _x_labels(graph: Graph) -> list[str]:
    """Column labels: prompt tokens, or head/MLP columns for component graphs."""
    return list(graph.metadata.get("x_labels") or graph.prompt_tokens)


def most_influential(graph: Graph, *, kinds: tuple[str, ...] = ("feature",), k: int | None = None) -> list[Node]:
    """The graph's nodes of ``kinds`` in order of influence on the outputs, most influential
    first (the first ``k``; ``None``: all): what a table or a notebook lists as "top".

    ``Node.influence`` (and the graph JSON's ``influence``, circuit-tracer's field) is the
    *cumulative* influence fraction at the node's rank, so **lower is more influential**: sorting
    by ``-influence`` lists the least influential first. This orders by it ascending when every
    listed node has one (a pruned graph: the ranks of the full graph it was pruned from), and
    otherwise by the node's own influence computed on ``graph``
    (:func:`scrying.attribution.influence.node_influence`), descending; ties keep node order.
    The page's viewer ranks, labels and reports nodes by the same cumulative fraction.
    """
    from scrying.attribution.influence import node_influence

    members = [i for i, n in enumerate(graph.nodes) if n.kind in kinds]
    if all(graph.nodes[i].influence is not None for i in members):
        order = sorted(members, key=lambda i: (graph.nodes[i].influence, i))
    else:
        scores = node_influence(graph).tolist()
        order = sorted(members, key=lambda i: (-scores[i], i))
    return [graph.nodes[i] for i in order[:k]]


def _hover(node) -> str:
    lines = [f"<b>{escape(node.label or node.node_id)}</b>", f"id: {escape(node.node_id)}", f"kind: {node.kind}"]
    if node.activation is not None:
        lines.append(f"activation: {node.activation:.4g}")
    if node.influence is not None:
        lines.append(f"cumulative influence: {node.influence:.3f}")
    if node.token_prob is not None:
        lines.append(f"probability: {node.token_prob:.4f}")
    if node.details:
        lines.append(escape(node.details))
    return "<br>".join(lines)


def figure(graph: Graph, *, title: str | None = None, max_edges: int = 500) -> go.Figure:
    """The graph as a plotly figure (the caller shows or saves it); draws the ``max_edges``
    strongest edges (all nodes are drawn)."""
    coords = _positions(graph)
    edges = graph.edges()
    if len(edges) > max_edges:
        edges = edges.loc[edges.weight.abs().nlargest(max_edges).index]
        title = f"{title if title is not None else graph.prompt}  (strongest {max_edges} edges shown)"
    fig = go.Figure()
    if len(edges):
        biggest = float(edges.weight.abs().max()) or 1.0
        for sign, color in ((1, "rgba(31,119,180,0.35)"), (-1, "rgba(214,39,40,0.35)")):
            subset = edges[(edges.weight > 0) if sign > 0 else (edges.weight < 0)]
            for b in range(_WIDTH_BINS):
                low, high = biggest * b / _WIDTH_BINS, biggest * (b + 1) / _WIDTH_BINS
                part = subset[(subset.weight.abs() > low) & (subset.weight.abs() <= high)]
                if part.empty:
                    continue
                xs, ys = [], []
                for row in part.itertuples(index=False):
                    (x0, y0), (x1, y1) = coords[row.source], coords[row.target]
                    xs += [x0, x1, None]
                    ys += [y0, y1, None]
                fig.add_trace(
                    go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False,
                               line={"color": color, "width": 0.5 + 4.5 * (b + 1) / _WIDTH_BINS})
                )
    for kind, color in _COLORS.items():
        members = [n for n in graph.nodes if n.kind == kind]
        if not members:
            continue
        fig.add_trace(
            go.Scatter(
                x=[coords[n.node_id][0] for n in members],
                y=[coords[n.node_id][1] for n in members],
                mode="markers",
                name=kind,
                marker={"color": color, "size": [8 + 10 * (1 - (n.influence or 1.0)) for n in members], "line": {"width": 1, "color": "#333"}},
                hovertext=[_hover(n) for n in members],
                hoverinfo="text",
            )
        )
    n_layers = max((n.layer for n in graph.nodes), default=0)
    fig.update_layout(
        title=escape(title if title is not None else graph.prompt),
        xaxis={
            "tickmode": "array",
            "tickvals": list(range(len(_x_labels(graph)))),
            "ticktext": [escape(t) for t in _x_labels(graph)],
            "title": "position" if graph.level == "neurons" else "head",
        },
        yaxis={
            "tickmode": "array",
            "tickvals": list(range(-1, n_layers + 1)),
            "ticktext": ["emb"] + [f"L{i}" for i in range(n_layers)] + ["logit"],
            "title": "layer",
        },
        plot_bgcolor="white",
        height=720,
        hoverlabel={"align": "left"},
    )
    return fig


def write_html(
    graph: Graph,
    path: str | Path,
    *,
    validation: dict[str, Any] | None = None,
    summary: dict[str, Any] | None = None,
    shared_assets: bool = False,
    shared_plotlyjs: bool = False,
) -> Path:
    """One self-contained HTML page of the graph, read in the browser (:mod:`scrying.viewer`:
    click a node for its edges, prune with sliders, pin a subgraph), with a summary, the scores
    and the validation.

    ``shared_assets`` writes the viewer's script and style once beside the page and links them
    (for galleries of many graphs; still no network) instead of inlining them; ``shared_plotlyjs``
    is its old name (pages no longer use plotly.js).
    """
    config = PageConfig(shared_assets=shared_assets or shared_plotlyjs)
    return write_page(graph.to_json(), path, config, validation=validation, summary=summary)
