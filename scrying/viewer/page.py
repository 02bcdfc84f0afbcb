"""One graph page: a graph JSON (circuit-tracer's format plus scrying's records) to one HTML file
that opens offline and is read in the browser (assets/viewer.js: click, hover, pruning sliders,
subgraph and supernodes, state in the URL fragment).

Phases: check the graph JSON's fields (every link names a node, every field read has its type:
:mod:`~scrying.viewer.schema`) -> take the page's defaults (thresholds, a saved
:class:`~scrying.viewer.state.ViewState`) -> write the head (prompt, outputs and their
probabilities), the graph's place, the scores and the validation (escaped HTML, see
:mod:`~scrying.viewer.report`) -> embed the graph as script-safe JSON and the viewer's script and
style, inline or (``shared_assets``) as two files beside the page.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from scrying.errors import ConfigError
from scrying.html_pages import escape, json_for_script
from scrying.viewer.report import node_checks, scores_html, summarise, validation_html
from scrying.viewer.schema import check_graph, check_validation, is_number
from scrying.viewer.state import ViewState

logger = logging.getLogger(__name__)

#: The files a page with ``shared_assets`` links, written once beside it.
ASSET_FILES = ("scrying-viewer.js", "scrying-viewer.css")


@dataclass(frozen=True, kw_only=True)
class PageConfig:
    """How a page opens. Thresholds re-prune the embedded graph in the browser with the rule of
    :func:`scrying.attribution.influence.prune`; ``None``: sparse defaults for feature graphs
    (a reader adds detail with the sliders), everything the circuit kept for component graphs."""

    node_threshold: float | None = None
    edge_threshold: float | None = None
    shared_assets: bool = False
    #: With neither threshold given, a feature graph opens at the first of :data:`OPENING_STEPS`
    #: that shows at least this many feature nodes (or all of them), so that a graph whose error
    #: nodes carry most influence still opens with features in view.
    min_features: int = 10

    def __post_init__(self) -> None:
        for name in ("node_threshold", "edge_threshold"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"PageConfig.{name} must be in [0, 1] or None, got {value}")
        if self.min_features < 0:
            raise ConfigError(f"PageConfig.min_features must be >= 0, got {self.min_features}")


#: Opening thresholds when none are given: (node, edge) for feature graphs, component graphs.
DEFAULT_THRESHOLDS = {"features": (0.6, 0.85), "components": (1.0, 1.0)}
#: (node, edge) thresholds a feature graph's page tries in order when it opens (the first is
#: :data:`DEFAULT_THRESHOLDS`'s), adding detail until ``PageConfig.min_features`` features show.
OPENING_STEPS = tuple((round(0.6 + 0.05 * k, 2), 0.85) for k in range(9)) + ((1.0, 0.9), (1.0, 0.95), (1.0, 0.98), (1.0, 1.0))
#: The node kinds, their colours (as ``assets/viewer.js`` draws them) and their names in the legend.
KINDS = (("embedding", "#7f7f7f", "token"), ("feature", "#2ca02c", "feature"), ("error", "#bcbd22", "error"),
         ("component", "#9467bd", "component"), ("logit", "#d62728", "output"))


def asset(name: str) -> str:
    """The text of one of the viewer's files (``viewer.js``, ``viewer.css``)."""
    return resources.files("scrying.viewer").joinpath("assets", name).read_text(encoding="utf-8")


def check_graph_json(data: Any) -> None:
    """Raise :class:`InvalidInputError`, naming the field, unless ``data`` is a graph JSON the page
    can show: nodes with unique string ids, links between them with finite weights, metadata,
    and every field the page, the gallery and the report read of the right type
    (:func:`scrying.viewer.schema.check_graph`), and ``qParams`` a view state."""
    check_graph(data)
    if data.get("qParams"):
        ViewState.from_qparams(data["qParams"])


def _is_components(data: dict[str, Any]) -> bool:
    own = data.get("scrying") or {}
    return any(n.get("kind") == "component" for n in own.get("nodes", []))


def _outputs_html(data: dict[str, Any]) -> str:
    own = data.get("scrying") or {}
    logits = [
        (n, (own.get("nodes") or [{}] * len(data["nodes"]))[i])
        for i, n in enumerate(data["nodes"])
        if n.get("feature_type") == "logit"
    ]
    logits.sort(key=lambda pair: -(pair[0].get("token_prob") or 0.0))
    parts = []
    for node, mine in logits:
        label = mine.get("label") or node.get("clerp") or node["node_id"]
        token = label.removeprefix("Output ").rsplit(" (p=", 1)[0]
        css = "target" if node.get("is_target_logit") else ""
        parts.append(f"<span class='{css}'>{escape(token)} {100 * (node.get('token_prob') or 0.0):.1f}%</span>")
    return "<p class='outputs'>Output: " + " · ".join(parts) + "</p>" if parts else ""


def _legend(data: dict[str, Any]) -> str:
    """The colours of the node kinds this graph has, and what an edge's colour means: on every
    page blue helps and red works against. In a feature graph that is the sign of the direct
    effect; in a component (EAP-IG) graph an edge's score is the metric's change when that edge
    alone is corrupted, so the viewer draws a negative score (corrupting it lowers the metric:
    the edge helps the answer) blue."""
    own = data.get("scrying") or {}
    present = {m.get("kind") for m in own.get("nodes") or []} or {"embedding", "feature", "error", "logit"}
    signs = (("helps the answer (corrupting it lowers the metric)", "works against it (corrupting it raises the metric)")
             if _is_components(data) else ("excites", "inhibits"))
    kinds = "".join(f"<i style='background:{color}'></i>{name}" for kind, color, name in KINDS if kind in present)
    return (
        f"<span class='legend'>{kinds}<b style='background:#1f77b4'></b>{signs[0]}"
        f"<b style='background:#d62728'></b>{signs[1]} · size: influence</span>"
    )


def _pruned_note(data: dict[str, Any]) -> str:
    """What the sliders start from: the embedded graph, already pruned when it was traced."""
    meta = (data.get("scrying") or {}).get("metadata") or {}
    kept = len(data["nodes"])
    if _is_components(data):
        rule = (meta.get("circuit") or {}).get("rule")
        how = f" ({rule})" if rule else ""
        return (f"The embedded circuit is already selected{how}: {kept} of {meta['pruned_from']} nodes. "
                "The sliders prune it further, never back." if meta.get("pruned_from") else "")
    if not meta.get("pruned_from"):
        return ""
    at = f" at node threshold {meta['node_threshold']:g}" if is_number(meta.get("node_threshold")) else ""
    return (f"The embedded graph is already pruned: {kept} of {meta['pruned_from']} nodes kept{at} when it was traced. "
            "The sliders prune it further (1.0 shows all of it), never back to the full graph.")


def _embedded(data: dict[str, Any]) -> dict[str, Any]:
    """The graph as the page embeds it: everything but the validation (shown as HTML)."""
    out = copy.copy(data)
    if isinstance(data.get("scrying"), dict):
        meta = data["scrying"].get("metadata") or {}
        out["scrying"] = {**data["scrying"], "metadata": {k: v for k, v in meta.items() if k != "validation"}}
    return out


def render_page(
    data: dict[str, Any],
    config: PageConfig | None = None,
    *,
    state: ViewState | None = None,
    validation: dict[str, Any] | None = None,
    summary: dict[str, Any] | None = None,
) -> str:
    """The HTML of one page for graph JSON ``data``; ``validation`` defaults to the one stored in
    the graph (``scrying.metadata.validation``), ``summary`` adds rows to the facts table."""
    config = config or PageConfig()
    check_graph_json(data)
    if validation:
        check_validation(validation, "validation")
    own = data.get("scrying") or {}
    meta = own.get("metadata") or {}
    defaults = DEFAULT_THRESHOLDS["components" if _is_components(data) else "features"]
    node_threshold = config.node_threshold if config.node_threshold is not None else defaults[0]
    edge_threshold = config.edge_threshold if config.edge_threshold is not None else defaults[1]
    if state is None and data.get("qParams"):
        state = ViewState.from_qparams(data["qParams"])
    view: dict[str, Any] = {"node_threshold": node_threshold, "edge_threshold": edge_threshold, "state": state.to_qparams() if state else None}
    if config.node_threshold is None and config.edge_threshold is None and not _is_components(data):
        view.update(open_steps=[list(step) for step in OPENING_STEPS], min_features=config.min_features)
    note = _pruned_note(data)
    prompt = data["metadata"].get("prompt", "")
    facts: dict[str, Any] = {
        "model": own.get("model") or data["metadata"].get("scan", ""),
        "level": own.get("level", ""),
        "nodes": len(data["nodes"]),
        "edges": len(data["links"]),
    }
    if meta.get("targets"):
        facts["targets"] = ", ".join(repr(t) for t in meta["targets"])
    if meta.get("corrupt_prompt"):
        facts["corrupted prompt"] = meta["corrupt_prompt"]
    facts.update(summary or {})
    validation = validation if validation is not None else meta.get("validation")
    checks = node_checks(validation)
    sentence = summarise(data, validation).sentence
    if config.shared_assets:
        style, script = f"<link rel='stylesheet' href='{ASSET_FILES[1]}'>", f"<script src='{ASSET_FILES[0]}'></script>"
    else:
        style, script = f"<style>{asset('viewer.css')}</style>", f"<script>{asset('viewer.js')}</script>"
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>scrying: {escape(prompt)}</title>{style}</head><body>"
        f"<header><h1>{escape(prompt)}</h1>"
        f"<p class='facts'>{escape(facts['model'])} · {escape(facts['level'])} · {facts['nodes']} nodes, "
        f"{facts['edges']} edges embedded</p>{_outputs_html(data)}"
        f"<p class='summary' id='summary'>{escape(sentence)}</p></header>"
        "<div id='controls'>"
        "<label>node threshold <input type='range' id='node-threshold' min='0' max='1' step='0.01'> "
        "<output id='node-threshold-value'></output></label>"
        "<label>edge threshold <input type='range' id='edge-threshold' min='0' max='1' step='0.01'> "
        "<output id='edge-threshold-value'></output></label>"
        "<span id='counts'></span>"
        f"{_legend(data)}"
        + ("<label class='shade'><input type='checkbox' id='shade-agreement'> shade validated nodes by agreement of graph and "
           "real model (<i class='agree'></i>same sign, within 2× <i class='size'></i>same sign, size off "
           "<i class='opposite'></i>opposite sign)</label>" if checks else "")
        + "<button id='export-state' type='button'>Export state (JSON)</button>"
        "<button id='clear-pins' type='button'>Clear pins</button>"
        + (f"<p class='pruned-note' id='pruned-note'>{escape(note)}</p>" if note else "")
        + "</div>"
        "<main><section id='graph-panel'><div id='graph'><canvas id='edges'></canvas>"
        "<svg id='graph-svg' xmlns='http://www.w3.org/2000/svg'></svg></div></section>"
        "<aside id='side'><div id='node-info'></div></aside></main>"
        "<section id='subgraph-panel'><h2>Subgraph <small id='subgraph-count'></small></h2>"
        "<div class='tools'>Shift-click nodes in the graph (or Pin) to add them; click boxes here to select, then "
        "<input id='supernode-name' placeholder='supernode name'> <button id='group' type='button'>Group selected</button>"
        "<button id='ungroup' type='button'>Ungroup selected</button></div>"
        "<svg id='subgraph-svg' xmlns='http://www.w3.org/2000/svg'></svg></section>"
        + scores_html(meta.get("scores") or {}, facts)
        + (validation_html(validation) if validation else "")
        + "<div id='tooltip' hidden></div>"
        f"<script type='application/json' id='scrying-graph'>{json_for_script(_embedded(data))}</script>"
        f"<script type='application/json' id='scrying-view'>{json_for_script(view)}</script>"
        + (f"<script type='application/json' id='scrying-checks'>{json_for_script(checks)}</script>" if checks else "")
        + f"{script}</body></html>"
    )


def write_page(
    data: dict[str, Any],
    path: str | Path,
    config: PageConfig | None = None,
    *,
    state: ViewState | None = None,
    validation: dict[str, Any] | None = None,
    summary: dict[str, Any] | None = None,
) -> Path:
    """Write :func:`render_page` to ``path`` (and, with ``shared_assets``, the viewer's two files
    beside it)."""
    config = config or PageConfig()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_page(data, config, state=state, validation=validation, summary=summary), encoding="utf-8")
    if config.shared_assets:
        for name, source in zip(ASSET_FILES, ("viewer.js", "viewer.css"), strict=True):
            (path.parent / name).write_text(asset(source), encoding="utf-8")
    logger.info("wrote %s", path)
    return path
