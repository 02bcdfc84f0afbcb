"""The graph page read as a person reads it, in headless Chromium with no network: a click lights
up exactly the node's edges (checked against the edges Python's pruning keeps), the sliders prune
as :func:`scrying.attribution.influence.prune` does, a pinned subgraph with a supernode survives a
reload through the URL fragment, hostile prompt text stays text, and nothing reaches the console.

One browser serves the whole module (selenium 4.51 + Debian chromium-driver: ``make browser``)."""

from __future__ import annotations

import json
import random
import shutil

import pytest
import torch

from scrying.attribution import Graph, Node
from scrying.attribution.influence import PruneConfig, prune
from scrying.viewer import PageConfig, ViewState, read_state, write_page

GALLERY_GRAPH = "graphs/gallery/dallas-texas.json"
PAYLOADS = [
    "<script>alert(1)</script>",
    "</script><script>document.title='pwned'</script>",
    "<img src=x onerror=\"document.title='pwned'\">",
]


def random_graph(
    *, n_features: int, n_edges: int, n_layers: int = 6, n_pos: int = 6, seed: int = 0, connected: bool = False
) -> Graph:
    """A random layered graph with every node kind, error nodes (no inputs) and dead ends, so
    pruning has work to do: influence, both thresholds, and dead-node removal. ``connected``:
    first give every node an edge up to a feature or logit, so every node reaches the logits."""
    rng = random.Random(seed)
    tokens = [f"tok{i}" for i in range(n_pos)]
    nodes = [Node(f"E_{100 + p}_{p}", "embedding", -1, p, 100 + p, f"{tokens[p]!r} @{p}") for p in range(n_pos)]
    nodes += [Node(f"err_{layer}_{p}", "error", layer, p, -1, f"error L{layer} @{p}") for layer in range(n_layers) for p in range(n_pos)]
    for k in range(n_features):
        layer, p = rng.randrange(n_layers), rng.randrange(n_pos)
        nodes.append(Node(f"f_{layer}_{k}_{p}", "feature", layer, p, k, f"L{layer} neuron {k}", rng.gauss(0, 2)))
    last = n_pos - 1
    nodes.append(Node("logit_7", "logit", n_layers, last, 7, "Output 'a' (p=0.700)", token_prob=0.7, is_target=True))
    nodes.append(Node("logit_8", "logit", n_layers, last, 8, "Output 'b' (p=0.200)", token_prob=0.2))
    n = len(nodes)
    adjacency = torch.zeros(n, n, dtype=torch.float64)
    made = 0
    if connected:
        for s, a in enumerate(nodes):
            ups = [t for t, b in enumerate(nodes) if b.kind in ("feature", "logit") and b.layer > a.layer and b.pos >= a.pos]
            if a.kind != "logit" and made < n_edges:
                adjacency[rng.choice(ups), s] = rng.gauss(0, 1)
                made += 1
    while made < n_edges:
        s, t = rng.randrange(n), rng.randrange(n)
        a, b = nodes[s], nodes[t]
        if a.layer >= b.layer or a.pos > b.pos or b.kind in ("embedding", "error") or adjacency[t, s] != 0:
            continue
        adjacency[t, s] = rng.gauss(0, 1)
        made += 1
    return Graph(" ".join(tokens), tokens, "toy", "neurons", nodes, adjacency)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "Chromium and chromedriver are required: make browser (apt-get install chromium chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1100",
                "--disable-background-networking", "--disable-component-update", "--no-first-run"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(options=options, service=Service(driver))
    yield session
    session.quit()


def open_page(browser, path, fragment: str = ""):
    browser.get(path.resolve().as_uri() + fragment)
    assert browser.execute_script("return document.body.getAttribute('data-ready')") == "1", console(browser)


def console(browser) -> list:
    """Console messages since the last call (the page writes none when all is well)."""
    return browser.get_log("browser")


def expected(graph: Graph, node_threshold: float, edge_threshold: float):
    """The node ids and (source, target) edges Python's pruning keeps."""
    result = prune(graph, PruneConfig(node_threshold=node_threshold, edge_threshold=edge_threshold))
    ids = graph.schema_ids()
    kept = {ids[i] for i in result.node_mask.nonzero().flatten().tolist()}
    targets, sources = result.edge_mask.nonzero(as_tuple=True)
    edges = {(ids[s], ids[t]) for s, t in zip(sources.tolist(), targets.tolist(), strict=True)}
    return kept, edges


def test_sliders_prune_as_python_does(browser, tmp_path):
    graph = Graph.read_json(GALLERY_GRAPH)
    page = write_page(json.loads(open(GALLERY_GRAPH).read()), tmp_path / "page.html")
    open_page(browser, page)
    sizes = []
    for node_threshold in (0.3, 0.5, 0.7, 0.9, 1.0):
        browser.execute_script(  # move the slider as a reader does: value, then an input event
            "var s = document.getElementById('node-threshold'); s.value = arguments[0];"
            "s.dispatchEvent(new Event('input'));", node_threshold)
        browser.execute_script("return new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)))")
        kept, edges = expected(graph, node_threshold, 0.85)
        drawn = browser.execute_script("return Array.from(document.querySelectorAll('#nodes .node'), e => e.dataset.id)")
        assert sorted(drawn) == sorted(kept), node_threshold
        assert browser.execute_script("return scryingViewer.visibleEdgeCount()") == len(edges)
        sizes.append(len(kept))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]  # the slider adds detail
    assert console(browser) == []


def test_pruning_equals_python_on_a_random_graph(browser, tmp_path):
    graph = random_graph(n_features=120, n_edges=1500, seed=3)
    page = write_page(graph.to_json(), tmp_path / "random.html")
    open_page(browser, page)
    for node_threshold in (0.2, 0.5, 0.8, 0.95):
        for edge_threshold in (0.5, 0.9, 0.99):
            kept, edges = expected(graph, node_threshold, edge_threshold)
            browser.execute_script("scryingViewer.setThresholds(arguments[0], arguments[1])", node_threshold, edge_threshold)
            drawn = browser.execute_script("return scryingViewer.visibleNodeIds()")
            assert sorted(drawn) == sorted(kept), (node_threshold, edge_threshold)
            assert browser.execute_script("return scryingViewer.visibleEdgeCount()") == len(edges)
    assert console(browser) == []


def _click(browser, node_id, *, shift=False):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    element = browser.find_element(By.CSS_SELECTOR, f"#nodes [data-id='{node_id}']")
    actions = ActionChains(browser)
    if shift:
        actions.key_down(Keys.SHIFT).click(element).key_up(Keys.SHIFT).perform()
    else:
        actions.click(element).perform()


def test_click_lights_up_exactly_the_nodes_edges(browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    data = json.loads(open(GALLERY_GRAPH).read())
    graph = Graph.read_json(GALLERY_GRAPH)
    page = write_page(data, tmp_path / "page.html", PageConfig(node_threshold=0.8, edge_threshold=0.95))
    open_page(browser, page)
    kept, edges = expected(graph, 0.8, 0.95)
    weight = {(link["source"], link["target"]): link["weight"] for link in data["links"]}
    busiest = sorted(kept, key=lambda i: -sum(i in e for e in edges))[:2]
    faded = set()
    for node_id in busiest:
        _click(browser, node_id)
        incoming = sorted((s for s, t in edges if t == node_id), key=lambda s: -abs(weight[s, node_id]))
        outgoing = sorted((t for s, t in edges if s == node_id), key=lambda t: -abs(weight[node_id, t]))
        assert incoming or outgoing
        lit = browser.execute_script(
            "return ['incoming', 'outgoing'].map(k => document.querySelectorAll('#highlight .hl-edge.' + k).length)")
        assert lit == [len(incoming), len(outgoing)]
        for kind, others in (("incoming", incoming), ("outgoing", outgoing)):  # listed, strongest first
            rows = browser.execute_script(
                f"return Array.from(document.querySelectorAll('#{kind}-edges tr[data-id]'), r => r.dataset.id)")
            assert rows == others
        opacity = browser.execute_script(
            "return Array.from(document.querySelectorAll('#nodes .node'), e => [e.dataset.id, getComputedStyle(e).opacity])")
        lit = {i for i, o in opacity if o == "1"}
        assert lit == {node_id, *incoming, *outgoing}  # the node and its neighbours; everything else faded
        faded |= {o for i, o in opacity if i not in lit}
    assert faded == {"0.15"}  # the others, for one of the two nodes at least
    node = next(n for n in data["nodes"] if n["node_id"] in kept and n["activation"] is not None)  # hover a neuron
    ActionChains(browser).move_to_element(browser.find_element(By.CSS_SELECTOR, f"#nodes [data-id='{node['node_id']}']")).perform()
    tip = browser.find_element(By.ID, "tooltip").text
    assert node["clerp"] in tip and f"layer {node['layer']}" in tip and f"position {node['ctx_idx']}" in tip
    assert f"activation {node['activation']:.3g}" in tip and "influence" in tip
    assert console(browser) == []


def test_pinned_subgraph_with_supernode_survives_a_reload(browser, tmp_path):
    from selenium.webdriver.common.by import By

    page = write_page(json.loads(open(GALLERY_GRAPH).read()), tmp_path / "page.html")
    open_page(browser, page)
    ids = browser.execute_script("return scryingViewer.visibleNodeIds()")
    features = [i for i in ids if not i.startswith("E_") and not i.startswith("19_")][:3]
    for node_id in features:
        _click(browser, node_id, shift=True)
    for node_id in features[:2]:  # select two boxes in the subgraph panel, name them, group
        browser.find_element(By.CSS_SELECTOR, f"#subgraph-svg rect[data-id='{node_id}']").click()
    browser.find_element(By.ID, "supernode-name").send_keys("say <b>Texas</b>")
    browser.find_element(By.ID, "group").click()
    before = browser.execute_script("return scryingViewer.qParams()")
    assert before["pinnedIds"] == features
    assert before["supernodes"] == [["say <b>Texas</b>", *features[:2]]]
    url = browser.current_url
    browser.refresh()
    assert browser.current_url == url
    assert browser.execute_script("return scryingViewer.qParams()") == before
    assert ViewState.from_fragment(url) == ViewState.from_qparams(before)  # what scrying reads back
    browser.execute_script(  # the Export button's file, caught on its way to the download
        "var make = URL.createObjectURL; URL.createObjectURL = b => { window.exported = b; return make.call(URL, b); };"
        "document.getElementById('export-state').click();")
    saved = browser.execute_async_script("window.exported.text().then(arguments[arguments.length - 1])")
    exported = tmp_path / "state.json"
    exported.write_text(saved)
    assert read_state(exported) == ViewState.from_qparams(before)
    labels = browser.execute_script("return Array.from(document.querySelectorAll('#subgraph-svg .sg-label'), e => e.textContent)")
    assert len(labels) == 2 and "say <b>Texas</b>" in labels  # one supernode and one pinned node, as text
    assert browser.execute_script("return document.querySelectorAll('#subgraph-svg b').length") == 0
    pinned = browser.execute_script("return Array.from(document.querySelectorAll('#nodes .node.pinned'), e => e.dataset.id)")
    assert sorted(pinned) == sorted(features)
    edited = ViewState(pinned_ids=(features[2],), node_threshold=0.5, edge_threshold=0.9)
    browser.execute_script("location.hash = arguments[0]", "#" + edited.to_fragment())  # a link edited by hand
    browser.execute_script("return new Promise(r => setTimeout(r, 50))")
    assert ViewState.from_qparams(browser.execute_script("return scryingViewer.qParams()")) == edited
    assert console(browser) == []


def hostile_graph() -> Graph:
    tokens = ["<bos>", "Say", *PAYLOADS]
    nodes = [Node(f"E_{i}_{i}", "embedding", -1, i, i, f"{t!r} @{i}") for i, t in enumerate(tokens)]
    nodes.append(Node("0_7_3", "feature", 0, 3, 7, PAYLOADS[0], 1.5, 0.2, details=PAYLOADS[2]))
    nodes.append(Node("2_9_4", "logit", 1, 4, 9, f"Output {PAYLOADS[1]!r} (p=0.900)", None, None, 0.9, True))
    n = len(nodes)
    adjacency = torch.zeros(n, n, dtype=torch.float64)
    adjacency[n - 2, 3] = 0.7
    adjacency[n - 1, n - 2] = -1.3
    adjacency[n - 1, 3] = 0.4
    return Graph("Say " + " ".join(PAYLOADS), tokens, "toy", "neurons", nodes, adjacency)


def test_hostile_prompt_text_stays_text_when_clicked_and_hovered(browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    graph = hostile_graph()
    page = write_page(graph.to_json(), tmp_path / "hostile.html", PageConfig(node_threshold=1.0, edge_threshold=1.0))
    open_page(browser, page)
    _click(browser, "0_7_3")
    ActionChains(browser).move_to_element(browser.find_element(By.CSS_SELECTOR, "#nodes [data-id='0_7_3']")).perform()
    assert browser.title == "scrying: " + graph.prompt  # shown as written; no payload rewrote it
    text = browser.execute_script("return document.body.innerText")
    assert PAYLOADS[0] in text and PAYLOADS[2] in text  # shown as written, in the panel and tooltip
    tokens = browser.execute_script("return Array.from(document.querySelectorAll('#graph-svg .token'), e => e.textContent)")
    assert tokens == graph.prompt_tokens
    made = browser.execute_script("return document.querySelectorAll('img, #node-info script, #tooltip script, svg script').length")
    assert made == 0
    assert console(browser) == []


@pytest.mark.slow
def test_a_graph_of_2000_nodes_and_20000_edges_is_interactive_within_2_s(browser, tmp_path):
    graph = random_graph(n_features=2000 - 12 - 18 * 12 - 2, n_edges=20_000, n_layers=18, n_pos=12, connected=True)
    page = write_page(graph.to_json(), tmp_path / "big.html", PageConfig(node_threshold=1.0, edge_threshold=1.0))
    open_page(browser, page)
    assert browser.execute_script("return window.scryingReadyAt") < 2000  # ms since navigation start
    assert browser.execute_script("return scryingViewer.visibleEdgeCount()") > 10_000
    assert console(browser) == []
