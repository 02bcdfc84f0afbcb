"""circuit-tracer's JSON graph format, written and read in this module alone.

Each node is written as circuit-tracer's writer writes a node of its kind
(``circuit_tracer/frontend/graph_models.py``: ``Node.feature_node``, ``error_node``,
``token_node``, ``logit_node``; ``Metadata``, ``QParams``), so circuit-tracer's viewer
(``circuit_tracer/frontend/assets``) and Neuronpedia's read it as scrying means it. Every string
below is written from a node's typed fields (:class:`~scrying.attribution.nodes.Node`) and never
parsed back:

* feature nodes: ``node_id`` ``{layer}_{index}_{pos}``, ``feature`` the Cantor pairing of
  (layer, index), ``jsNodeId`` ``{layer}_{index}-0``, ``feature_type``
  ``"cross layer transcoder"``: the one type whose panel loads feature files (the viewer heads it
  ``Feature L{layer}/{index}``); scrying's own type (neuron, transcoder feature) is kept under
  ``scrying``;
* error nodes: ``{layer}_-1_{pos}``, ``feature`` -1, ``jsNodeId`` ``{layer}_-1-{pos}``,
  ``"mlp reconstruction error"`` (the viewer heads it with its ``clerp``);
* components: ids as feature nodes with the layout column as index (head, or ``n_heads`` for
  the MLP); an attention head is ``"attention head"`` (a type the viewer draws as a node and
  heads ``L{layer}/{head}``, loading no feature file), an MLP is ``"mlp reconstruction error"``:
  with no features, all of an MLP's output is what circuit-tracer's error node of that layer
  carries, and the viewer heads it with its ``clerp`` (``MLP L3``);
* embeddings: ``E_{token_id}_{pos}``, ``feature`` = pos, ``layer`` ``"E"``, ``jsNodeId``
  ``E_{token_id}-{pos}``;
* logits: ``{n_layers + 1}_{token_id}_{pos}``, ``layer`` ``n_layers + 1``, ``jsNodeId``
  ``L_{token_id}-{pos}``, ``clerp`` ``Output "{token}" (p=0.123)``.

Where nodes sit (circuit-tracer draws ``ctx_idx`` as the column, ``metadata.prompt_tokens
[ctx_idx]`` under it, ``layer`` as the row): a node at a position sits at it. A graph whose nodes
are all summed over positions (a component graph) has no positions to show, so its columns are
scrying's layout columns instead (:func:`layout`): ``ctx_idx`` 0 holds the embeddings, named
``all tokens``, and ``1 + column`` each head index and the MLP, named by
``metadata["x_labels"]`` (``H0`` ... ``MLP``); circuit-tracer's ``metadata.prompt_tokens``
are those column names, and the prompt's tokens stay in ``scrying.prompt_tokens``. A node summed
over positions in a graph that has positions sits at the last one, where the predicted token is
read. A summed node's ``node_id`` names the last position in either case (the ids files have
always had), so ``ctx_idx`` is presentation only and never read back.

``metadata.scan`` and ``transcoder_list`` say where the viewer finds feature files: a graph with
feature nodes is written as circuit-tracer writes a graph made with one transcoder per layer,
``scan`` ``custom-{slug}`` and ``transcoder_list[layer]`` the folder of that layer's feature
files, ``./graph_data/features/{slug}/{layer}`` (:func:`feature_folder`; circuit-tracer's local
server serves the graph's folder as ``/graph_data/``, and
:mod:`scrying.attribution.circuit_tracer_files` writes the files there); a graph without
feature nodes has ``scan`` the model's name and an empty list.

Layout of the file: ``metadata`` (circuit-tracer's ``Metadata``, its ``schema_version`` 1),
``qParams``, ``nodes``, ``links`` (``source``, ``target``, ``weight``: the nonzero entries of the
adjacency), and scrying's own records under ``scrying`` with scrying's :data:`SCHEMA_VERSION`:
each node's typed fields, the full node order, bias terms, dtype and metadata, so a graph reads
back exactly from them (the ``nodes`` and ``links`` ids are only matched, never parsed). A logit
node's ``token`` is stored in its record only where it is not the graph's
``metadata["targets"]`` entry of the same rank (:func:`implied_tokens`), so the files scrying
has always written hold it without a change.
"""

from __future__ import annotations

import json
import math
import reprlib
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch

from scrying.errors import InvalidInputError
from scrying.jsonl import read_json

SCHEMA_VERSION = 2  # of scrying's records (the ``scrying`` key)
CIRCUIT_TRACER_SCHEMA_VERSION = 1  # circuit-tracer's ``Metadata.schema_version``
NODE_KINDS = ("embedding", "feature", "error", "component", "logit")
#: circuit-tracer's ``feature_type`` of each kind of node (a component's: :func:`feature_type`).
FEATURE_TYPES = {
    "embedding": "embedding",
    "feature": "cross layer transcoder",
    "error": "mlp reconstruction error",
    "logit": "logit",
}
HEAD_TYPE = "attention head"  # an attention head component (a type of scrying's; see the docstring)
ALL_TOKENS = "all tokens"  # the name of a component graph's embedding column
#: The typed fields of scrying's node record, in the order written (``token``: see the docstring).
RECORD_FIELDS = (
    "node_id", "kind", "layer", "pos", "feature", "label", "activation", "influence", "token_prob",
    "is_target", "details", "column",
)


@runtime_checkable
class NodeFields(Protocol):
    """What this module reads of a node (:class:`~scrying.attribution.nodes.Node`)."""

    node_id: str
    kind: str
    layer: int
    pos: int
    feature: int
    label: str
    activation: float | None
    influence: float | None
    token_prob: float | None
    is_target: bool
    details: str
    column: int | None
    token: str | None


def cantor_pair(x: int, y: int) -> int:
    """Cantor's pairing of two naturals, circuit-tracer's ``feature`` of a feature node at layer
    ``x`` with index ``y`` (``graph_models.Node.feature_node``)."""
    return (x + y) * (x + y + 1) // 2 + y


def process_token(token: str) -> str:
    """A token as circuit-tracer's viewer shows it (``frontend/utils.py``: ``process_token``)."""
    return token.replace("\n", "⏎").replace("\t", "→").replace("\r", "↵")


def circuit_tracer_id(kind: str, layer: int, index: int, pos: int) -> str:
    """circuit-tracer's ``node_id`` of a node of ``kind`` at ``layer`` and ``pos``; ``index`` is
    the feature (or a component's column), or the token id of an embedding or a logit."""
    if kind == "embedding":
        return f"E_{index}_{pos}"
    if kind == "error":
        return f"{layer}_-1_{pos}"
    if kind == "logit":
        return f"{layer + 1}_{index}_{pos}"
    return f"{layer}_{index}_{pos}"


def _js_node_id(kind: str, layer: int, index: int, pos: int) -> str:
    if kind == "embedding":
        return f"E_{index}-{pos}"
    if kind == "error":
        return f"{layer}_-1-{pos}"
    if kind == "logit":
        return f"L_{index}-{pos}"
    return f"{layer}_{index}-0"


def _index(node: NodeFields) -> int:
    """The index circuit-tracer's id holds: a component's layout column, else ``feature``."""
    return node.column if node.kind == "component" and node.column is not None else node.feature


def feature_type(node: NodeFields) -> str:
    """circuit-tracer's ``feature_type`` of ``node`` (see the module docstring)."""
    if node.kind == "component":
        return HEAD_TYPE if node.feature >= 0 else FEATURE_TYPES["error"]
    return FEATURE_TYPES[node.kind]


def layout(nodes: list[NodeFields], prompt_tokens: list[str], metadata: dict[str, Any]) -> tuple[list[int], list[str]]:
    """Each node's ``ctx_idx`` (the column circuit-tracer draws it in) and the columns' names
    (circuit-tracer's ``metadata.prompt_tokens``): positions and the prompt's tokens, or, when
    every node is summed over positions, scrying's layout columns (see the module docstring)."""
    if not nodes or any(n.pos >= 0 for n in nodes):
        last = len(prompt_tokens) - 1
        return [n.pos if n.pos >= 0 else last for n in nodes], [process_token(t) for t in prompt_tokens]
    xs = [0 if n.kind == "embedding" else 1 + (n.column or 0) for n in nodes]
    names = metadata.get("x_labels")
    if not (isinstance(names, list) and len(names) >= max(xs) and all(isinstance(x, str) for x in names)):
        names = [f"column {c}" for c in range(max(xs))]
    return xs, [ALL_TOKENS, *names]


def feature_folder(slug: str, layer: int) -> str:
    """The folder, relative to a graph's circuit-tracer data folder, of the feature files of
    the graph's layer ``layer`` (its ``transcoder_list`` entry names it under ``./graph_data/``)."""
    name = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "-" for c in slug)
    return f"features/{'-' + name[1:] if name.startswith('.') else name}/{layer}"


def n_layers(nodes: list[NodeFields]) -> int:
    """The model's layer count as a graph knows it: its logits' layer, else one past its top node."""
    logits = [n.layer for n in nodes if n.kind == "logit"]
    return logits[0] if logits else max((n.layer for n in nodes), default=-1) + 1


def scan_fields(nodes: list[NodeFields], slug: str, model_name: str) -> tuple[str, list[str]]:
    """circuit-tracer's ``scan`` and ``transcoder_list`` of a graph (see the module docstring)."""
    if not any(n.kind == "feature" for n in nodes):
        return model_name, []
    return f"custom-{slug}", [f"./graph_data/{feature_folder(slug, layer)}" for layer in range(n_layers(nodes))]


def schema_node(node: NodeFields, last_pos: int, ctx_idx: int) -> dict[str, Any]:
    """``node`` as circuit-tracer writes a node of its kind, drawn in column ``ctx_idx`` (see
    the module docstring)."""
    pos = node.pos if node.pos >= 0 else last_pos
    kind, index = node.kind, _index(node)
    clerp, activation, influence = node.label, node.activation, node.influence
    layer: str = "E" if kind == "embedding" else str(node.layer + 1 if kind == "logit" else node.layer)
    feature = {"embedding": pos, "error": -1, "logit": node.feature}.get(kind)
    if kind == "embedding":
        clerp, activation = "", None
    elif kind == "error":
        activation = None
    elif kind == "logit":
        if node.token is not None:  # else (a graph made by hand) its label
            clerp = f'Output "{process_token(node.token)}" (p={node.token_prob or 0.0:.3f})'
        activation = influence = None
    return {
        "node_id": circuit_tracer_id(kind, node.layer, index, pos),
        "feature": cantor_pair(node.layer, index) if feature is None else feature,
        "layer": layer,
        "ctx_idx": ctx_idx,
        "feature_type": feature_type(node),
        "token_prob": (node.token_prob or 0.0) if kind == "logit" else 0.0,
        "is_target_logit": node.is_target if kind == "logit" else False,
        "run_idx": 0,
        "reverse_ctx_idx": 0,
        "jsNodeId": _js_node_id(kind, node.layer, index, pos),
        "clerp": clerp,
        "influence": influence,
        "activation": activation,
    }


def schema_ids(nodes: list[NodeFields], prompt_tokens: list[str]) -> list[str]:
    """Each node's circuit-tracer ``node_id``, in node order."""
    last = len(prompt_tokens) - 1
    return [circuit_tracer_id(n.kind, n.layer, _index(n), n.pos if n.pos >= 0 else last) for n in nodes]


def implied_tokens(kinds: list[str], metadata: dict[str, Any]) -> list[str | None]:
    """The token each node holds when its record has none: the ``i``-th logit node's is
    ``metadata["targets"][i]`` when there are as many targets (strings) as logit nodes, as
    every graph scrying builds has; ``None`` otherwise and for every other node."""
    targets = metadata.get("targets")
    logits = [i for i, kind in enumerate(kinds) if kind == "logit"]
    out: list[str | None] = [None] * len(kinds)
    if isinstance(targets, list) and len(targets) == len(logits) and all(isinstance(t, str) for t in targets):
        for i, token in zip(logits, targets, strict=True):
            out[i] = token
    return out


def _record(node: NodeFields, implied: str | None) -> dict[str, Any]:
    record = {name: getattr(node, name) for name in RECORD_FIELDS}
    if node.token != implied:
        record["token"] = node.token
    return record


@runtime_checkable
class GraphFields(Protocol):
    """What this module reads of a graph (:class:`~scrying.attribution.graph.Graph`)."""

    prompt: str
    prompt_tokens: list[str]
    model_name: str
    level: str
    nodes: list[Any]
    adjacency: torch.Tensor
    bias: torch.Tensor | None
    metadata: dict[str, Any]

    def slug(self) -> str: ...


def graph_dict(graph: GraphFields) -> dict[str, Any]:
    """The JSON document of ``graph`` (see the module docstring)."""
    last = len(graph.prompt_tokens) - 1
    columns, column_names = layout(graph.nodes, graph.prompt_tokens, graph.metadata)
    schema_nodes = [schema_node(n, last, x) for n, x in zip(graph.nodes, columns, strict=True)]
    ids = [n["node_id"] for n in schema_nodes]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise InvalidInputError(f"nodes map to the same circuit-tracer node_id: {dup}")
    targets, sources = (graph.adjacency != 0).nonzero(as_tuple=True)
    weights = graph.adjacency[targets, sources].tolist()
    links = [
        {"source": ids[s], "target": ids[t], "weight": w}
        for t, s, w in zip(targets.tolist(), sources.tolist(), weights, strict=True)
    ]
    kinds = [n.kind for n in graph.nodes]
    own_type = "component" if "component" in kinds else graph.metadata.get("feature_type", "mlp neuron")
    implied = implied_tokens(kinds, graph.metadata)
    slug = graph.slug()
    scan, transcoder_list = scan_fields(graph.nodes, slug, graph.model_name)
    return {
        "metadata": {
            "slug": slug,
            "scan": scan,
            "transcoder_list": transcoder_list,
            "prompt_tokens": column_names,
            "prompt": graph.prompt,
            "node_threshold": graph.metadata.get("node_threshold"),
            "schema_version": CIRCUIT_TRACER_SCHEMA_VERSION,
        },
        "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
        "nodes": schema_nodes,
        "links": links,
        "scrying": {
            "schema_version": SCHEMA_VERSION,
            "level": graph.level,
            "model": graph.model_name,
            "feature_type": own_type,  # what the "cross layer transcoder" (or component) nodes really are
            "prompt_tokens": graph.prompt_tokens,
            "nodes": [_record(n, t) for n, t in zip(graph.nodes, implied, strict=True)],
            "bias": None if graph.bias is None else graph.bias.tolist(),
            "dtype": str(graph.adjacency.dtype).removeprefix("torch."),
            "metadata": graph.metadata,
        },
    }


def write_file(graph: GraphFields, path: str | Path) -> Path:
    """Write :func:`graph_dict` of ``graph`` to ``path`` (through a temporary file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(graph_dict(graph), allow_nan=False))
    tmp.replace(path)
    return path


class StoredGraph(NamedTuple):
    """A graph file's checked records: every field the graph is made of, each node's typed
    fields (``token`` included), and its links (``source``, ``target``, ``weight``)."""

    prompt: str
    prompt_tokens: list[str]
    model: str
    level: str
    nodes: list[dict[str, Any]]
    bias: list[float] | None
    dtype: torch.dtype
    metadata: dict[str, Any]
    links: list[dict[str, Any]]


def read_file(path: str | Path) -> StoredGraph:
    """The records of a file written by :func:`write_file`. Any other file (unreadable, not
    UTF-8 JSON, a field missing or of another type, another scrying ``schema_version``) is an
    :class:`InvalidInputError` naming the file and the field."""
    name = repr(str(path))
    data = read_json(path)
    try:
        _check_fields(data, "the file", _GRAPH_FIELDS, required=("metadata", "links", "scrying"))
        own, meta = data["scrying"], data["metadata"]
        version = own.get("schema_version")
        if version != SCHEMA_VERSION:
            found = reprlib.repr(version)
            raise InvalidInputError(f"scrying schema_version is {found}; expected {SCHEMA_VERSION} (write it again)")
        _check_fields(own, "scrying", _OWN_FIELDS, required=("model", "level", "nodes", "prompt_tokens", "metadata"))
        _check_fields(meta, "metadata", {"prompt": _STRING}, required=("prompt",))
        records = [_read_record(n, f"scrying.nodes[{i}]") for i, n in enumerate(own["nodes"])]
        implied = implied_tokens([r["kind"] for r in records], own["metadata"])
        nodes = [{"token": token, **record} for record, token in zip(records, implied, strict=True)]
        bias = own.get("bias")
        if bias is not None and len(bias) != len(nodes):
            raise InvalidInputError(f"scrying: 'bias' has {len(bias)} values for {len(nodes)} nodes")
        for i, link in enumerate(data["links"]):
            _check_fields(link, f"link {i}", _LINK_FIELDS, required=tuple(_LINK_FIELDS))
    except InvalidInputError as err:
        raise InvalidInputError(f"{name}: {err}") from err
    return StoredGraph(
        meta["prompt"], list(own["prompt_tokens"]), own["model"], own["level"], nodes,
        None if bias is None else [float(b) for b in bias], _DTYPES[own.get("dtype", "float64")],
        own["metadata"], data["links"],
    )


def adjacency_of(links: list[dict[str, Any]], ids: list[str], dtype: torch.dtype) -> torch.Tensor:
    """The ``[target, source]`` matrix of ``links`` between nodes of circuit-tracer ``ids``."""
    index = {node_id: i for i, node_id in enumerate(ids)}
    if len(index) != len(ids):
        raise InvalidInputError("two scrying nodes have the same circuit-tracer node_id")
    adjacency = torch.zeros(len(ids), len(ids), dtype=dtype)
    for i, link in enumerate(links):
        if link["target"] not in index or link["source"] not in index:
            ends = f"{reprlib.repr(link['source'])} -> {reprlib.repr(link['target'])}"
            raise InvalidInputError(f"link {i} ({ends}) names no node")
        adjacency[index[link["target"]], index[link["source"]]] = float(link["weight"])
    return adjacency


def _is_number(value: Any) -> bool:
    """A finite JSON number that a float can hold (not ``bool``)."""
    try:
        return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    except OverflowError:  # an integer past float's range
        return False


# What each field of the file must be (for read_file): a test and its words.
_STRING = (lambda v: isinstance(v, str), "a string")
_OBJECT = (lambda v: isinstance(v, dict), "an object")
_LIST = (lambda v: isinstance(v, list), "a list")
_INT = (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")
_NUMBER = (lambda v: v is None or _is_number(v), "a finite number or null")
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}
_GRAPH_FIELDS = {"metadata": _OBJECT, "links": _LIST, "scrying": _OBJECT}
_OWN_FIELDS = {
    "model": _STRING, "level": _STRING, "nodes": _LIST, "metadata": _OBJECT,
    "prompt_tokens": (lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v), "a list of strings"),
    "bias": (lambda v: v is None or isinstance(v, list) and all(map(_is_number, v)), "finite numbers or null"),
    "dtype": (lambda v: isinstance(v, str) and v in _DTYPES, f"one of {sorted(_DTYPES)}"),
}
_LINK_FIELDS = {"source": _STRING, "target": _STRING, "weight": (_is_number, "a finite number")}
_NODE_FIELDS = {
    "node_id": _STRING, "kind": (lambda v: v in NODE_KINDS, f"one of {list(NODE_KINDS)}"),
    "layer": _INT, "pos": _INT, "feature": _INT, "label": _STRING, "details": _STRING,
    "activation": _NUMBER, "influence": _NUMBER, "token_prob": _NUMBER,
    "is_target": (lambda v: isinstance(v, bool), "true or false"),
    "column": (lambda v: v is None or _INT[0](v), "an integer or null"),
    "token": (lambda v: v is None or isinstance(v, str), "a string or null"),
}


def _check_fields(obj: Any, where: str, fields: dict[str, tuple[Any, str]], required: tuple[str, ...]) -> None:
    if not isinstance(obj, dict):
        raise InvalidInputError(f"{where} must be an object, got {type(obj).__name__}")
    for key in required:
        if key not in obj:
            raise InvalidInputError(f"{where}: {key!r} is missing")
    for key, (test, expected) in fields.items():
        if key in obj and not test(obj[key]):
            raise InvalidInputError(f"{where}: {key!r} must be {expected}, got {reprlib.repr(obj[key])}")


def _read_record(data: Any, where: str) -> dict[str, Any]:
    """A node's typed fields from its record (floats that JSON wrote as integers made floats
    again); ``token`` only where the record holds one."""
    _check_fields(data, where, _NODE_FIELDS, required=("node_id", "kind", "layer", "pos"))
    unknown = sorted(set(data) - set(_NODE_FIELDS))
    if unknown:
        raise InvalidInputError(f"{where}: no node has the field {unknown[0]!r}")
    floats = {k: float(data[k]) for k in ("activation", "influence", "token_prob") if data.get(k) is not None}
    return {**data, **floats}

