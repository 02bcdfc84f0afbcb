"""The viewer's Python side: the view state speaks circuit-tracer's qParams and the page's URL
fragment both ways, pages embed the graph they were given, ``scrying view`` renders a stored graph
(and a gallery) without a model, and the validation scatter puts each point where it belongs."""

import json
import re
from urllib.parse import quote

import pytest

from scrying.attribution import Graph
from scrying.cli.main import main
from scrying.errors import ConfigError, InvalidInputError
from scrying.viewer import PageConfig, ViewState, read_state, render_page, with_state
from scrying.viewer.report import scatter_svg
from tests.test_viewer_browser import random_graph

STATE = ViewState(
    pinned_ids=("3_498_1", "E_2_1", "19_9539_8"),
    supernodes=(("say Texas", ("3_498_1", "E_2_1")),),
    clicked_id="3_498_1",
    node_threshold=0.55,
    edge_threshold=0.9,
)


def test_state_round_trips_through_qparams_and_fragment():
    assert ViewState.from_qparams(STATE.to_qparams()) == STATE
    assert ViewState.from_fragment("file:///x/page.html#" + STATE.to_fragment()) == STATE
    q = STATE.to_qparams()
    assert {"pinnedIds", "supernodes", "linkType", "clickedId", "sg_pos"} <= set(q)  # circuit-tracer's QParams
    assert q["supernodes"] == [["say Texas", "3_498_1", "E_2_1"]] and q["pinnedIds"] == list(STATE.pinned_ids)


def test_state_reads_a_circuit_tracer_url():
    # circuit-tracer / Neuronpedia put qParams in the query string: pinnedIds comma-separated,
    # supernodes as JSON, unknown keys (densityThreshold) kept
    supernodes = json.dumps([["capital", "15_4494_4", "6_4662_4"], ["state", "6_4012_7"]])
    url = (f"https://example.org/graph?slug=s&pinnedIds={quote('27_22605_10,15_4494_4,6_4662_4')}"
           f"&supernodes={quote(supernodes)}&pruningThreshold=0.6&clickedId=27_22605_10&densityThreshold=0.99")
    state = ViewState.from_fragment(url)
    assert state.pinned_ids == ("27_22605_10", "15_4494_4", "6_4662_4")
    assert state.supernodes == (("capital", ("15_4494_4", "6_4662_4")), ("state", ("6_4012_7",)))
    assert state.node_threshold == 0.6 and state.clicked_id == "27_22605_10"
    assert state.to_qparams()["densityThreshold"] == "0.99"


def test_bad_states_are_refused():
    with pytest.raises(ConfigError, match="node_threshold"):
        ViewState(node_threshold=1.5)
    with pytest.raises(InvalidInputError, match="supernodes"):
        ViewState.from_qparams({"supernodes": [["lonely"]]})
    with pytest.raises(InvalidInputError, match="pruningThreshold"):
        ViewState.from_qparams({"pruningThreshold": "lots"})


def test_exported_state_and_graph_qparams_read_back(tmp_path):
    graph = random_graph(n_features=20, n_edges=80, seed=1)
    data = graph.to_json()
    ids = graph.schema_ids()
    state = ViewState(pinned_ids=(ids[10], ids[11]), supernodes=(("both", (ids[10], ids[11])),), clicked_id=ids[10])
    exported = tmp_path / "state.json"
    exported.write_text(json.dumps({"qParams": state.to_qparams()}))  # what the page's button saves
    assert read_state(exported) == state
    stored = tmp_path / "graph.json"
    stored.write_text(json.dumps(with_state(data, state)))
    assert read_state(stored) == state
    assert Graph.read_json(stored).nodes == graph.nodes  # still a scrying graph
    with pytest.raises(InvalidInputError, match="does not have"):
        with_state(data, ViewState(pinned_ids=("nope",)))


def test_page_embeds_the_graph_and_escapes_its_text():
    graph = random_graph(n_features=15, n_edges=60, seed=2)
    data = graph.to_json()
    data["metadata"]["prompt"] = "<img src=x onerror=alert(1)>"
    page = render_page(data, PageConfig(node_threshold=0.4))
    embedded = re.search(r"<script type='application/json' id='scrying-graph'>(.*?)</script>", page, re.S).group(1)
    assert json.loads(embedded)["links"] == data["links"]
    view = json.loads(re.search(r"id='scrying-view'>(.*?)</script>", page, re.S).group(1))
    assert view["node_threshold"] == 0.4 and view["edge_threshold"] == 0.85
    assert "<img" not in page.replace(embedded, "")
    broken = {**data, "links": [*data["links"], {"source": "nope", "target": data["nodes"][0]["node_id"], "weight": 1.0}]}
    with pytest.raises(InvalidInputError, match="names no node"):
        render_page(broken)


def test_scrying_view_renders_stored_graphs_and_a_gallery(tmp_path, capsys):
    folder = tmp_path / "gallery"
    for seed in (1, 2):
        random_graph(n_features=10, n_edges=40, seed=seed).write_json(folder / f"g{seed}.json")
    state = tmp_path / "state.json"
    ids = Graph.read_json(folder / "g1.json").schema_ids()
    state.write_text(json.dumps({"qParams": ViewState(pinned_ids=(ids[9],)).to_qparams()}))
    assert main(["view", str(folder / "g1.json"), "--out", str(tmp_path / "one.html"), "--state", str(state),
                 "--with-state", str(tmp_path / "with.json")]) == 0
    page = (tmp_path / "one.html").read_text()
    assert json.loads(re.search(r"id='scrying-view'>(.*?)</script>", page, re.S).group(1))["state"]["pinnedIds"] == [ids[9]]
    assert read_state(tmp_path / "with.json").pinned_ids == (ids[9],)
    assert main(["view", "--gallery", str(folder)]) == 0
    index = (folder / "index.html").read_text()
    assert re.findall(r"href='([^']+)'", index) == ["g1.html", "g2.html"]
    assert re.findall(r"<script[^>]*src='([^']+)'", (folder / "g2.html").read_text()) == ["scrying-viewer.js"]
    assert (folder / "scrying-viewer.js").exists() and (folder / "scrying-viewer.css").exists()
    assert main(["view", "--gallery", str(folder), "--out", "x.html"]) == 2  # refused, one line
    assert "give no GRAPH" in capsys.readouterr().err


def test_scatter_puts_points_on_the_diagonal_where_predicted_equals_measured():
    svg = scatter_svg([{"predicted": 1.0, "measured": 1.0}, {"predicted": -2.0, "measured": 3.0}, {"predicted": 0.5, "measured": None}])
    dots = [(float(x), float(y)) for x, y in re.findall(r"cx='([-\d.]+)' cy='([-\d.]+)'", svg)]
    assert len(dots) == 2  # the row without a measurement is left out
    x1, y1, x2, y2 = map(float, re.search(r"class='diag' x1='([-\d.]+)' y1='([-\d.]+)' x2='([-\d.]+)' y2='([-\d.]+)'", svg).groups())
    (px, py), (qx, qy) = dots
    on_line = lambda x, y: abs((x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)) < 1.0  # noqa: E731
    assert on_line(px, py) and not on_line(qx, qy)
    assert qx < px and qy < py  # predicted -2 is left of 1; measured 3 is higher up (smaller y)


def test_a_graph_with_nan_is_refused_before_it_breaks_the_page():
    data = random_graph(n_features=5, n_edges=20, seed=4).to_json()
    data["nodes"][8]["activation"] = float("nan")
    with pytest.raises(InvalidInputError, match="NaN"):
        render_page(data)
