"""circuit-tracer's viewer shows scrying's graphs right: each kind of node gets the
``feature_type`` circuit-tracer heads as scrying means it, a component graph's nodes sit in their
layout columns (not all at the last token), ``scan`` / ``transcoder_list`` name the local folders
of the feature files, and those files hold each feature's card as circuit-tracer's feature panel
reads it (:mod:`scrying.attribution.graph_json`, :mod:`scrying.attribution.circuit_tracer_files`).

The last test opens graphs in circuit-tracer's own viewer (offline build, headless Chromium;
``graphs/circuit_tracer_view.py``) when ``SCRYING_CIRCUIT_TRACER`` names a circuit-tracer checkout
(and ``SCRYING_CIRCUIT_TRACER_LIBS``, or its ``node_modules``, holds d3, dagre and pako); it is
skipped otherwise. Nothing of circuit-tracer is in this repository.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
import torch

from scrying.attribution import Graph
from scrying.attribution.circuit_tracer_files import INDEX, feature_files, write_folder
from scrying.attribution.graph_json import cantor_pair, feature_folder
from scrying.attribution.nodes import (
    LogitTarget,
    embedding_node,
    error_node,
    feature_node,
    head_node,
    logit_node,
    mlp_node,
    summed_embedding_node,
    summed_logit_node,
)
from scrying.errors import InvalidInputError

ROOT = Path(__file__).resolve().parents[1]
TOKENS = ["<bos>", "Dallas", " is", " in"]
N_LAYERS, N_HEADS = 3, 4


def _context(tokens: list[str], at: int, top: float) -> dict:
    values = [0.0] * len(tokens)
    values[at] = top
    values[0] = -0.5  # a negative activation: below the colour scale
    return {"activation": top, "tokens": tokens, "values": values, "at": at}


def feature_graph(**metadata) -> Graph:
    """Embeddings, two nodes of one feature (L1 #7 at two positions), a feature without a
    card, an error node and the logit; cards for L1 #7 and L0 #3."""
    nodes = [embedding_node(p, 100 + p, t) for p, t in enumerate(TOKENS)]
    nodes += [
        feature_node(0, 1, 3, "L0 #3", 2.0), feature_node(1, 2, 7, "L1 #7", 1.0), feature_node(1, 3, 7, "L1 #7", 3.0),
        feature_node(2, 3, 9, "L2 #9", 0.5), error_node(1, 3, "neurons"),
        logit_node(N_LAYERS, 3, LogitTarget(42, " Texas", 0.5), is_target=True),
    ]
    n = len(nodes)
    adjacency = torch.zeros(n, n, dtype=torch.float64)
    for target, source, weight in [(4, 1, 0.5), (5, 4, 0.25), (6, 5, 1.0), (7, 6, -0.5), (8, 7, 2.0), (9, 6, 1.5), (9, 8, 0.75), (9, 3, 0.1)]:
        adjacency[target, source] = weight
    card7 = {
        "kind": "neurons", "promotes": [[" Texas", 3.5], [" Austin", 2.0]], "suppresses": [[" Ohio", -1.5]],
        "contexts": [_context(["The", " city", " of", " Dallas", "\n"], 3, 4.0), _context(["In", " Houston", ","], 1, 2.0)],
        "contexts_from": "8 windows of 64 tokens of corpus.txt",
    }
    card3 = {"kind": "neurons", "promotes": [["a", 1.0]], "suppresses": [["b", -1.0]], "contexts": [_context(["x", "y"], 1, 0.5)]}
    meta = {"targets": [" Texas"], "cards": {nodes[5].node_id: card7, nodes[6].node_id: card7, nodes[4].node_id: card3}, **metadata}
    return Graph("Dallas is in", TOKENS, "toy-model", "neurons", nodes, adjacency, metadata=meta)


def component_graph(**metadata) -> Graph:
    target = LogitTarget(42, " Texas", 0.5)
    nodes = [summed_embedding_node(N_HEADS), head_node(0, 1), head_node(0, 3), mlp_node(0, N_HEADS), head_node(2, 1),
             mlp_node(2, N_HEADS), summed_logit_node(N_LAYERS, target, N_HEADS)]
    n = len(nodes)
    adjacency = torch.zeros(n, n, dtype=torch.float64)
    for t in range(1, n):
        adjacency[t, t - 1] = -0.1 * t
    meta = {"targets": [" Texas"], "x_labels": [f"H{h}" for h in range(N_HEADS)] + ["MLP"], **metadata}
    return Graph("Dallas is in", TOKENS, "toy-model", "components", nodes, adjacency, metadata=meta)


def test_each_kind_has_the_feature_type_the_viewer_heads_as_scrying_means_it():
    types = {node.label: n["feature_type"] for node, n in zip(component_graph().nodes, component_graph().to_json()["nodes"], strict=True)}
    assert types == {
        "token embeddings (all positions)": "embedding",
        "attention L0 H1": "attention head", "attention L0 H3": "attention head", "attention L2 H1": "attention head",
        "MLP L0": "mlp reconstruction error", "MLP L2": "mlp reconstruction error",  # headed by its clerp: "MLP L2"
        "Output ' Texas' (p=0.500)": "logit",
    }
    graph = feature_graph()
    written = {node.kind: n["feature_type"] for node, n in zip(graph.nodes, graph.to_json()["nodes"], strict=True)}
    assert written == {"embedding": "embedding", "feature": "cross layer transcoder", "error": "mlp reconstruction error", "logit": "logit"}


def test_component_nodes_sit_in_distinct_layout_columns_named_on_the_axis():
    graph = component_graph()
    data = graph.to_json()
    columns = [n["ctx_idx"] for n in data["nodes"]]
    assert columns == [0, 2, 4, 5, 2, 5, 3]  # embeddings, then 1 + scrying's column (the logit in the middle)
    assert data["metadata"]["prompt_tokens"] == ["all tokens", "H0", "H1", "H2", "H3", "MLP"]
    names = [data["metadata"]["prompt_tokens"][c] for c in columns]
    assert names == ["all tokens", "H1", "H3", "MLP", "H1", "MLP", "H2"]
    cells = [(n["layer"], n["ctx_idx"]) for n in data["nodes"]]
    assert len(set(cells)) == len(cells)  # no two nodes share a (layer, column) cell
    assert data["scrying"]["prompt_tokens"] == TOKENS  # the prompt itself stays in scrying's records
    # without names for the columns, they are numbered
    unnamed = component_graph(x_labels=None).to_json()["metadata"]["prompt_tokens"]
    assert unnamed == ["all tokens", "column 0", "column 1", "column 2", "column 3", "column 4"]


def test_nodes_at_positions_keep_them_and_a_summed_node_among_them_sits_at_the_last():
    graph = feature_graph()
    graph.nodes.append(summed_embedding_node(N_HEADS))
    graph.adjacency = torch.nn.functional.pad(graph.adjacency, (0, 1, 0, 1))
    data = graph.to_json()
    assert [n["ctx_idx"] for n in data["nodes"]] == [n.pos for n in graph.nodes[:-1]] + [len(TOKENS) - 1]
    assert data["metadata"]["prompt_tokens"] == TOKENS


def test_the_viewer_fields_are_presentation_only_and_never_read_back(tmp_path):
    for graph in (component_graph(), feature_graph()):
        path = graph.write_json(tmp_path / "g.json")
        data = json.loads(path.read_text())
        for node in data["nodes"]:
            node["ctx_idx"], node["feature_type"] = 99, "cross layer transcoder"
        data["metadata"].update(prompt_tokens=["?"], scan="elsewhere", transcoder_list=[])
        path.write_text(json.dumps(data))
        back = Graph.read_json(path)
        assert back.nodes == graph.nodes and torch.equal(back.adjacency, graph.adjacency) and back.metadata == graph.metadata


def test_scan_and_transcoder_list_name_each_layers_feature_folder():
    graph = feature_graph()
    meta, slug = graph.to_json()["metadata"], graph.slug()
    assert meta["scan"] == f"custom-{slug}"  # circuit-tracer's form for a list of per-layer transcoders
    assert meta["transcoder_list"] == [f"./graph_data/features/{slug}/{layer}" for layer in range(N_LAYERS)]
    meta = component_graph().to_json()["metadata"]
    assert (meta["scan"], meta["transcoder_list"]) == ("toy-model", [])  # no feature, nothing to look up
    odd = feature_graph(slug="../my graph").to_json()["metadata"]["transcoder_list"][0]
    assert odd == "./graph_data/features/-.-my-graph/0"  # a slug that is no file name stays inside the folder
    assert feature_folder("a/b", 2) == "features/a-b/2"


def test_feature_files_hold_each_cards_contexts_and_tokens_where_the_viewer_looks():
    graph = feature_graph()
    files = feature_files(graph)
    meta = graph.to_json()["metadata"]
    # the viewer fetches `${transcoder_list[layer]}/${feature}.json`, ./graph_data/ being the graph's folder
    looked_up = {
        f"{meta['transcoder_list'][int(n['layer'])].removeprefix('./graph_data/')}/{n['feature']}.json"
        for n in graph.to_json()["nodes"] if n["feature_type"] == "cross layer transcoder"
    }
    assert set(files) == looked_up - {f"features/{graph.slug()}/2/{cantor_pair(2, 9)}.json"}  # L2 #9 has no card
    seven = files[f"features/{graph.slug()}/1/{cantor_pair(1, 7)}.json"]  # one file for L1 #7's two nodes
    assert seven["transcoder_id"] == meta["transcoder_list"][1] and seven["index"] == 7
    assert seven["top_logits"] == [" Texas", " Austin"] and seven["bottom_logits"] == [" Ohio"]
    (group,) = seven["examples_quantiles"]
    assert group["quantile_name"] == "Top activations (8 windows of 64 tokens of corpus.txt)"
    first, second = group["examples"]
    assert first["tokens"] == ["The", " city", " of", " Dallas", "⏎"]  # as the viewer shows tokens
    assert first["tokens_acts_list"] == [-0.5, 0.0, 0.0, 4.0, 0.0] and first["train_token_ind"] == 3
    assert second["train_token_ind"] == 1 and second["is_repeated_datapoint"] is False
    assert (seven["act_min"], seven["act_max"]) == (0.0, 4.0)  # the colour scale: 0 to the top activation
    three = files[f"features/{graph.slug()}/0/{cantor_pair(0, 3)}.json"]
    assert three["examples_quantiles"][0]["quantile_name"] == "Top activations"
    assert (three["act_max"], three["top_logits"], three["index"]) == (0.5, ["a"], 3)


def test_a_bad_card_is_refused_naming_its_node_before_anything_is_written(tmp_path):
    graph = feature_graph()
    node_id = graph.nodes[4].node_id
    graph.metadata["cards"][node_id] = {"kind": "neurons", "contexts": [{"tokens": ["a"], "values": [1.0], "at": 1}]}
    with pytest.raises(InvalidInputError, match=f"card of node '{node_id}': context 0"):
        write_folder(graph, tmp_path / "ct")
    assert not (tmp_path / "ct").exists()
    with pytest.raises(InvalidInputError, match="must be a file name"):
        write_folder(feature_graph(slug="../x"), tmp_path / "ct")


def test_the_folder_is_laid_out_as_circuit_tracers_server_reads_it(tmp_path):
    folder = tmp_path / "data"
    one, two = feature_graph(), component_graph()
    written = write_folder(one, folder)
    assert written.graph == folder / f"{one.slug()}.json" and written.index == folder / INDEX
    assert sorted(p.relative_to(folder).as_posix() for p in written.features) == sorted(feature_files(one))
    assert json.loads(written.features[0].read_text()) == feature_files(one)[written.features[0].relative_to(folder).as_posix()]
    back = Graph.read_json(written.graph)
    assert back.nodes == one.nodes and torch.equal(back.adjacency, one.adjacency) and back.metadata == one.metadata
    write_folder(two, folder)
    write_folder(one, folder)  # written again: its entry replaced, not repeated
    index = json.loads((folder / INDEX).read_text())
    assert [g["slug"] for g in index["graphs"]] == [two.slug(), one.slug()]
    assert index["graphs"][1] == one.to_json()["metadata"]  # the entry is the graph's metadata
    assert write_folder(two, folder).features == []  # components: no feature files


def _viewer_script():
    spec = importlib.util.spec_from_file_location("circuit_tracer_view", ROOT / "graphs" / "circuit_tracer_view.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_check_script_says_what_is_missing_and_exits_2(tmp_path, capsys):
    script = _viewer_script()
    graph = component_graph().write_json(tmp_path / "g.json")
    assert script.main([str(graph), "--circuit-tracer", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    assert "no circuit-tracer viewer" in capsys.readouterr().err


def test_the_layout_check_fails_on_components_all_drawn_at_the_last_token():
    """The script's check of what the viewer drew, fed positions as circuit-tracer lays them out
    (column by ``ctx_idx``, row by layer): it passes ours, and fails the old layout, every
    component at the last token's column (spread inside it)."""
    script = _viewer_script()
    doc = component_graph().to_json()

    def drawn(columns: list[int], spread: float) -> list[dict]:  # spread: the offset of a cell's i-th node
        out, seen = [], {}
        for node, ctx in zip(doc["nodes"], columns, strict=True):
            stream = 0 if node["layer"] == "E" else int(node["layer"]) + 1
            i = seen[(ctx, stream)] = seen.get((ctx, stream), -1) + 1
            out.append({"id": node["node_id"], "ctx": ctx, "stream": stream, "x": 100.0 * ctx + 90 - spread * i, "y": 1000.0 - 50 * stream})
        return out

    ours = script.Report("ours", "")
    script.check_layout(ours, drawn([n["ctx_idx"] for n in doc["nodes"]], 20), doc, ["all tokens"])
    assert ours.failures == [], ours.lines
    old = script.Report("old", "")
    old_doc = {**doc, "nodes": [{**n, "ctx_idx": 5} for n in doc["nodes"]]}
    script.check_layout(old, drawn([5] * len(doc["nodes"]), 20), old_doc, ["all tokens"])
    assert any("scrying's layout column" in f for f in old.failures) and any("one x" in f for f in old.failures)


CIRCUIT_TRACER = os.environ.get("SCRYING_CIRCUIT_TRACER")


@pytest.mark.skipif(not CIRCUIT_TRACER, reason="set SCRYING_CIRCUIT_TRACER to a circuit-tracer checkout to open its viewer")
def test_circuit_tracers_own_viewer_draws_our_graphs_and_reads_our_feature_files(tmp_path):
    script = _viewer_script()
    checkout = Path(CIRCUIT_TRACER)
    libs = Path(os.environ.get("SCRYING_CIRCUIT_TRACER_LIBS") or checkout / "node_modules")
    features = feature_graph().write_json(tmp_path / "features.json")
    try:
        reports = script.run([ROOT / "graphs" / "gallery" / "ioi-components.json", features], checkout, libs, tmp_path / "out")
    except script.Missing as err:
        pytest.skip(str(err))
    for report in reports:
        assert report.failures == [], "\n".join(report.lines)
    components, feature = ("\n".join(r.lines) for r in reports)
    assert "columns left to right: 0 'all tokens', 1 'H0', 2 'H1', 3 'H2', 4 'H3', 5 'MLP'" in components
    assert "'MLP L3' headed 'MLP L3'" in components and "headed 'L5/2'" in components
    assert "feature panel of 0_3_1: 1 contexts" in feature  # the first feature drawn with a card: L0 #3
