"""One graph type for both granularities: nodes, a weighted adjacency matrix, and metadata.

Nodes (``kind``): ``embedding`` (token at a position), ``feature`` (a neuron or dictionary
feature at layer/position), ``error`` (what the features leave unexplained at layer/position),
``component`` (attention head or MLP, summed over positions: ``pos`` -1), ``logit`` (a target
token). ``adjacency[target, source]`` is the direct effect of source on target.

Serialisation writes each node as circuit-tracer's writer does for the same kind of node
(``circuit_tracer/frontend/graph_models.py``: ``Node.feature_node``, ``error_node``,
``token_node``, ``logit_node``; ``Metadata``, ``QParams``), so circuit-tracer's viewer and
Neuronpedia's read it as scrying means it:

* feature (and component) nodes: ``node_id`` ``{layer}_{index}_{pos}``, ``feature`` the Cantor
  pairing of (layer, index), ``jsNodeId`` ``{layer}_{index}-0``, ``feature_type``
  ``"cross layer transcoder"`` (the viewer's only feature type; scrying's own type is kept under
  ``scrying``); a component's index is its layout column (head, or ``n_heads`` for the MLP);
* error nodes: ``{layer}_-1_{pos}``, ``feature`` -1, ``jsNodeId`` ``{layer}_-1-{pos}``,
  ``"mlp reconstruction error"``;
* embeddings: ``E_{token_id}_{pos}``, ``feature`` = pos, ``layer`` ``"E"``, ``jsNodeId``
  ``E_{token_id}-{pos}``;
* logits: ``{n_layers + 1}_{token_id}_{pos}``, ``layer`` ``n_layers + 1``, ``jsNodeId``
  ``L_{token_id}-{pos}``, ``clerp`` ``Output "{token}" (p=0.123)``.

``ctx_idx`` is always a real token position: nodes summed over positions (components) are
placed at the last one, where the predicted token is read. ``metadata.schema_version`` is
circuit-tracer's (1); scrying's own records (nodes with their ids and layout, full adjacency
order, bias terms, validation) live under the ``scrying`` key with scrying's
:data:`SCHEMA_VERSION`, so :func:`Graph.read_json` restores everything.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import re
import reprlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import networkx as nx
import pandas as pd
import torch

from scrying.axes import Float, Tensor
from scrying.errors import InvalidInputError

SCHEMA_VERSION = 2  # of scrying's records (the ``scrying`` key and the node-id mapping)
CIRCUIT_TRACER_SCHEMA_VERSION = 1  # circuit-tracer's ``Metadata.schema_version``
NodeKind = Literal["embedding", "feature", "error", "component", "logit"]
_FEATURE_TYPES = {
    "embedding": "embedding",
    "feature": "cross layer transcoder",
    "error": "mlp reconstruction error",
    "component": "cross layer transcoder",
    "logit": "logit",
}
_LOGIT_LABEL = re.compile(r"^Output (?P<token>.*) \(p=[^()]*\)$", re.DOTALL)


@dataclass
class Node:
    """A node. ``layer`` is -1 for embeddings and ``n_layers`` for logits; ``pos`` -1 means
    summed over positions; ``column`` is a layout column for such nodes (head index, ``n_heads``
    for an MLP) and ``None`` for nodes at a position."""

    node_id: str
    kind: NodeKind
    layer: int
    pos: int  # -1: summed over positions
    feature: int = -1  # neuron/feature index, token id for embeddings and logits, head index
    label: str = ""
    activation: float | None = None
    influence: float | None = None
    token_prob: float | None = None
    is_target: bool = False
    details: str = ""  # extra hover text (e.g. tokens a neuron's output promotes)
    column: int | None = None  # layout column of a node summed over positions


def cantor_pair(x: int, y: int) -> int:
    """Cantor's pairing of two naturals, circuit-tracer's ``feature`` of a feature node at layer
    ``x`` with index ``y`` (``graph_models.Node.feature_node``)."""
    return (x + y) * (x + y + 1) // 2 + y


def process_token(token: str) -> str:
    """A token as circuit-tracer's viewer shows it (``frontend/utils.py``: ``process_token``)."""
    return token.replace("\n", "⏎").replace("\t", "→").replace("\r", "↵")


def _logit_token(label: str) -> str:
    """The token of a logit node's scrying label ``Output ' Texas' (p=0.123)``."""
    match = _LOGIT_LABEL.match(label)
    if match is None:
        return label
    token = match["token"]
    try:
        value = ast.literal_eval(token)
    except (ValueError, SyntaxError):
        return token
    return value if isinstance(value, str) else token


def _schema_node(node: Node, last_pos: int) -> dict[str, Any]:
    """``node`` as circuit-tracer writes a node of its kind (see the module docstring)."""
    pos = node.pos if node.pos >= 0 else last_pos
    kind = node.kind
    clerp, activation, influence = node.label, node.activation, node.influence
    if kind == "embedding":
        node_id, js_id, feature, layer = f"E_{node.feature}_{pos}", f"E_{node.feature}-{pos}", pos, "E"
        clerp, activation = "", None
    elif kind == "error":
        node_id, js_id, feature, layer = f"{node.layer}_-1_{pos}", f"{node.layer}_-1-{pos}", -1, str(node.layer)
        activation = None
    elif kind == "logit":
        layer = str(node.layer + 1)
        node_id, js_id, feature = f"{layer}_{node.feature}_{pos}", f"L_{node.feature}-{pos}", node.feature
        clerp = f'Output "{process_token(_logit_token(node.label))}" (p={node.token_prob or 0.0:.3f})'
        activation = influence = None
    else:  # feature, component
        index = node.column if kind == "component" and node.column is not None else node.feature
        node_id, js_id, layer = f"{node.layer}_{index}_{pos}", f"{node.layer}_{index}-0", str(node.layer)
        feature = cantor_pair(node.layer, index)
    return {
        "node_id": node_id,
        "feature": feature,
        "layer": layer,
        "ctx_idx": pos,
        "feature_type": _FEATURE_TYPES[kind],
        "token_prob": (node.token_prob or 0.0) if kind == "logit" else 0.0,
        "is_target_logit": node.is_target if kind == "logit" else False,
        "run_idx": 0,
        "reverse_ctx_idx": 0,
        "jsNodeId": js_id,
        "clerp": clerp,
        "influence": influence,
        "activation": activation,
    }


@dataclass
class Graph:
    """An attribution graph for one prompt."""

    prompt: str
    prompt_tokens: list[str]
    model_name: str
    level: str  # "components", or the feature basis ("neurons", a transcoder's name)
    nodes: list[Node]
    adjacency: Float[Tensor, "node node"]
    bias: Float[Tensor, " node"] | None = None  # value minus incoming edges, per node
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.nodes)
        if tuple(self.adjacency.shape) != (n, n):
            raise InvalidInputError(f"adjacency must be {n}x{n} for {n} nodes, got {tuple(self.adjacency.shape)}")
        ids = [node.node_id for node in self.nodes]
        if len(set(ids)) != n:
            dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
            raise InvalidInputError(f"node ids must be unique; repeated: {dup}")

    @property
    def index(self) -> dict[str, int]:
        return {node.node_id: i for i, node in enumerate(self.nodes)}

    def logit_weights(self) -> Float[Tensor, " node"]:
        """Probability of each logit node (0 elsewhere): the seed of influence computations."""
        weights = torch.zeros(len(self.nodes), dtype=torch.float64)
        for i, node in enumerate(self.nodes):
            if node.kind == "logit":
                weights[i] = node.token_prob or 0.0
        return weights

    def edges(self, *, nonzero: bool = True) -> pd.DataFrame:
        """Tidy edge table: ``source``, ``target``, ``weight``."""
        targets, sources = (self.adjacency != 0).nonzero(as_tuple=True) if nonzero else torch.meshgrid(
            torch.arange(len(self.nodes)), torch.arange(len(self.nodes)), indexing="ij"
        )
        targets, sources = targets.flatten(), sources.flatten()
        return pd.DataFrame(
            {
                "source": [self.nodes[i].node_id for i in sources.tolist()],
                "target": [self.nodes[i].node_id for i in targets.tolist()],
                "weight": self.adjacency[targets, sources].tolist(),
            }
        )

    def nodes_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(n) for n in self.nodes])

    def to_networkx(self) -> nx.DiGraph:
        """A DiGraph with node attributes and ``weight`` on edges (source -> target)."""
        graph = nx.DiGraph(prompt=self.prompt, level=self.level, model=self.model_name)
        for node in self.nodes:
            graph.add_node(node.node_id, **asdict(node))
        for row in self.edges().itertuples(index=False):
            graph.add_edge(row.source, row.target, weight=row.weight)
        return graph

    def slug(self) -> str:
        """The graph's name in a viewer's data folder: ``metadata["slug"]`` if set, else a
        readable prefix (level and first prompt words) and a hash of prompt, model, level,
        targets, corrupted prompt and node ids, so different graphs never share a file."""
        if self.metadata.get("slug"):
            return str(self.metadata["slug"])
        key = [
            self.prompt,
            self.model_name,
            self.level,
            self.metadata.get("targets"),
            self.metadata.get("corrupt_prompt"),
            [n.node_id for n in self.nodes],
        ]
        digest = hashlib.sha256(json.dumps(key, ensure_ascii=False, default=str).encode()).hexdigest()[:10]
        words: list[str] = []
        for word in re.findall(r"[a-z0-9]+", f"{self.level} {self.prompt}".lower()):
            if len("-".join([*words, word])) > 40:
                break
            words.append(word)
        return "-".join(["scrying", *words, digest])

    def schema_ids(self) -> list[str]:
        """Each node's ``node_id`` in the written JSON (circuit-tracer's form), in node order."""
        last = len(self.prompt_tokens) - 1
        return [_schema_node(n, last)["node_id"] for n in self.nodes]

    def to_json_dict(self) -> dict[str, Any]:
        last = len(self.prompt_tokens) - 1
        schema_nodes = [_schema_node(n, last) for n in self.nodes]
        ids = [n["node_id"] for n in schema_nodes]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
            raise InvalidInputError(f"nodes map to the same circuit-tracer node_id: {dup}")
        targets, sources = (self.adjacency != 0).nonzero(as_tuple=True)
        weights = self.adjacency[targets, sources].tolist()
        links = [
            {"source": ids[s], "target": ids[t], "weight": w}
            for t, s, w in zip(targets.tolist(), sources.tolist(), weights, strict=True)
        ]
        kinds = {n.kind for n in self.nodes}
        own_type = "component" if "component" in kinds else self.metadata.get("feature_type", "mlp neuron")
        return {
            "metadata": {
                "slug": self.slug(),
                "scan": self.model_name,
                "transcoder_list": [],
                "prompt_tokens": [process_token(t) for t in self.prompt_tokens],
                "prompt": self.prompt,
                "node_threshold": self.metadata.get("node_threshold"),
                "schema_version": CIRCUIT_TRACER_SCHEMA_VERSION,
            },
            "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
            "nodes": schema_nodes,
            "links": links,
            "scrying": {
                "schema_version": SCHEMA_VERSION,
                "level": self.level,
                "model": self.model_name,
                "feature_type": own_type,  # what the "cross layer transcoder" nodes really are
                "prompt_tokens": self.prompt_tokens,
                "nodes": [asdict(n) for n in self.nodes],
                "bias": None if self.bias is None else self.bias.tolist(),
                "dtype": str(self.adjacency.dtype).removeprefix("torch."),
                "metadata": self.metadata,
            },
        }

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_json_dict(), allow_nan=False))
        tmp.replace(path)
        return path

    @classmethod
    def read_json(cls, path: str | Path) -> Graph:
        """Read a graph written by :meth:`write_json` (exactly: ids, weights, attributes). Any
        other file (unreadable, not UTF-8 JSON, a field missing or of another type) is an
        :class:`InvalidInputError` naming the file and the field."""
        name = repr(str(path))
        data = _read_json_file(path, name)
        try:
            _check_fields(data, "the file", _GRAPH_FIELDS, required=("metadata", "links", "scrying"))
            extra, meta = data["scrying"], data["metadata"]
            version = extra.get("schema_version")
            if version != SCHEMA_VERSION:
                found = reprlib.repr(version)
                raise InvalidInputError(f"scrying schema_version is {found}; expected {SCHEMA_VERSION} (write it again)")
            _check_fields(extra, "scrying", _OWN_FIELDS, required=("model", "level", "nodes", "prompt_tokens", "metadata"))
            _check_fields(meta, "metadata", {"prompt": _STRING}, required=("prompt",))
            nodes = [_read_node(n, f"scrying.nodes[{i}]") for i, n in enumerate(extra["nodes"])]
            bias = extra.get("bias")
            if bias is not None and len(bias) != len(nodes):
                raise InvalidInputError(f"scrying: 'bias' has {len(bias)} values for {len(nodes)} nodes")
            dtype = _DTYPES[extra.get("dtype", "float64")]
            graph = cls(
                prompt=meta["prompt"],
                prompt_tokens=list(extra["prompt_tokens"]),
                model_name=extra["model"],
                level=extra["level"],
                nodes=nodes,
                adjacency=torch.zeros(len(nodes), len(nodes), dtype=dtype),
                bias=None if bias is None else torch.tensor([float(b) for b in bias], dtype=dtype),
                metadata=extra["metadata"],
            )
            try:
                ids = graph.schema_ids()
            except (RecursionError, MemoryError) as err:  # ast.literal_eval of a logit node's label
                raise InvalidInputError("a logit node's 'label' is too deeply nested to read its token") from err
            index = {node_id: i for i, node_id in enumerate(ids)}
            if len(index) != len(ids):
                raise InvalidInputError("two scrying nodes have the same circuit-tracer node_id")
            for i, link in enumerate(data["links"]):
                _check_fields(link, f"link {i}", _LINK_FIELDS, required=tuple(_LINK_FIELDS))
                if link["target"] not in index or link["source"] not in index:
                    ends = f"{reprlib.repr(link['source'])} -> {reprlib.repr(link['target'])}"
                    raise InvalidInputError(f"link {i} ({ends}) names no node")
                graph.adjacency[index[link["target"]], index[link["source"]]] = float(link["weight"])
        except InvalidInputError as err:
            raise InvalidInputError(f"{name}: {err}") from err
        return graph


def _is_number(value: Any) -> bool:
    """A finite JSON number that a float can hold (not ``bool``)."""
    try:
        return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    except OverflowError:  # an integer past float's range
        return False


# What each field of the file must be (for Graph.read_json): a test and its words.
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
    "node_id": _STRING, "kind": (lambda v: v in get_args(NodeKind), f"one of {list(get_args(NodeKind))}"),
    "layer": _INT, "pos": _INT, "feature": _INT, "label": _STRING, "details": _STRING,
    "activation": _NUMBER, "influence": _NUMBER, "token_prob": _NUMBER,
    "is_target": (lambda v: isinstance(v, bool), "true or false"),
    "column": (lambda v: v is None or _INT[0](v), "an integer or null"),
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


def _read_node(data: Any, where: str) -> Node:
    """A :class:`Node` from its ``asdict`` (floats that JSON wrote as integers made floats again)."""
    _check_fields(data, where, _NODE_FIELDS, required=("node_id", "kind", "layer", "pos"))
    unknown = sorted(set(data) - set(_NODE_FIELDS))
    if unknown:
        raise InvalidInputError(f"{where}: no node has the field {unknown[0]!r}")
    floats = {k: float(data[k]) for k in ("activation", "influence", "token_prob") if data.get(k) is not None}
    return Node(**{**data, **floats})


def _read_json_file(path: str | Path, name: str) -> Any:
    """The JSON value of ``path``; an unreadable file, or one not UTF-8 JSON, is an
    :class:`InvalidInputError` naming it (``name``)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise InvalidInputError(f"{name} cannot be read: {err}") from err
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise InvalidInputError(f"{name} is not UTF-8 text (byte {raw[err.start]:#04x} at offset {err.start})") from err
    except RecursionError as err:
        raise InvalidInputError(f"{name} is not a scrying graph JSON file: it nests too deeply") from err
    except ValueError as err:  # JSONDecodeError, an integer past Python's digit limit
        raise InvalidInputError(f"{name} is not a scrying graph JSON file: {err}") from err
