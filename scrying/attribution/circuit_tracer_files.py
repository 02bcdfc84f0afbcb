"""A graph laid out as circuit-tracer's local server reads a folder, feature files included.

circuit-tracer's viewer (``circuit_tracer/frontend``, started by ``circuit_tracer.frontend.
local_server.serve(data_dir)``) reads, under ``data_dir``: ``graph-metadata.json`` (``{"graphs":
[metadata, ...]}``, one entry per graph: the graph's ``metadata``, as circuit-tracer's
``add_graph_metadata`` keeps it), each graph as ``{slug}.json``, and, for the panel of a clicked
feature, ``{transcoder_list[layer]}/{feature}.json`` when the graph's ``scan`` is ``custom-...``
and that entry is a relative path (``./graph_data/...``, served from ``data_dir``); ``feature`` is
the node's Cantor-paired index (:func:`~scrying.attribution.graph_json.cantor_pair`).
:mod:`~scrying.attribution.graph_json` writes those fields; this module writes the files.

Phases of :func:`write_folder`: check the slug and every feature card -> build every file in
memory (:func:`feature_files`) -> write the graph, its feature files and its index entry.

A feature file holds what the panel reads of circuit-tracer's ``feature_models.Model``, made from
the node's card (``graph.metadata["cards"][node_id]``, :mod:`scrying.attribution.cards`):
``examples_quantiles`` one group, the card's top-activating ``contexts`` (``tokens``, the
feature's activation on each as ``tokens_acts_list``, the activating token as
``train_token_ind``), ``top_logits`` / ``bottom_logits`` the tokens it ``promotes`` /
``suppresses``, ``act_min`` 0 and ``act_max`` the largest of those activations (the colour
scale: a token is shaded by how close its activation comes to the top one, none at or below 0),
``transcoder_id`` and ``index``. It leaves out ``quantile_values``, ``histogram`` and
``activation_frequency``, which a card does not hold (the panel then shows no histogram or
percentile). Component nodes get no file: circuit-tracer's panel loads one only for a
``"cross layer transcoder"`` node.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from scrying.attribution.graph_json import (
    GraphFields,
    cantor_pair,
    feature_folder,
    process_token,
    write_file,
)
from scrying.errors import InvalidInputError
from scrying.jsonl import read_json

INDEX = "graph-metadata.json"


class CircuitTracerFolder(NamedTuple):
    """What :func:`write_folder` wrote: the graph file, the index and the feature files."""

    graph: Path
    index: Path
    features: list[Path]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_card(card: Any, where: str) -> None:
    if not isinstance(card, dict):
        raise InvalidInputError(f"{where} must be an object, got {type(card).__name__}")
    for key in ("promotes", "suppresses"):
        pairs = card.get(key, [])
        if not (isinstance(pairs, list) and all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in pairs)):
            raise InvalidInputError(f"{where}: {key!r} must be a list of [token, logit] pairs")
    contexts = card.get("contexts", [])
    if not isinstance(contexts, list):
        raise InvalidInputError(f"{where}: 'contexts' must be a list")
    for i, ctx in enumerate(contexts):
        ok = (
            isinstance(ctx, dict)
            and isinstance(ctx.get("tokens"), list) and all(isinstance(t, str) for t in ctx["tokens"])
            and isinstance(ctx.get("values"), list) and all(map(_is_number, ctx["values"]))
            and len(ctx["values"]) == len(ctx["tokens"])
            and isinstance(ctx.get("at"), int) and 0 <= ctx["at"] < len(ctx["tokens"])
        )
        if not ok:
            raise InvalidInputError(
                f"{where}: context {i} must have 'tokens' (strings), as many 'values' (numbers) and 'at' (an index into them)"
            )


def feature_file(card: dict[str, Any], transcoder_id: str, index: int) -> dict[str, Any]:
    """circuit-tracer's feature file of a feature with ``card`` (see the module docstring)."""
    contexts = card.get("contexts", [])
    top = max([float(v) for ctx in contexts for v in ctx["values"]], default=0.0)
    origin = f" ({card['contexts_from']})" if card.get("contexts_from") else ""
    return {
        "transcoder_id": transcoder_id,
        "index": index,
        "examples_quantiles": [{
            "quantile_name": f"Top activations{origin}",
            "examples": [
                {
                    "tokens": [process_token(t) for t in ctx["tokens"]],
                    "tokens_acts_list": [float(v) for v in ctx["values"]],
                    "train_token_ind": ctx["at"],
                    "is_repeated_datapoint": False,
                }
                for ctx in contexts
            ],
        }],
        "top_logits": [process_token(token) for token, _ in card.get("promotes", [])],
        "bottom_logits": [process_token(token) for token, _ in card.get("suppresses", [])],
        "act_min": 0.0,
        "act_max": top if top > 0 else 1.0,
    }


def feature_files(graph: GraphFields) -> dict[str, dict[str, Any]]:
    """Each feature file of ``graph`` by its path relative to the graph's folder: one per feature
    (layer, index) whose node has a card; a card that is not one (see the module docstring) is an
    :class:`InvalidInputError` naming the node."""
    cards = graph.metadata.get("cards") or {}
    if not isinstance(cards, dict):
        raise InvalidInputError(f"metadata 'cards' must be an object, got {type(cards).__name__}")
    slug = graph.slug()
    files: dict[str, dict[str, Any]] = {}
    for node in graph.nodes:
        if node.kind != "feature" or node.node_id not in cards:
            continue
        card = cards[node.node_id]
        _check_card(card, f"card of node {node.node_id!r}")
        folder = feature_folder(slug, node.layer)
        path = f"{folder}/{cantor_pair(node.layer, node.feature)}.json"
        files.setdefault(path, feature_file(card, f"./graph_data/{folder}", node.feature))
    return files


def add_to_index(metadata: dict[str, Any], folder: str | Path) -> Path:
    """Add a graph's ``metadata`` to ``folder``'s ``graph-metadata.json`` (replacing the entry of
    the same slug), as circuit-tracer's ``add_graph_metadata`` does; the index is created if
    missing, and one that is not circuit-tracer's is an :class:`InvalidInputError`."""
    path = Path(folder) / INDEX
    index = read_json(path) if path.exists() else {"graphs": []}
    if not (isinstance(index, dict) and isinstance(index.get("graphs"), list)):
        raise InvalidInputError(f"{str(path)!r} is not circuit-tracer's graph index: no 'graphs' list")
    index["graphs"] = [g for g in index["graphs"] if not (isinstance(g, dict) and g.get("slug") == metadata["slug"])]
    index["graphs"].append(metadata)
    path.write_text(json.dumps(index, indent=2, allow_nan=False), encoding="utf-8")
    return path


def write_folder(graph: GraphFields, folder: str | Path) -> CircuitTracerFolder:
    """Write ``graph`` into ``folder`` as circuit-tracer's local server reads it (its
    ``data_dir``): ``{slug}.json``, its feature files and its entry in ``graph-metadata.json``."""
    folder = Path(folder)
    slug = graph.slug()
    if not slug or slug.startswith(".") or not all(c.isascii() and (c.isalnum() or c in "._-") for c in slug):
        raise InvalidInputError(f"slug {slug!r} must be a file name (letters, digits, '.', '_', '-') for circuit-tracer's folder")
    files = feature_files(graph)
    folder.mkdir(parents=True, exist_ok=True)
    graph_path = write_file(graph, folder / f"{slug}.json")
    written = []
    for relative, content in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, allow_nan=False), encoding="utf-8")
        written.append(path)
    metadata = read_json(graph_path)["metadata"]
    return CircuitTracerFolder(graph_path, add_to_index(metadata, folder), written)
