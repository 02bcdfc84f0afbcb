"""A gallery of graph pages: every ``*.json`` graph of a folder rendered as a page beside it, and
``index.html`` listing each with its model, prompt, target, level and scores (``make gallery``). Pages are
rendered from the stored graphs; nothing reruns a model."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scrying.errors import InvalidInputError
from scrying.html_pages import escape
from scrying.viewer.page import PageConfig, asset, check_graph_json, write_page
from scrying.viewer.schema import read_json_file

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GalleryEntry:
    """One graph of a gallery, as the index lists it."""

    name: str  # file stem: page ``name.html``, graph ``name.json``
    model: str
    prompt: str
    target: str
    probability: float | None
    level: str
    nodes: int
    edges: int
    scores: dict[str, float | None]
    spearman: float | None


def read_graph_json(path: str | Path) -> dict[str, Any]:
    """A graph JSON file (:func:`~scrying.viewer.schema.read_json_file`), its fields checked
    (:func:`~scrying.viewer.page.check_graph_json`); anything else is an
    :class:`~scrying.errors.InvalidInputError` naming the file."""
    data = read_json_file(path)
    try:
        check_graph_json(data)
    except InvalidInputError as err:
        raise InvalidInputError(f"{str(path)!r}: {err}") from err
    return data


def entry(name: str, data: dict[str, Any]) -> GalleryEntry:
    """The index's row of graph JSON ``data`` (checked by :func:`read_graph_json`)."""
    own = data.get("scrying") or {}
    meta = own.get("metadata") or {}
    logits = [(n, (own.get("nodes") or [{}] * len(data["nodes"]))[i]) for i, n in enumerate(data["nodes"]) if n.get("feature_type") == "logit"]
    targets = [pair for pair in logits if pair[0].get("is_target_logit")] or logits[:1]
    validation = meta.get("validation") or {}
    headline = (validation.get("reports") or {}).get(validation.get("headline"), {})
    return GalleryEntry(
        name=name,
        model=str(own.get("model") or data["metadata"].get("scan") or ""),
        prompt=data["metadata"].get("prompt", ""),
        target=", ".join(_token(node, mine) for node, mine in targets),
        probability=_float(targets[0][0].get("token_prob")) if len(targets) == 1 else None,
        level=own.get("level", ""),
        nodes=len(data["nodes"]),
        edges=len(data["links"]),
        scores={k: _float(v) for k, v in (meta.get("scores") or {}).items()},
        spearman=_float(headline.get("spearman")),
    )


def _float(value: int | float | None) -> float | None:
    """A JSON number as the entry's ``float`` (JSON writes 1.0 as 1)."""
    return None if value is None else float(value)


def _token(node: dict[str, Any], mine: dict[str, Any]) -> str:
    """A logit node's token as its label shows it (``Output ' Texas' (p=0.982)`` -> ``' Texas'``)."""
    label = mine.get("label") or node.get("clerp") or node["node_id"]
    return label.removeprefix("Output ").rsplit(" (p=", 1)[0]


def index_html(entries: list[GalleryEntry], *, title: str = "scrying graph gallery") -> str:
    rows = []
    for e in entries:
        scores = "<br>".join(f"{escape(k.replace('_', ' '))}: {'undefined' if v is None else f'{v:.3f}'}" for k, v in e.scores.items())
        rows.append(
            f"<tr><td><a href='{escape(e.name)}.html'>{escape(e.name)}</a></td><td>{escape(e.model)}</td><td>{escape(e.prompt)}</td>"
            f"<td>{escape(e.target)}{'' if e.probability is None else f' (p={e.probability:.3f})'}</td>"
            f"<td>{escape(e.level)}</td><td>{e.nodes} / {e.edges}</td><td>{scores}</td>"
            f"<td>{'undefined' if e.spearman is None else f'{e.spearman:.3f}'}</td></tr>"
        )
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{asset('viewer.css')}</style></head><body><header><h1>{escape(title)}</h1>"
        "<p class='facts'>Each page opens offline; click a node to see its edges, move the sliders to add detail.</p>"
        "</header><section class='report'><table><thead><tr><th>graph</th><th>model</th><th>prompt</th><th>target</th><th>level</th>"
        "<th>nodes / edges</th><th>scores</th><th>validation Spearman (headline)</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></section></body></html>"
    )


def render_gallery(folder: str | Path, names: list[str] | None = None, config: PageConfig | None = None) -> list[Path]:
    """Render ``folder/NAME.html`` from ``folder/NAME.json`` for each name (default: every graph
    JSON in the folder, sorted) and ``folder/index.html``; returns the paths written."""
    folder = Path(folder)
    config = config or PageConfig(shared_assets=True)
    if names is None:
        names = sorted(p.stem for p in folder.glob("*.json"))
    if not names:
        raise InvalidInputError(f"no graph JSON files in {str(folder)!r}")
    written, entries = [], []
    for name in names:
        data = read_graph_json(folder / f"{name}.json")
        written.append(write_page(data, folder / f"{name}.html", config))
        entries.append(entry(name, data))
    index = folder / "index.html"
    index.write_text(index_html(entries), encoding="utf-8")
    written.append(index)
    logger.info("rendered %d pages and %s", len(names), index)
    return written
