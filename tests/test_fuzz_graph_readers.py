"""Readers of foreign files (``scrying view``'s graph and --state, ``Graph.read_json``) never fail
with anything but scrying's errors. Random bytes; valid graphs and view states with every field
set in turn to each kind of JSON value (a sweep); and the same with random edits at random depths
(a value replaced by a random JSON value, a key deleted or added): each is read (and rendered:
page and gallery row) or refused with a ``ScryingError``, which the CLI prints as one line and
which names the field. Deterministic (``derandomize``), and small enough for every run."""

import copy
import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from scrying.attribution import Graph
from scrying.cli.main import main
from scrying.errors import InvalidInputError, ScryingError
from scrying.viewer import ViewState, read_graph_json, read_state, write_page
from scrying.viewer.gallery import entry
from tests.test_viewer_browser import random_graph

GALLERY = Path(__file__).resolve().parents[1] / "graphs" / "gallery"
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _feature_graph() -> dict:
    graph = random_graph(n_features=4, n_edges=10, n_layers=2, n_pos=3, seed=3)
    graph.bias = torch.linspace(-1, 1, len(graph.nodes), dtype=torch.float64)
    graph.metadata = {"targets": ["a"], "scores": {"replacement_score_unselected_as_error": 0.5}}
    return graph.to_json()


# Valid graphs: a component graph from the gallery (scores, a validation), a feature graph (every
# node kind, a bias), both scrying graphs that all three readers take, and the first as
# circuit-tracer writes it (no ``scrying`` records), which only the page takes.
BASES = [json.loads((GALLERY / "ioi-components.json").read_text()), _feature_graph()]
BASES.append({k: v for k, v in BASES[0].items() if k != "scrying"})
IDS = sorted({n["node_id"] for base in BASES for n in base["nodes"]} | {n["node_id"] for n in BASES[0]["scrying"]["nodes"]})
STATE = {"qParams": {**ViewState(pinned_ids=tuple(IDS[:2]), supernodes=(("pair", tuple(IDS[:2])),), clicked_id=IDS[0],
                                  node_threshold=0.5, edge_threshold=0.9).to_qparams(), "densityThreshold": 0.9}}


def _keys(value, out: set) -> set:
    if isinstance(value, dict):
        out |= set(value)
    for item in value.values() if isinstance(value, dict) else value if isinstance(value, list) else ():
        _keys(item, out)
    return out


FIELDS = sorted(_keys(BASES, _keys(STATE, set())))
_DELETE = object()
LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8), st.sampled_from(IDS),
    st.sampled_from([10**400, -1, 0, "", "\ud800", "E", "logit", "component", "feature", "float64", "Tensor",
                     "Output '\\x' (p=0.5)", "1e999", "0.5", "a,b"]),
)
VALUES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=4), inner, max_size=3), max_leaves=6)


def _objects(value, path: tuple = (), out: list | None = None) -> list[list[tuple]]:
    """The paths of a document's objects in groups: the items of each list of objects (the
    nodes, the links, a report's rows) are one group, every other object a group of its own."""
    out = [] if out is None else out
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):
        out.append([(*path, i) for i, v in enumerate(value) if isinstance(v, dict)])
    elif isinstance(value, dict) and not (path and isinstance(path[-1], int)):
        out.append([path])
    for key, child in value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ():
        _objects(child, (*path, key), out)
    return out


def _at(data, path: tuple):
    for key in path:
        data = data[key]
    return data


@st.composite
def mutated(draw, bases: list) -> dict:
    """A copy of one of ``bases`` with 1-3 edits. An edit walks down to a random depth and there
    replaces a value by a random JSON value, deletes or duplicates a key or item, or adds a key;
    or it sets one field (of the object's own or any other name) of one or all objects of a
    group (say every node) to a random JSON value, or deletes it."""
    base = draw(st.sampled_from(bases))
    data, groups = copy.deepcopy(base), _objects(base)
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 2)) > 0:
            group = draw(st.sampled_from(groups))
            paths = group if draw(st.integers(0, 2)) > 0 else [draw(st.sampled_from(group))]
            own = sorted(_at(base, group[0]))
            key = draw(st.sampled_from(own) if own and draw(st.integers(0, 4)) > 0 else st.sampled_from(FIELDS))
            value = draw(VALUES | st.just(_DELETE))
            for path in paths:
                try:
                    target = _at(data, path)
                    if value is _DELETE:
                        target.pop(key, None)
                    else:
                        target[key] = value
                except (KeyError, IndexError, TypeError):  # an earlier edit moved it
                    pass
            continue
        parent, key, value = None, None, data
        while isinstance(value, dict | list) and value and (parent is None or draw(st.integers(0, 3)) > 0):
            key = draw(st.sampled_from(list(value)) if isinstance(value, dict) else st.integers(0, len(value) - 1))
            parent, value = value, value[key]
        if parent is None:  # an earlier edit emptied the file's object
            break
        action = draw(st.sampled_from(["replace", "delete", "duplicate", "add"]))
        if action == "replace":
            parent[key] = draw(VALUES)
        elif action == "delete":
            del parent[key]
        elif action == "duplicate" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(value))
        elif isinstance(value, dict):
            value[draw(st.sampled_from(FIELDS) | st.text(max_size=4))] = draw(VALUES)
    return data


def json_bytes(strategy) -> st.SearchStrategy[bytes]:
    return strategy.map(lambda v: json.dumps(v).encode())


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def view(path: Path, work: Path) -> None:
    """What ``scrying view`` and the gallery do with a graph file."""
    data = read_graph_json(path)
    write_page(data, work / "page.html")
    entry("g", data)


def read_or_refuse(call, path: Path, content: bytes, *args) -> str:
    """``call(path)`` reads ``content`` or raises a ScryingError (what happened, in words);
    anything else fails the test."""
    path.write_bytes(content)
    try:
        call(path, *args)
    except ScryingError as err:
        return f"refused: {str(err).removeprefix(repr(str(path)))[:40]}"
    return "read"


READERS = {"view": view, "Graph.read_json": Graph.read_json, "read_state": read_state}
SWAPS = [None, 10**400, "x", ["x"], {"x": 1}]  # one value of each kind a field may wrongly hold


@pytest.mark.parametrize(("reader", "base"), [("view", 0), ("view", 2), ("Graph.read_json", 1), ("read_state", "state")])
def test_every_field_of_every_kind_is_read_or_refused(work, reader, base):
    """Every field of every object of a valid file (of every node at once, every link ...) set
    in turn to each kind of JSON value: a systematic sweep beside the random edits below. The
    page reads the most of the component graph (scores, validation) and, without scrying's
    records, the most of circuit-tracer's fields; Graph.read_json of the feature graph (every
    node kind, a bias)."""
    base = STATE if base == "state" else BASES[base]
    text, crashes = json.dumps(base), []
    for group in _objects(base):
        for key, value in ((k, v) for k in sorted(_at(base, group[0])) for v in SWAPS):
            data = json.loads(text)
            for path in group:
                _at(data, path)[key] = value
            try:
                read_or_refuse(READERS[reader], work / "swap.json", json.dumps(data).encode(), *([work] * (reader == "view")))
            except Exception as err:  # collected, so that one run names every crash
                crashes.append(f"{'.'.join(map(str, group[0]))}.{key} = {value!r:.20}: {type(err).__name__}: {str(err)[:300]}")
    assert crashes == []


@settings(FUZZ, max_examples=100)
@given(content=st.binary(max_size=300) | json_bytes(VALUES))
def test_every_reader_reads_or_refuses_any_bytes(work, content):
    event(read_or_refuse(view, work / "graph.json", content, work))
    event(read_or_refuse(Graph.read_json, work / "graph.json", content))
    event(read_or_refuse(read_state, work / "graph.json", content))


@FUZZ
@given(content=json_bytes(mutated(BASES)))
def test_view_reads_or_refuses_any_edit_of_a_graph(work, content):
    event(read_or_refuse(view, work / "graph.json", content, work))


@FUZZ
@given(content=json_bytes(mutated(BASES[:2])))
def test_graph_read_json_reads_or_refuses_any_edit_of_a_graph(work, content):
    event(read_or_refuse(Graph.read_json, work / "graph.json", content))


@FUZZ
@given(content=json_bytes(mutated([STATE, BASES[1]]) | st.dictionaries(st.sampled_from(list(STATE["qParams"])), VALUES)))
def test_read_state_reads_or_refuses_any_edit_of_a_state(work, content):
    event(read_or_refuse(read_state, work / "state.json", content))


def test_the_unmutated_files_are_read(work):
    for base in BASES:
        (work / "ok.json").write_text(json.dumps(base))
        view(work / "ok.json", work)
        if "scrying" in base:
            assert Graph.read_json(work / "ok.json").to_json()["links"] == base["links"]
    (work / "state.json").write_text(json.dumps(STATE))
    assert read_state(work / "state.json").pinned_ids == tuple(IDS[:2])


def _edit(data: dict, path: tuple, value) -> dict:
    data = copy.deepcopy(data)
    *parents, last = path
    target = data
    for key in parents:
        target = target[key]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return data


GRAPH_CASES = [  # (where, value, what the message must say)
    (("nodes", 3, "clerp"), 5, "node 3: 'clerp' must be a string, got 5"),
    (("scrying",), 5, "'scrying' must be an object or null, got 5"),
    (("metadata",), ["a"], "'metadata' must be an object, got ['a']"),
    (("scrying", "metadata"), [], "scrying: 'metadata' must be an object or null"),
    (("nodes", 0, "node_id"), 7, "node 0: 'node_id' must be a string, got 7"),
    (("nodes", 1, "node_id"), ["x"], "node 1: 'node_id' must be a string"),
    (("nodes", 2, "feature_type"), {}, "node 2: 'feature_type' must be a string"),
    (("nodes", 24, "token_prob"), "0.9", "node 24: 'token_prob' must be a finite number or null, got '0.9'"),
    (("links", 0, "weight"), 10**400, "link 0: 'weight' must be a finite number"),
    (("scrying", "nodes", 2, "label"), 3, "scrying.nodes[2]: 'label' must be a string"),
    (("scrying", "metadata", "scores", "circuit_recovers"), "high", "scores: 'circuit_recovers' must be a finite number"),
    (("scrying", "metadata", "validation", "reports"), _DELETE, "scrying.metadata.validation: 'reports' is missing"),
    (("scrying", "metadata", "validation", "headline"), "nope", "'headline' 'nope' names none of its reports"),
    (("scrying", "metadata", "validation", "reports", "EAP-IG vs exact patching", "spearman_ci"), [1],
     "spearman_ci' must be a [low, high] pair"),
    (("metadata", "prompt"), "\ud800", "metadata.prompt holds a lone surrogate"),
    (("qParams", "pinnedIds"), 5, "qParams pinnedIds must be node ids"),
]


@pytest.mark.parametrize(("where", "value", "message"), GRAPH_CASES, ids=[".".join(map(str, c[0])) for c in GRAPH_CASES])
def test_a_bad_field_is_named(work, where, value, message):
    path = work / "bad.json"
    path.write_text(json.dumps(_edit(BASES[0], where, value)))
    with pytest.raises(InvalidInputError) as err:
        read_graph_json(path)
    assert message in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("content", [b"\xff\xfe{}", b"[" * 100_000, b"[" * 500 + b"]" * 500, b'{"a": NaN}', b"1" * 5000])
def test_files_that_are_not_json_are_refused_by_every_reader(work, content):
    path = work / "bad.json"
    path.write_bytes(content)
    for reader in (read_graph_json, Graph.read_json, read_state):
        with pytest.raises(InvalidInputError, match="not UTF-8" if content.startswith(b"\xff") else ".") as err:
            reader(path)
        assert str(path) in str(err.value)


@pytest.mark.parametrize(("where", "value", "message"), [
    (("scrying", "dtype"), "Tensor", "scrying: 'dtype' must be one of"),
    (("scrying", "nodes"), {"a": 1}, "scrying: 'nodes' must be a list"),
    (("scrying", "nodes", 0, "odd"), 1, "scrying.nodes[0]: no node has the field 'odd'"),
    (("scrying", "nodes", 0, "layer"), "1", "scrying.nodes[0]: 'layer' must be an integer"),
    (("scrying", "bias"), [0.0], "'bias' has 1 values for 15 nodes"),
    (("scrying", "bias", 0), "x", "scrying: 'bias' must be finite numbers or null"),
    (("links", 0, "weight"), "1", "link 0: 'weight' must be a finite number"),
    (("scrying", "nodes", 14, "token"), 5, "scrying.nodes[14]: 'token' must be a string or null, got 5"),
])
def test_graph_read_json_names_the_field(work, where, value, message):
    path = work / "bad.json"
    path.write_text(json.dumps(_edit(BASES[1], where, value)))
    with pytest.raises(InvalidInputError) as err:
        Graph.read_json(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_a_label_is_text_and_never_parsed(work):
    """A logit node's label is read back as it is, whatever it holds: the node's token is its own
    field (restored from the stored targets), never parsed out of the label."""
    label = "Output " + "-" * 100_000 + "1 (p=0.5)"  # once too deeply nested for literal_eval
    path = work / "label.json"
    path.write_text(json.dumps(_edit(BASES[1], ("scrying", "nodes", 14, "label"), label)))
    node = Graph.read_json(path).nodes[14]
    assert node.kind == "logit" and node.label == label and node.token is None  # two logits, one target


@pytest.mark.parametrize(("q", "message"), [
    ({"pinnedIds": 5}, "pinnedIds must be node ids"),
    ({"clickedId": 5}, "clickedId must be a string, got 5"),
    ({"pruningThreshold": 10**400}, "pruningThreshold must be a number"),
    ({"supernodes": "[" * 100_000}, "supernodes is not JSON"),
])
def test_read_state_names_the_field(work, q, message):
    path = work / "state.json"
    path.write_text(json.dumps({"qParams": q}))
    with pytest.raises(InvalidInputError, match=message):
        read_state(path)


@pytest.mark.parametrize("case", [0, 1, 2, 4, 12, "state", "bytes"])
def test_scrying_view_prints_one_error_line(work, capsys, case):
    bad, args = work / "bad.json", ["view", str(work / "bad.json")]
    if case == "bytes":
        bad.write_bytes(b"\x80not utf-8")
    elif case == "state":  # a good graph, a bad --state
        bad.write_text(json.dumps({"qParams": {"supernodes": [["lonely"]]}}))
        args = ["view", str(GALLERY / "ioi-components.json"), "--state", str(bad)]
    else:
        bad.write_text(json.dumps(_edit(BASES[0], *GRAPH_CASES[case][:2])))
    assert main([*args, "--out", str(work / "x.html")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"scrying: error: {str(bad)!r}"), lines
