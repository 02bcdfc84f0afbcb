"""A gallery of graph pages: every ``*.json`` graph of a folder rendered as a page beside it, and
``index.html`` listing each with its screenshot (``NAME.png``, where there is one), model, prompt,
target, level, a one-line finding (:func:`~scrying.viewer.report.summarise`), its check against the real model
beside the activation x gradient baseline, and its scores, a missing one shown as "—" with the
reason (``make gallery``). Pages are rendered from the stored graphs; nothing reruns a model."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scrying.errors import InvalidInputError
from scrying.html_pages import escape
from scrying.viewer.page import PageConfig, asset, check_graph_json, write_page
from scrying.viewer.report import Estimate, summarise
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
    spearman: float | None  # the validation's headline Spearman
    finding: str = ""  # one line: what the output mostly comes from (Summary.finding)
    graph_vs_real: Estimate | None = None  # Spearman of the graph's predictions against the real model
    baseline: Estimate | None = None  # Spearman of activation x gradient against the real model
    headline: str = ""  # the validation's headline comparison's name ("" when not validated)
    thumbnail: str | None = None  # the page's screenshot, beside it


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


def entry(name: str, data: dict[str, Any], *, thumbnail: str | None = None) -> GalleryEntry:
    """The index's row of graph JSON ``data`` (checked by :func:`read_graph_json`); ``thumbnail``:
    the file name of its screenshot, if it has one."""
    own = data.get("scrying") or {}
    meta = own.get("metadata") or {}
    logits = [(n, (own.get("nodes") or [{}] * len(data["nodes"]))[i]) for i, n in enumerate(data["nodes"]) if n.get("feature_type") == "logit"]
    targets = [pair for pair in logits if pair[0].get("is_target_logit")] or logits[:1]
    validation = meta.get("validation") or {}
    headline = (validation.get("reports") or {}).get(validation.get("headline"), {})
    summary = summarise(data)
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
        finding=summary.finding,
        graph_vs_real=summary.graph_vs_real,
        baseline=summary.baseline,
        headline=str(validation.get("headline") or ""),
        thumbnail=thumbnail,
    )


#: Why a score can be missing: the graph's basis does not define it.
MISSING = {
    "replacement_score_unselected_excluded": "not defined: a transcoder's error nodes mix reconstruction error and "
    "unselected features, which cannot be split after the fact",
    "completeness_score_unselected_excluded": "not defined: a transcoder's error nodes mix reconstruction error and "
    "unselected features, which cannot be split after the fact",
}


def _score(name: str, value: float | None) -> str:
    if value is not None:
        return f"{value:.3f}"
    return f"— ({MISSING.get(name, 'not stored in the graph')})"


def _check(e: GalleryEntry) -> str:
    """Graph vs real beside the baseline; a component circuit's EAP-IG vs exact patching."""
    if e.graph_vs_real is not None:
        zero = " (indistinguishable from 0)" if e.graph_vs_real.holds_zero else ""
        text = f"graph vs real model: {e.graph_vs_real.text()}{zero}"
        if e.baseline is not None:
            side = "below" if e.baseline.value > e.graph_vs_real.value else "at or above"
            text += f"<br>{side} activation × gradient: {e.baseline.text()}"
        return text
    if e.spearman is not None:
        return f"{escape(e.headline)}: {e.spearman:.3f}"
    return "— (not validated by intervention)"


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
        scores = "<br>".join(f"{escape(k.replace('_', ' '))}: {escape(_score(k, v))}" for k, v in e.scores.items()) or "—"
        thumb = (f"<img class='gallery-thumb' src='{escape(e.thumbnail)}' alt='screenshot of {escape(e.name)}' loading='lazy'>"
                 if e.thumbnail else "— (no screenshot)")
        rows.append(
            f"<tr><td><a href='{escape(e.name)}.html'>{escape(e.name)}{thumb}</a></td>"
            f"<td>{escape(e.model)}</td><td>{escape(e.prompt)}</td>"
            f"<td>{escape(e.target)}{'' if e.probability is None else f' (p={e.probability:.3f})'}</td>"
            f"<td>{escape(e.level)}</td><td>{e.nodes} / {e.edges}</td><td class='finding'>{escape(e.finding) or '—'}</td>"
            f"<td>{_check(e)}</td><td>{scores}</td></tr>"
        )
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{asset('viewer.css')}</style></head><body><header><h1>{escape(title)}</h1>"
        "<p class='facts'>Each page opens offline; click a node to see its edges, move the sliders to add detail. "
        "The check column is the Spearman correlation (95% interval) of the effects the graph predicts with those measured "
        "by intervention in the real model, beside the cheap activation × gradient baseline.</p>"
        "</header><section class='report'><table><thead><tr><th>graph</th><th>model</th><th>prompt</th><th>target</th><th>level</th>"
        "<th>nodes / edges</th><th>finding</th><th>check against the real model (Spearman)</th><th>scores</th></tr></thead><tbody>"
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
        shot = folder / f"{name}.png"
        entries.append(entry(name, data, thumbnail=shot.name if shot.exists() else None))
    index = folder / "index.html"
    index.write_text(index_html(entries), encoding="utf-8")
    written.append(index)
    logger.info("rendered %d pages and %s", len(names), index)
    return written
