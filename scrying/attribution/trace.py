"""``trace``: build, prune, score and validate one attribution graph; write it out.

Phases: build the graph at the requested level. Neurons (:mod:`~scrying.attribution.feature_graph`):
replacement and completeness scores on the full graph (both definitions), pruning by influence
(circuit-tracer's rule), and the two-layer validation of the top nodes
(:mod:`~scrying.attribution.validation`; ``validate=False`` skips it). Components (:mod:`~scrying.attribution.components`):
EAP-IG scores, the circuit of the top-n edges after dead-node pruning (Hanna et al. 2024; EAP-IG
scores are end-to-end effects, so influence along paths has no meaning for them) with the
fraction of the metric it recovers, and the top edges checked by exact patching. Then write JSON
(Neuronpedia schema plus scrying's fields) and self-contained HTML.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from scrying.attribution.basis import FeatureBasis, NeuronBasis
from scrying.attribution.cards import feature_cards
from scrying.attribution.config import TraceConfig
from scrying.attribution.export import write_html
from scrying.attribution.feature_graph import build_feature_graph
from scrying.attribution.graph import Graph
from scrying.attribution.influence import labelled_scores, prune, pruned_graph
from scrying.attribution.replacement import clean_run
from scrying.attribution.validation import GraphValidation, validate_feature_graph
from scrying.axes import Int, Model, Tensor
from scrying.prompts import check_text, tokenize

logger = logging.getLogger(__name__)

__all__ = ["TraceConfig", "TraceResult", "trace", "write_trace"]


@dataclass(frozen=True)
class TraceResult:
    graph: Graph  # full graph
    pruned: Graph
    validation: GraphValidation | None  # None: a neurons-level trace with validate=False
    scores: dict[str, float | None]
    seconds: float


def trace(
    model: Model,
    prompt: str,
    config: TraceConfig | None = None,
    *,
    model_name: str = "",
    basis: FeatureBasis | None = None,
    validate: bool = True,
    cards: bool = True,
    card_windows: Int[Tensor, "batch seq"] | None = None,
    contexts_from: str = "",
) -> TraceResult:
    """Build, score, prune and validate the attribution graph of ``prompt``; ``basis``: the
    feature basis of a neurons-level graph (default :class:`NeuronBasis`; a transcoder basis).
    ``validate=False``: no interventions on a neurons-level graph (its validation is most of a
    short prompt's time); a components-level graph's check by exact patching is part of its
    circuit and stays. ``cards``: each kept node's card for the page (:mod:`~scrying.attribution.cards`;
    a feature's top contexts from ``card_windows``, corpus windows named by ``contexts_from``,
    else from the basis's own files)."""
    config = config or TraceConfig()
    check_text(prompt)
    start = time.perf_counter()
    if config.level == "neurons":
        basis = basis or NeuronBasis()
        clean = clean_run(model, tokenize(model, prompt), basis)  # one clean run for the build and validation
        graph = build_feature_graph(model, prompt, config.target, config.features, basis=basis, model_name=model_name, clean=clean)
        scores = labelled_scores(graph)
        small = pruned_graph(graph, prune(graph, config.prune))
        validation = validate_feature_graph(model, graph, small, config.validation, basis=basis, clean=clean) if validate else None
        if cards:
            small.metadata["cards"] = feature_cards(model, small, basis, card_windows, contexts_from=contexts_from)
    else:
        from scrying.attribution.components import build_component_graph

        graph, small, report = build_component_graph(model, prompt, config, model_name=model_name)
        validation = GraphValidation({"EAP-IG vs exact patching": report}, headline="EAP-IG vs exact patching")
        scores = {"circuit_recovers": small.metadata["circuit"]["recovered"]}
    checked = validation.to_json() if validation is not None else None
    small.metadata.update({"scores": scores, "validation": checked, "node_threshold": config.prune.node_threshold})
    seconds = time.perf_counter() - start
    what = f"{config.level} ({basis.name})" if config.level == "neurons" and basis is not None else config.level
    logger.info("traced %r at level %s in %.1f s", prompt, what, seconds)
    return TraceResult(graph=graph, pruned=small, validation=validation, scores=scores, seconds=seconds)


def write_trace(
    result: TraceResult,
    *,
    html_path: str | Path | None = None,
    json_path: str | Path | None = None,
    shared_plotlyjs: bool = False,
) -> list[Path]:
    """Write the pruned graph as HTML and/or JSON; returns the paths written."""
    written = []
    if json_path is not None:
        written.append(result.pruned.write_json(json_path))
    if html_path is not None:
        summary = {k.replace("_", " "): "undefined" if v is None else round(v, 4) for k, v in result.scores.items()}
        summary["seconds"] = round(result.seconds, 1)
        summary["targets"] = ", ".join(repr(t) for t in result.graph.metadata.get("targets", []))
        circuit = result.pruned.metadata.get("circuit")
        if circuit is not None:
            summary["circuit"] = (
                f"{circuit['kept_edges']} edges (top {circuit['top_n']} by |EAP-IG score|, then dead-node "
                f"pruning) recover {circuit['recovered']:.1%} of {result.graph.metadata['metric']} "
                "(every other edge corrupted, exact patching)"
            )
        written.append(
            write_html(
                result.pruned,
                html_path,
                validation=result.validation.to_json() if result.validation is not None else None,
                summary=summary,
                shared_plotlyjs=shared_plotlyjs,
            )
        )
    return written
