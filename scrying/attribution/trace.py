"""``trace``: build, prune, score and validate one attribution graph; write it out.

Phases: build the graph at the requested level (neurons: :mod:`~scrying.attribution.neurons`;
components: :mod:`~scrying.attribution.components`), compute replacement and completeness
scores on the full graph, prune by influence, validate the top nodes by intervention, and write
JSON (Neuronpedia schema v1 plus scrying's fields) and self-contained HTML.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from scrying.attribution.export import write_html
from scrying.attribution.graph import Graph
from scrying.attribution.neurons import NeuronGraphConfig, build_neuron_graph
from scrying.attribution.pruning import PruneConfig, graph_scores, prune, pruned_graph
from scrying.attribution.validation import ValidationConfig, validate_neuron_graph
from scrying.errors import ConfigError
from scrying.prompts import check_text

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TraceConfig:
    """What to trace and how."""

    level: Literal["neurons", "components"] = "neurons"
    target: str | None = None  # default: the model's top-1 next token
    corrupt: str | None = None  # components level: corrupted prompt (default: zero baseline)
    split_qkv: bool = False  # components level: score each head's q, k and v inputs separately
    neurons: NeuronGraphConfig = field(default_factory=NeuronGraphConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def __post_init__(self) -> None:
        if self.level not in ("neurons", "components"):
            raise ConfigError(f"TraceConfig.level must be 'neurons' or 'components', got {self.level!r}")
        if self.corrupt is not None and self.level != "components":
            raise ConfigError("TraceConfig.corrupt applies to level 'components' only")
        if self.split_qkv and self.level != "components":
            raise ConfigError("TraceConfig.split_qkv applies to level 'components' only")


@dataclass(frozen=True)
class TraceResult:
    graph: Graph  # full graph
    pruned: Graph
    validation: dict[str, Any]
    scores: dict[str, float]
    seconds: float


def trace(model: Any, prompt: str, config: TraceConfig | None = None, *, model_name: str = "") -> TraceResult:
    """Build, score, prune and validate the attribution graph of ``prompt``."""
    config = config or TraceConfig()
    check_text(prompt)
    start = time.perf_counter()
    if config.level == "neurons":
        graph = build_neuron_graph(model, prompt, config.target, config.neurons, model_name=model_name)
        replacement, completeness = graph_scores(graph)
        scores = {"replacement_score": replacement, "completeness_score": completeness}
        validation = validate_neuron_graph(model, graph, config.validation).to_dict()
    else:
        from scrying.attribution.components import build_component_graph

        graph, validation = build_component_graph(model, prompt, config, model_name=model_name)
        scores = {}
    result = prune(graph, config.prune)
    small = pruned_graph(graph, result)
    small.metadata.update({"scores": scores, "validation": validation, "node_threshold": config.prune.node_threshold})
    seconds = time.perf_counter() - start
    logger.info("traced %r at level %s in %.1f s", prompt, config.level, seconds)
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
        summary = {k.replace("_", " "): round(v, 4) for k, v in result.scores.items()}
        summary["seconds"] = round(result.seconds, 1)
        summary["targets"] = ", ".join(repr(t) for t in result.graph.metadata.get("targets", []))
        written.append(
            write_html(result.pruned, html_path, validation=result.validation, summary=summary, shared_plotlyjs=shared_plotlyjs)
        )
    return written
