"""The graph JSON is circuit-tracer's: each node is written as circuit-tracer's writer writes a
node of its kind (``circuit_tracer/frontend/graph_models.py``), so its viewer reads it as scrying
means it, and :meth:`Graph.read_json` still restores the graph exactly.

The reference below is written by hand from circuit-tracer's published format, not produced by
its code: ``Node.token_node`` (``E_{vocab}_{pos}``, feature = pos, jsNodeId ``E_{vocab}-{pos}``),
``Node.feature_node`` (``{layer}_{feat}_{pos}``, feature = Cantor pairing of (layer, feat),
jsNodeId ``{layer}_{feat}-0``), ``Node.error_node`` (``{layer}_-1_{pos}``, feature -1, jsNodeId
``{layer}_-1-{pos}``), ``Node.logit_node`` (``{n_layers+1}_{vocab}_{pos}``, feature = vocab,
jsNodeId ``L_{vocab}-{pos}``, clerp ``Output "{token}" (p=...)``).
"""

import json
from pathlib import Path

import pytest
import torch

from scrying.attribution.components import graph_node
from scrying.attribution.export import _positions
from scrying.attribution.graph import SCHEMA_VERSION, Graph, Node, cantor_pair
from scrying.attribution.nodes import LogitTarget
from scrying.circuits.nodes import ComponentNode
from scrying.errors import InvalidInputError

PROMPT = "The capital"
TOKENS = ["<bos>", "The", " capital"]
N_LAYERS = 2

# circuit-tracer's Node fields, in its model's order.
NODE_FIELDS = [
    "node_id", "feature", "layer", "ctx_idx", "feature_type", "token_prob", "is_target_logit",
    "run_idx", "reverse_ctx_idx", "jsNodeId", "clerp", "influence", "activation",
]

EXPECTED = {
    "metadata": {  # and scan, transcoder_list: named by the slug (test_json_matches_...)
        "prompt_tokens": ["<bos>", "The", " capital"],
        "prompt": "The capital",
        "node_threshold": None,
        "schema_version": 1,
    },
    "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
    "nodes": [
        {
            "node_id": "E_5_1", "feature": 1, "layer": "E", "ctx_idx": 1, "feature_type": "embedding",
            "token_prob": 0.0, "is_target_logit": False, "run_idx": 0, "reverse_ctx_idx": 0,
            "jsNodeId": "E_5-1", "clerp": "", "influence": 0.9, "activation": None,
        },
        {
            # (1 + 824)(1 + 824 + 1)/2 + 824 = 825 * 413 + 824 = 340725 + 824
            "node_id": "1_824_2", "feature": 341549, "layer": "1", "ctx_idx": 2,
            "feature_type": "cross layer transcoder", "token_prob": 0.0, "is_target_logit": False,
            "run_idx": 0, "reverse_ctx_idx": 0, "jsNodeId": "1_824-0", "clerp": "L1 neuron 824",
            "influence": 0.4, "activation": 1.5,
        },
        {
            # circuit-tracer leaves an error's clerp empty (the viewer then writes "Err: mlp"); a
            # non-empty clerp is what the viewer shows, so scrying's label says what the node is.
            "node_id": "0_-1_2", "feature": -1, "layer": "0", "ctx_idx": 2,
            "feature_type": "mlp reconstruction error", "token_prob": 0.0, "is_target_logit": False,
            "run_idx": 0, "reverse_ctx_idx": 0, "jsNodeId": "0_-1-2", "clerp": "L0 other neurons @2",
            "influence": 0.6, "activation": None,
        },
        {
            "node_id": "3_42_2", "feature": 42, "layer": "3", "ctx_idx": 2, "feature_type": "logit",
            "token_prob": 0.25, "is_target_logit": True, "run_idx": 0, "reverse_ctx_idx": 0,
            "jsNodeId": "L_42-2", "clerp": 'Output " Texas" (p=0.250)', "influence": None, "activation": None,
        },
    ],
    "links": [
        {"source": "E_5_1", "target": "1_824_2", "weight": 0.5},
        {"source": "0_-1_2", "target": "1_824_2", "weight": -0.25},
        {"source": "1_824_2", "target": "3_42_2", "weight": 2.0},
        {"source": "E_5_1", "target": "3_42_2", "weight": 0.125},
    ],
}


def tiny_graph(prompt: str = PROMPT, target: str = " Texas", **metadata) -> Graph:
    nodes = [
        Node("E_5_1", "embedding", -1, 1, 5, "'The' @1", None, 0.9),
        Node("1_824_2", "feature", 1, 2, 824, "L1 neuron 824", 1.5, 0.4),
        Node("0_-1_2", "error", 0, 2, -1, "L0 other neurons @2", None, 0.6),
        Node(f"{N_LAYERS + 1}_42_2", "logit", N_LAYERS, 2, 42, f"Output {target!r} (p=0.250)", None, 1.0, 0.25, True, token=target),
    ]
    adjacency = torch.zeros(4, 4, dtype=torch.float64)
    adjacency[1, 0], adjacency[1, 2], adjacency[3, 1], adjacency[3, 0] = 0.5, -0.25, 2.0, 0.125
    bias = torch.tensor([0.0, 0.75, 0.0, -1.0], dtype=torch.float64)
    meta = {"targets": [target], "feature_type": "mlp neuron", **metadata}
    return Graph(prompt, list(TOKENS), "toy-model", "neurons", nodes, adjacency, bias, meta)


def component_graph() -> Graph:
    n_heads = 4
    typed = [
        ComponentNode("embed"), ComponentNode("head", 0, 1), ComponentNode("head", 0, 3), ComponentNode("mlp", 0),
        ComponentNode("head", 1, 0), ComponentNode("mlp", 1), ComponentNode("logits"),
    ]
    nodes = [graph_node(node, N_LAYERS, n_heads, LogitTarget(42, " Texas", 0.25)) for node in typed]
    n = len(nodes)
    adjacency = torch.zeros(n, n, dtype=torch.float64)
    for target in range(1, n):
        for source in range(target):
            adjacency[target, source] = 0.1 * target - 0.01 * source
    meta = {"targets": [" Texas"], "x_labels": [f"H{h}" for h in range(n_heads)] + ["MLP"]}
    return Graph(PROMPT, list(TOKENS) + [" of"], "toy-model", "components", nodes, adjacency, metadata=meta)


def test_json_matches_circuit_tracer_field_by_field():
    data = tiny_graph().to_json()
    assert set(data) == {"metadata", "qParams", "nodes", "links", "scrying"}
    meta, slug = data["metadata"], data["metadata"]["slug"]
    assert {k: v for k, v in meta.items() if k not in ("slug", "scan", "transcoder_list")} == EXPECTED["metadata"]
    # as circuit-tracer writes a graph of per-layer transcoders: "custom-" and each layer's feature folder
    assert meta["scan"] == f"custom-{slug}"
    assert meta["transcoder_list"] == [f"./graph_data/features/{slug}/{layer}" for layer in range(N_LAYERS)]
    assert data["qParams"] == EXPECTED["qParams"]
    assert len(data["nodes"]) == len(EXPECTED["nodes"])
    for written, expected in zip(data["nodes"], EXPECTED["nodes"], strict=True):
        assert list(written) == NODE_FIELDS
        for key in NODE_FIELDS:
            assert written[key] == expected[key], (expected["node_id"], key)
    assert data["scrying"]["feature_type"] == "mlp neuron"  # scrying's own type of the feature nodes
    order = lambda links: sorted(links, key=lambda e: (e["source"], e["target"]))  # noqa: E731
    assert order(data["links"]) == order(EXPECTED["links"])


def test_slugs_are_unique_per_graph_and_overridable():
    one, same = tiny_graph(), tiny_graph()
    assert one.slug() == same.slug()
    others = [tiny_graph("The capital city"), tiny_graph(target=" Austin"), tiny_graph(corrupt_prompt="A capital")]
    slugs = {one.slug(), *(g.slug() for g in others)}
    assert len(slugs) == 4, slugs
    for slug in slugs:
        assert slug.startswith("scrying-neurons-the-capital") and slug.replace("-", "").isalnum()
    assert tiny_graph(slug="my-graph").to_json()["metadata"]["slug"] == "my-graph"
    assert one.to_json()["metadata"]["slug"] == one.slug()


def test_cantor_pairing_enumerates_the_diagonals():
    # Cantor's enumeration of N x N walks the diagonals x + y = d, y rising: (0,0), (1,0),
    # (0,1), (2,0), (1,1), (0,2), ...; the pairing is the position in that walk.
    walk = [(d - y, y) for d in range(12) for y in range(d + 1)]
    for position, (x, y) in enumerate(walk):
        assert cantor_pair(x, y) == position, (x, y)
    assert cantor_pair(13, 824) == (837 * 838) // 2 + 824
    assert cantor_pair(1, 824) == 341549


def test_logit_clerp_holds_the_token_in_double_quotes():
    for token, shown in [(" Texas", " Texas"), ("it's", "it's"), ("\n", "⏎")]:
        node = tiny_graph(target=token).to_json()["nodes"][-1]
        clerp = node["clerp"]
        assert clerp == f'Output "{shown}" (p=0.250)'
        # the viewer's own reads (util-cg.js): token between double quotes, p after "(p="
        assert clerp.split('"')[1] == shown
        assert float(clerp.split("(p=")[1].split(")")[0]) == pytest.approx(0.25)


def test_read_json_restores_the_graph_exactly(tmp_path):
    for graph in (tiny_graph(), component_graph()):
        path = graph.write_json(tmp_path / f"{graph.level}.json")
        back = Graph.read_json(path)
        assert back.nodes == graph.nodes
        assert [n.node_id for n in back.nodes] == [n.node_id for n in graph.nodes]
        assert back.adjacency.dtype == graph.adjacency.dtype and torch.equal(back.adjacency, graph.adjacency)
        assert (back.bias is None and graph.bias is None) or torch.equal(back.bias, graph.bias)
        assert (back.prompt, back.prompt_tokens, back.model_name, back.level, back.metadata) == (
            graph.prompt, graph.prompt_tokens, graph.model_name, graph.level, graph.metadata
        )
        data = json.loads(path.read_text())
        ids = {n["node_id"] for n in data["nodes"]}
        assert all(e["source"] in ids and e["target"] in ids for e in data["links"])
        assert len(data["links"]) == int((graph.adjacency != 0).sum())


def test_read_json_refuses_another_scrying_schema(tmp_path):
    path = tiny_graph().write_json(tmp_path / "g.json")
    data = json.loads(path.read_text())
    data["scrying"]["schema_version"] = SCHEMA_VERSION - 1
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidInputError, match="schema_version"):
        Graph.read_json(path)


def test_component_nodes_sit_in_their_layout_columns():
    """Summed over positions, a component graph's nodes are drawn in scrying's layout columns,
    named under circuit-tracer's axis; their ids still name the last position (never read back)."""
    graph = component_graph()
    last = len(graph.prompt_tokens) - 1
    data = graph.to_json()
    nodes = data["nodes"]
    assert data["metadata"]["prompt_tokens"] == ["all tokens", "H0", "H1", "H2", "H3", "MLP"]
    assert [n["ctx_idx"] for n in nodes] == [0] + [1 + n.column for n in graph.nodes[1:]]
    by_id = {n["node_id"]: n for n in nodes}
    head = by_id[f"0_3_{last}"]  # a0.h3
    assert head["feature"] == cantor_pair(0, 3) and head["jsNodeId"] == "0_3-0" and head["ctx_idx"] == 4
    assert head["feature_type"] == "attention head" and head["clerp"] == "attention L0 H3"
    mlp = by_id[f"1_4_{last}"]  # the MLP's index is n_heads
    assert mlp["clerp"] == "MLP L1" and mlp["feature_type"] == "mlp reconstruction error" and mlp["ctx_idx"] == 5
    assert by_id[f"E_-1_{last}"]["layer"] == "E" and by_id[f"E_-1_{last}"]["ctx_idx"] == 0
    assert data["scrying"]["feature_type"] == "component"
    assert data["metadata"]["scan"] == "toy-model" and data["metadata"]["transcoder_list"] == []  # no feature files
    assert by_id[f"3_42_{last}"]["clerp"] == 'Output " Texas" (p=0.250)'
    # scrying's layout column survives, and the figure still lays heads out by it
    coords = _positions(graph)
    assert [coords[n.node_id][0] for n in graph.nodes] == [2.0, 1.0, 3.0, 4.0, 0.0, 4.0, 2.0]


GALLERY = Path(__file__).resolve().parents[1] / "graphs" / "gallery"


def test_committed_gallery_reads_from_typed_records_and_rewrites_byte_identical(tmp_path):
    """Every committed graph reads back from its typed node records (the logits' tokens from the
    stored targets, no label parsed) and writes the very same bytes: the file format is
    unchanged."""
    paths = sorted(GALLERY.glob("*.json"))
    assert len(paths) >= 8
    for path in paths:
        graph = Graph.read_json(path)
        assert graph.write_json(tmp_path / path.name).read_bytes() == path.read_bytes(), path.name
        logits = [n for n in graph.nodes if n.kind == "logit"]
        assert [n.token for n in logits] == graph.metadata["targets"], path.name
        assert all(n.token is None for n in graph.nodes if n.kind != "logit")
        heads = [n for n in graph.nodes if n.kind == "component" and n.feature >= 0]
        assert all(n.column == n.feature and n.node_id == f"A{n.layer}.{n.feature}" for n in heads), path.name


def test_logit_token_is_a_field_never_read_from_the_label(tmp_path):
    graph = tiny_graph()
    graph.nodes[-1].label = "the answer"  # a label that names no token
    assert graph.to_json()["nodes"][-1]["clerp"] == 'Output " Texas" (p=0.250)'
    back = Graph.read_json(graph.write_json(tmp_path / "g.json"))
    assert back.nodes[-1].token == " Texas" and back.nodes[-1].label == "the answer"
    # a token other than the stored target's is stored with its node, and read back
    graph.nodes[-1].token = " Austin"
    records = graph.to_json()["scrying"]["nodes"]
    assert records[-1]["token"] == " Austin" and all("token" not in r for r in records[:-1])
    assert Graph.read_json(graph.write_json(tmp_path / "h.json")).nodes == graph.nodes
    assert tiny_graph().to_json()["scrying"]["nodes"][-1].keys() == records[0].keys()  # the target's: omitted


def test_nodes_at_a_position_have_circuit_tracer_ids():
    """The node constructors write a positioned node's id as circuit-tracer spells it (the
    hand-written reference above), from typed fields alone."""
    from scrying.attribution.nodes import embedding_node, error_node, feature_node, logit_node

    nodes = [
        embedding_node(1, 5, "The"),
        feature_node(1, 2, 824, "L1 neuron 824", 1.5),
        error_node(0, 2, "neurons"),
        logit_node(N_LAYERS, 2, LogitTarget(42, " Texas", 0.25), is_target=True),
    ]
    assert [n.node_id for n in nodes] == [n["node_id"] for n in EXPECTED["nodes"]]
    assert [(n.label, n.token) for n in nodes] == [
        ("'The' @1", None), ("L1 neuron 824", None), ("L0 other neurons @2", None), ("Output ' Texas' (p=0.250)", " Texas")
    ]


def test_no_module_parses_a_node_identity_back():
    """Ids, labels and EAP-IG names are written from typed fields and never parsed: no
    ``literal_eval``, no regex, no split on a receiver's ``<`` in the graph and circuit code."""
    root = Path(__file__).resolve().parents[1] / "scrying"
    for path in sorted([*(root / "attribution").glob("*.py"), *(root / "circuits").glob("*.py")]):
        text = path.read_text()
        for banned in ("literal_eval", "re.compile", "re.match", 'split("<")', ".split(\"_\")", "_LOGIT_LABEL"):
            assert banned not in text, (path.name, banned)
