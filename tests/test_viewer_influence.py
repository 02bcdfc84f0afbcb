"""One meaning of influence: ``Node.influence`` and the graph JSON's ``influence`` are circuit-tracer's
cumulative fraction (lower = more influential), and whatever lists "top" nodes (the Python helper,
notebook 01, the README's gallery) lists the most influential ones: those with the highest own
influence on the outputs (:func:`scrying.attribution.influence.node_influence`)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from scrying.attribution import Graph
from scrying.attribution.export import most_influential
from scrying.attribution.influence import PruneConfig, node_influence, prune, pruned_graph
from tests.test_viewer_browser import random_graph

ROOT = Path(__file__).resolve().parents[1]


def by_own_score(graph: Graph, kinds: tuple[str, ...]) -> list[str]:
    scores = node_influence(graph)
    members = [i for i, n in enumerate(graph.nodes) if n.kind in kinds]
    return [graph.nodes[i].node_id for i in sorted(members, key=lambda i: (-float(scores[i]), i))]


def test_most_influential_lists_the_highest_influence_first():
    graph = random_graph(n_features=60, n_edges=600, seed=5, connected=True)
    assert all(n.influence is None for n in graph.nodes)  # unpruned: ranked by the own score
    assert [n.node_id for n in most_influential(graph, k=10)] == by_own_score(graph, ("feature",))[:10]
    result = prune(graph, PruneConfig(node_threshold=0.9, edge_threshold=0.99))
    kept = pruned_graph(graph, result)  # pruned: the full graph's cumulative fraction is stored
    assert all(n.influence is not None for n in kept.nodes)
    listed = [n.node_id for n in most_influential(kept, kinds=("feature", "error"))]
    full = [i for i in by_own_score(graph, ("feature", "error")) if i in {n.node_id for n in kept.nodes}]
    assert listed == full
    stored = [n.influence for n in most_influential(kept, kinds=("feature", "error"))]
    assert stored == sorted(stored)  # lower cumulative fraction = more influential
    assert listed[:5] != [n.node_id for n in sorted(kept.nodes, key=lambda n: -(n.influence or 0)) if n.kind in ("feature", "error")][:5]


def test_the_readme_s_most_influential_node_is_the_most_influential():
    readme = (ROOT / "README.md").read_text()
    assert "the ' Dallas' token (the most influential node)" in readme
    graph = Graph.read_json(ROOT / "graphs" / "gallery" / "dallas-texas.json")
    top = most_influential(graph, kinds=("embedding", "feature", "error"), k=1)[0]
    assert top.kind == "embedding" and graph.prompt_tokens[top.pos] == "Dallas"


def notebook_cell(path: Path, needle: str) -> str:
    cells = json.loads(path.read_text())["cells"]
    found = ["".join(c["source"]) for c in cells if c["cell_type"] == "code" and needle in "".join(c["source"])]
    assert len(found) == 1, f"{path.name}: {len(found)} cells hold {needle!r}"
    return found[0]


def test_notebook_01_prints_the_most_influential_features_as_top():
    """The cell that prints the "top" transcoder features, run on a graph whose influence ranks
    are known, prints the features :func:`most_influential` lists first."""
    source = notebook_cell(ROOT / "notebooks" / "01_attribution_graphs.ipynb", 'graphs["transcoder features"]')
    graph = random_graph(n_features=40, n_edges=400, seed=7, connected=True)
    kept = pruned_graph(graph, prune(graph, PruneConfig(node_threshold=1.0, edge_threshold=1.0)))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(source, {"graphs": {"transcoder features": kept}, "figure": lambda graph: None})  # noqa: S102
    expected = [f"L{n.layer} #{n.feature} @{n.pos} {kept.prompt_tokens[n.pos]!r}: {n.label}"
                for n in most_influential(kept, k=10)]
    assert printed.getvalue().splitlines() == expected
