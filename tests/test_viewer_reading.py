"""A graph page read without hovering, in headless Chromium: labels sit on the most influential
nodes (the ones Python ranks first) without overlapping, a feature's id and its `scrying intervene`
command are the ones the CLI parses, a validated node shows the three numbers of the graph JSON,
the page opens with features in view, says in one sentence what the validation says, and a
component page draws the edge that helps the answer blue, as every other page does."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from scrying.attribution import Graph
from scrying.attribution.influence import PruneConfig, node_influence, prune
from scrying.cli.main import build_parser
from scrying.cli.transcoders import _edits
from scrying.transcoders.intervene import FeatureEdit
from scrying.viewer import PageConfig, write_page
from scrying.viewer.report import summarise
from tests import test_viewer_browser
from tests.test_viewer_browser import _click, console, open_page

browser = test_viewer_browser.browser  # the module's one headless Chromium (a fixture)

GALLERY = Path(__file__).resolve().parents[1] / "graphs" / "gallery"
FEATURES = GALLERY / "ioi-features.json"
SESSION_GRAPHS = GALLERY.parents[1] / "results" / "transcoders" / "gemma-3-270m-recipe-session" / "graphs"


def opened(browser, tmp_path, name: str, config: PageConfig | None = None, *, folder: Path = GALLERY):
    data = json.loads((folder / f"{name}.json").read_text())
    open_page(browser, write_page(data, tmp_path / f"{name}.html", config))
    return data


def shown_by_python(graph: Graph, browser) -> set[str]:
    """The node ids Python's pruning keeps at the page's current thresholds."""
    q = browser.execute_script("return scryingViewer.qParams()")
    result = prune(graph, PruneConfig(node_threshold=q["pruningThreshold"], edge_threshold=q["edgeThreshold"]))
    ids = graph.schema_ids()
    return {ids[i] for i in result.node_mask.nonzero().flatten().tolist()}


def test_labels_sit_on_the_most_influential_nodes_without_overlapping(browser, tmp_path):
    opened(browser, tmp_path, "ioi-features")
    graph = Graph.read_json(FEATURES)
    shown = shown_by_python(graph, browser)
    scores = node_influence(graph)  # the embedded graph's own scores, as the sliders use them
    ids = graph.schema_ids()
    ranked = sorted((i for i in range(len(ids)) if ids[i] in shown), key=lambda i: (-float(scores[i]), i))
    features = [ids[i] for i in ranked if graph.nodes[i].kind == "feature"][:10]
    errors = [ids[i] for i in ranked if graph.nodes[i].kind == "error"][:3]
    assert set(browser.execute_script("return scryingViewer.labelledIds()")) == set(features + errors)
    labels = browser.execute_script(
        "return Array.from(document.querySelectorAll('#labels text'), t => { const b = t.getBBox();"
        " return [t.dataset.for, t.textContent, b.x, b.y, b.width, b.height, getComputedStyle(t).visibility]; })")
    assert 2 * len(labels) > len(features + errors)  # most of the (up to) 13 find a free place
    assert {label[0] for label in labels} <= set(features + errors)
    assert all(visibility == "visible" and w > 20 for *_, w, h, visibility in labels)
    for a in range(len(labels)):  # no two overlap
        for b in range(a + 1, len(labels)):
            (_, _, xa, ya, wa, ha, _), (_, _, xb, yb, wb, hb, _) = labels[a], labels[b]
            assert xa + wa <= xb or xb + wb <= xa or ya + ha <= yb or yb + hb <= ya, (labels[a], labels[b])
    by_id = {n.node_id: n for n in graph.nodes}
    top = by_id[features[0]] if features[0] in by_id else next(n for n, i in zip(graph.nodes, ids, strict=True) if i == features[0])
    texts = {label[0]: label[1] for label in labels}
    if features[0] in texts:
        assert texts[features[0]].startswith(f"L{top.layer} #{top.feature} ")
    assert console(browser) == []


def test_a_transcoder_graph_opens_with_features_in_view(browser, tmp_path):
    opened(browser, tmp_path, "ioi-features")
    graph = Graph.read_json(FEATURES)
    shown = shown_by_python(graph, browser)
    drawn = browser.execute_script("return scryingViewer.visibleNodeIds()")
    assert sorted(drawn) == sorted(shown)  # the opening thresholds prune as Python does
    kinds = dict(zip(graph.schema_ids(), (n.kind for n in graph.nodes), strict=True))
    assert sum(kinds[i] == "feature" for i in drawn) >= 10
    q = browser.execute_script("return scryingViewer.qParams()")
    smaller = prune(graph, PruneConfig(node_threshold=round(q["pruningThreshold"] - 0.05, 2), edge_threshold=q["edgeThreshold"]))
    fewer = sum(1 for i, n in enumerate(graph.nodes) if n.kind == "feature" and smaller.node_mask[i])
    assert fewer < 10  # the first step that shows ten, not more than needed
    note = browser.execute_script("return document.getElementById('pruned-note').textContent")
    assert "already pruned" in note and f"{len(graph.nodes)} of 490 nodes" in note


def test_a_click_on_a_feature_shows_its_id_and_a_command_the_cli_parses(browser, tmp_path):
    data = opened(browser, tmp_path, "ioi-features")
    drawn = set(browser.execute_script("return scryingViewer.visibleNodeIds()"))
    node = next(n for n in Graph.read_json(FEATURES).nodes if n.kind == "feature" and n.node_id in drawn)  # the graph's own id
    assert node.node_id == f"{node.layer}_{node.feature}_{node.pos}"
    _click(browser, node.node_id)
    assert browser.execute_script("return document.getElementById('node-cli-id').textContent") == f"L{node.layer} #{node.feature} @{node.pos}"
    command = browser.execute_script("return document.getElementById('node-command').textContent")
    words = shlex.split(command)
    assert words[0] == "scrying"
    args = build_parser().parse_args(words[1:])
    assert args.prompt == data["metadata"]["prompt"] and args.model == "gemma-3-270m"
    assert _edits(args) == [FeatureEdit(layer=node.layer, index=node.feature, mode="set", value=0.0, pos=node.pos)]
    assert console(browser) == []


def test_a_validated_node_shows_the_three_numbers_of_the_json(browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    data = opened(browser, tmp_path, "ioi-features", PageConfig(node_threshold=1.0, edge_threshold=1.0))
    validation = data["scrying"]["metadata"]["validation"]
    rows = validation["reports"][validation["headline"]]["rows"]
    drawn = set(browser.execute_script("return scryingViewer.visibleNodeIds()"))
    on_top = browser.execute_script(  # dots a click at the centre reaches (in a crowded cell a smaller neighbour, drawn on top, may sit there)
        "return Array.from(document.querySelectorAll('#nodes [data-id]')).filter(e => { const b = e.getBoundingClientRect();"
        " const x = b.x + b.width / 2, y = b.y + b.height / 2;"
        " return [[x, y], [Math.floor(x), Math.floor(y)], [Math.round(x), Math.round(y)]].every(([px, py]) => {"
        " const hit = document.elementFromPoint(px, py); return hit && hit.closest('[data-id]') === e; }); }).map(e => e.dataset.id)")
    checked = [r for r in rows if r["node_id"] in drawn and r["node_id"] in on_top][:3]
    assert len(checked) == 3
    for row in checked:
        _click(browser, row["node_id"])
        got = browser.execute_script(
            "const p = document.getElementById('node-check'); return [p.dataset.graph, p.dataset.frozen, p.dataset.real, p.textContent]")
        assert [float(v) for v in got[:3]] == [row["predicted"], row["measured"], row["real"]]
        assert f"graph predicts {row['predicted']:#.3g} · frozen model {row['measured']:#.3g} · real model {row['real']:#.3g}" in got[3]
        ActionChains(browser).move_to_element(browser.find_element(By.CSS_SELECTOR, f"#nodes [data-id='{row['node_id']}']")).perform()
        assert f"real model {row['real']:#.3g}" in browser.find_element(By.ID, "tooltip").text
    _click(browser, checked[-1]["node_id"])  # unclick
    browser.find_element(By.ID, "shade-agreement").click()
    for row in rows:
        if row["node_id"] not in drawn:
            continue
        p, r = row["predicted"], row["real"]
        want = "opposite" if p * r < 0 else ("agree" if 0.5 <= abs(p) / max(abs(r), 1e-12) <= 2 else "size")
        classes = browser.execute_script(f"return document.querySelector(\"#nodes [data-id='{row['node_id']}']\").getAttribute('class')")
        assert f"check-{want}" in classes.split(), (row, classes)
    assert console(browser) == []


@pytest.mark.parametrize("name", ["ioi-features", "dallas-two-hop-features", "ioi-components"])
def test_the_page_says_what_its_validation_says(browser, tmp_path, name):
    data = opened(browser, tmp_path, name)
    text = browser.execute_script("return document.getElementById('summary').textContent")
    assert text == summarise(data).sentence
    reports = data["scrying"]["metadata"]["validation"]["reports"]
    if name.endswith("-features"):
        real, baseline = reports["graph vs real, scale 0"], reports["activation x gradient vs real, scale 0"]
        low, high = real["spearman_ci"]
        zero = low <= 0 <= high
        assert zero == (name == "dallas-two-hop-features")  # the gallery's graphs read both forms of the sentence
        said = " (indistinguishable from 0)," if zero else ","
        assert f"graph vs real model, Spearman {real['spearman']:.2f} [{low:.2f}, {high:.2f}]{said} below" in text
        assert f"below the activation × gradient baseline {baseline['spearman']:.2f}" in text
        assert "graph vs frozen" not in text
    else:
        recovered = data["scrying"]["metadata"]["scores"]["circuit_recovers"]
        assert f"keep {100 * recovered:.0f}%" in text
    assert "undefined" not in browser.execute_script("return document.body.innerText")


def test_a_component_page_draws_the_edge_that_helps_the_answer_blue(browser, tmp_path):
    data = opened(browser, tmp_path, "ioi-components")
    legend = browser.execute_script("return document.querySelector('.legend').textContent")
    assert "component" in legend and "feature" not in legend and "error" not in legend
    assert "helps the answer (corrupting it lowers the metric)" in legend
    target = next(n["node_id"] for n in data["nodes"] if n.get("is_target_logit"))
    _click(browser, target)
    strokes = browser.execute_script(
        "return Array.from(document.querySelectorAll('#highlight .hl-edge'), e => [+e.dataset.weight, e.getAttribute('stroke')])")
    assert strokes and any(w < 0 for w, _ in strokes)
    assert all(stroke == ("#1f77b4" if w < 0 else "#d62728") for w, stroke in strokes)
    assert console(browser) == []


def test_a_supernode_sits_on_a_layer_its_members_are_on(browser, tmp_path):
    from selenium.webdriver.common.by import By

    opened(browser, tmp_path, "ioi-neurons", PageConfig(node_threshold=1.0, edge_threshold=1.0))
    graph = Graph.read_json(GALLERY / "ioi-neurons.json")
    drawn = set(browser.execute_script("return scryingViewer.visibleNodeIds()"))
    by_layer: dict[int, list[str]] = {}
    for node_id, node in zip(graph.schema_ids(), graph.nodes, strict=True):
        if node.kind == "feature" and node_id in drawn:
            by_layer.setdefault(node.layer, []).append(node_id)
    low, high = min(by_layer), max(by_layer)  # members on two far-apart layers: the mean is on neither
    members = [by_layer[low][0], by_layer[high][0], by_layer[high][1]]
    for node_id in members:
        _click(browser, node_id, shift=True)
    for node_id in members:
        browser.find_element(By.CSS_SELECTOR, f"#subgraph-svg rect[data-id='{node_id}']").click()
    browser.find_element(By.ID, "group").click()
    rows = browser.execute_script("return Array.from(document.querySelectorAll('#subgraph-svg .axis'), e => e.textContent)")
    assert rows == [f"L{high}"]  # the layer two of its three members are on
    assert console(browser) == []


def _tiny_feature_page(tmp_path):
    """A transcoder graph of a tiny model whose feature cards come from labels.json (written by
    ``label_features`` on corpus windows), as ``scrying trace --transcoders DIR`` makes it."""
    from scrying.attribution.trace import trace
    from scrying.transcoders import (
        TranscoderBasis,
        label_features,
        read_cards,
        write_labels,
        write_transcoders,
    )
    from tests.test_node_cards import KEEP_ALL, windows
    from tests.test_transcoder_graph import random_set
    from tests.tiny_models import tiny

    model = tiny("gemma3", tmp_path)
    tset = random_set(model.cfg.d_model, model.cfg.n_layers, seed=7, skip=False)
    first = trace(model, "t3 t4 t5 t6 t7", KEEP_ALL, model_name="tiny", validate=False, basis=TranscoderBasis(tset), cards=False)
    wanted = sorted({(n.layer, n.feature) for n in first.pruned.nodes if n.kind == "feature"})
    directory = write_transcoders(tset, tmp_path / "tc")
    write_labels(directory, label_features(model, tset, wanted, windows(n=24)))
    basis = TranscoderBasis(tset, cards=read_cards(directory))
    return trace(model, "t3 t4 t5 t6 t7", KEEP_ALL, model_name="tiny", validate=False, basis=basis).pruned


def test_a_click_on_a_transcoder_feature_shows_its_card(browser, tmp_path):
    graph = _tiny_feature_page(tmp_path)
    path = graph.write_json(tmp_path / "tiny.json")
    data = json.loads(path.read_text())
    open_page(browser, write_page(data, tmp_path / "tiny.html", PageConfig(node_threshold=1.0, edge_threshold=1.0)))
    cards = data["scrying"]["metadata"]["cards"]
    node = max((n for n in graph.nodes if n.kind == "feature"), key=lambda n: len(cards[n.node_id]["contexts"]))
    card = cards[node.node_id]
    assert len(card["contexts"]) >= 3
    _click(browser, node.node_id)
    assert browser.execute_script("return document.getElementById('node-cli-id').textContent") == f"L{node.layer} #{node.feature} @{node.pos}"
    shown = browser.execute_script(
        "return Array.from(document.querySelectorAll('#card-contexts .context'), c => [c.querySelector('.hot').textContent,"
        " Array.from(c.querySelectorAll('.ctx-tok'), t => t.textContent).join('')])")
    assert len(shown) == len(card["contexts"]) >= 3
    for (hot, text), context in zip(shown, card["contexts"], strict=True):
        assert hot == context["tokens"][context["at"]] and text == "".join(context["tokens"])
    promoted = browser.execute_script("return Array.from(document.querySelectorAll('#card-promotes .tok'), t => JSON.parse(t.textContent))")
    assert promoted == [t for t, _ in card["promotes"]] and len(promoted) == 5
    assert f"activation here: {node.activation:#.3g}" in browser.find_element("id", "node-card").text
    assert console(browser) == []


def test_a_click_on_a_head_shows_its_pattern_and_ablation_effect(browser, tmp_path):
    from scrying.attribution.config import TraceConfig
    from scrying.attribution.trace import trace
    from tests.tiny_models import tiny

    model = tiny("gpt2", tmp_path)
    result = trace(model, "t3 t4 t5 t3 t4", TraceConfig(level="components", corrupt="t3 t6 t5 t3 t4"), model_name="tiny")
    data = json.loads(result.pruned.write_json(tmp_path / "heads.json").read_text())
    open_page(browser, write_page(data, tmp_path / "heads.html"))
    cards = data["scrying"]["metadata"]["cards"]
    drawn = set(browser.execute_script("return scryingViewer.visibleNodeIds()"))
    ids = dict(zip((n.node_id for n in result.pruned.nodes), result.pruned.schema_ids(), strict=True))
    head = next(n for n in result.pruned.nodes if n.kind == "component" and n.feature >= 0 and ids[n.node_id] in drawn)
    _click(browser, ids[head.node_id])
    effect = browser.execute_script("return document.getElementById('card-effect').dataset.effect")
    assert float(effect) == cards[head.node_id]["effect"]
    cells = browser.execute_script(
        "return Array.from(document.querySelectorAll('#card-pattern tr'), r => Array.from(r.querySelectorAll('td'), d => d.title))")
    pattern = cards[head.node_id]["pattern"]
    rows = [r for r in cells if r]
    assert len(rows) == len(pattern) == len(data["scrying"]["prompt_tokens"])
    assert all(len(r) == len(p) for r, p in zip(rows, pattern, strict=True))
    assert console(browser) == []


def test_a_graph_renders_the_viewer_inline_and_as_a_png(browser, tmp_path):
    """In a notebook a Graph shows the interactive viewer in an iframe (its script runs there, no
    server); :func:`scrying.viewer.screenshot_png` is the page as it opens."""
    from selenium.webdriver.common.by import By

    from scrying.viewer import screenshot_png

    graph = Graph.read_json(FEATURES)
    host = tmp_path / "notebook.html"
    host.write_text(f"<!DOCTYPE html><html><body>{graph._repr_html_()}</body></html>", encoding="utf-8")
    browser.get(host.resolve().as_uri())
    browser.switch_to.frame(browser.find_element(By.TAG_NAME, "iframe"))
    try:
        assert browser.execute_script("return document.body.getAttribute('data-ready')") == "1"
        assert len(browser.execute_script("return scryingViewer.visibleNodeIds()")) > 10
    finally:
        browser.switch_to.default_content()
    png = screenshot_png(json.loads(FEATURES.read_text()))
    assert png is not None and png.startswith(b"\x89PNG") and len(png) > 20_000


def test_no_dot_hides_under_a_bigger_one(browser, tmp_path):
    """In a crowded cell a smaller dot is drawn over a bigger neighbour, so a click at its centre
    reaches it: on the gallery's feature pages and on the one-session set's IOI graph (the
    gallery's before 2026-12-08), whose cells are crowded."""
    crowded = {}
    for folder, name in [(GALLERY, n) for n in ("ioi-features", "dallas-texas-features", "dallas-two-hop-features")] + [(SESSION_GRAPHS, "ioi-features")]:
        covered, crowded[folder, name] = _covered_dots(browser, tmp_path / f"{folder.parent.name}-{name}", name, folder)
        assert covered == [], (folder, name)
    assert crowded[SESSION_GRAPHS, "ioi-features"] > 0  # a page with crowded cells: the check has something to check


def _covered_dots(browser, tmp_path: Path, name: str, folder: Path) -> tuple[list[str], int]:
    """``(ids of dots a bigger dot covers at their centre, dots overlapping a bigger one)`` of
    ``name``'s page with every node shown."""
    tmp_path.mkdir()
    opened(browser, tmp_path, name, PageConfig(node_threshold=1.0, edge_threshold=1.0), folder=folder)
    covered = browser.execute_script(
        "const dots = Array.from(document.querySelectorAll('#nodes circle[data-id]'));"
        " return dots.filter(e => { const b = e.getBoundingClientRect();"
        " const hit = document.elementFromPoint(b.x + b.width / 2, b.y + b.height / 2);"
        " const dot = hit && hit.closest('[data-id]');"
        " return dot && dot !== e && dot.tagName === 'circle' && +dot.getAttribute('r') > +e.getAttribute('r'); })"
        ".map(e => e.dataset.id)")
    overlapping = browser.execute_script(
        "const dots = Array.from(document.querySelectorAll('#nodes circle[data-id]'));"
        " return dots.filter(e => dots.some(o => o !== e && +o.getAttribute('r') > +e.getAttribute('r') &&"
        " Math.hypot(o.getAttribute('cx') - e.getAttribute('cx'), o.getAttribute('cy') - e.getAttribute('cy')) < +o.getAttribute('r'))).length")
    assert console(browser) == []
    return covered, overlapping
