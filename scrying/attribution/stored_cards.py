"""Cards for a graph traced earlier (read back from its JSON): what
:func:`~scrying.attribution.trace.trace` stores in ``graph.metadata["cards"]``
(:mod:`~scrying.attribution.cards`), recomputed without retracing (``graphs/add_cards.py``)."""

from __future__ import annotations

from typing import Any

from scrying.attribution.basis import FeatureBasis, NeuronBasis
from scrying.attribution.cards import component_cards, feature_cards
from scrying.attribution.components import component_inputs
from scrying.attribution.graph import Graph
from scrying.axes import Int, Model, Tensor
from scrying.errors import ConfigError


def cards_for_graph(
    model: Model,
    graph: Graph,
    *,
    basis: FeatureBasis | None = None,
    windows: Int[Tensor, "batch seq"] | None = None,
    contexts_from: str = "",
) -> dict[str, dict[str, Any]]:
    """The cards of a graph traced earlier (e.g. read back with :meth:`Graph.read_json`), as
    :func:`~scrying.attribution.trace.trace` makes them: feature graphs through ``basis``
    (default: neurons; a transcoder graph needs its transcoder basis), component graphs by
    rerunning the clean and corrupt prompts (the metric is rebuilt from the stored target and
    corrupt prompt as the trace built it)."""
    if graph.level != "components":
        if basis is None and graph.metadata.get("basis", "neurons") != "neurons":
            raise ConfigError(f"a {graph.metadata.get('basis')} graph's cards need its basis (e.g. TranscoderBasis); got none")
        return feature_cards(model, graph, basis or NeuronBasis(), windows, contexts_from=contexts_from)
    tokens, nodes, pair, metric, name, node_ids = component_inputs(model, graph)
    return component_cards(model, tokens, graph, node_ids, nodes, pair, metric, name)
