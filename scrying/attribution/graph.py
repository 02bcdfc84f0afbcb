"""One graph type for both granularities: nodes, a weighted adjacency matrix, and metadata.

Nodes (``kind``): ``embedding`` (token at a position), ``feature`` (a neuron or dictionary
feature at layer/position), ``error`` (what the features leave unexplained at layer/position),
``component`` (attention head or MLP, at a position or summed over positions), ``logit``
(a target token). ``adjacency[target, source]`` is the direct effect of source on target.

Serialisation follows the Neuronpedia / circuit-tracer graph schema v1 (``metadata``,
``nodes[].node_id/feature/layer/ctx_idx/feature_type/clerp/influence/activation``,
``links[].source/target/weight``); scrying's own fields (full adjacency order, bias terms,
validation) live under the ``scrying`` key, so :func:`Graph.read_json` restores everything.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import networkx as nx
import pandas as pd
import torch

from scrying.axes import Float, Tensor
from scrying.errors import InvalidInputError

SCHEMA_VERSION = 1
NodeKind = Literal["embedding", "feature", "error", "component", "logit"]
_FEATURE_TYPES = {
    "embedding": "embedding",
    "feature": "mlp neuron",
    "error": "mlp reconstruction error",
    "component": "component",
    "logit": "logit",
}


@dataclass
class Node:
    """A node. ``layer`` is -1 for embeddings and ``n_layers`` for logits."""

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

    def to_schema(self, feature_type: str = "mlp neuron") -> dict[str, Any]:
        """The node in circuit-tracer's JSON; ``feature_type``: that of the graph's feature basis."""
        return {
            "node_id": self.node_id,
            "jsNodeId": self.node_id,
            "feature": self.feature,
            "layer": "E" if self.kind == "embedding" else str(self.layer),
            "ctx_idx": self.pos,
            "feature_type": feature_type if self.kind == "feature" else _FEATURE_TYPES[self.kind],
            "clerp": self.label,
            "influence": self.influence,
            "activation": self.activation,
            "token_prob": self.token_prob or 0.0,
            "is_target_logit": self.is_target,
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

    def to_json_dict(self) -> dict[str, Any]:
        links = [
            {"source": r.source, "target": r.target, "weight": r.weight}
            for r in self.edges().itertuples(index=False)
        ]
        return {
            "metadata": {
                "slug": self.metadata.get("slug", "scrying-graph"),
                "scan": self.model_name,
                "transcoder_list": [],
                "prompt_tokens": self.prompt_tokens,
                "prompt": self.prompt,
                "node_threshold": self.metadata.get("node_threshold"),
                "schema_version": SCHEMA_VERSION,
            },
            "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
            "nodes": [n.to_schema(self.metadata.get("feature_type", "mlp neuron")) for n in self.nodes],
            "links": links,
            "scrying": {
                "level": self.level,
                "model": self.model_name,
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
        """Read a graph written by :meth:`write_json` (exactly: ids, weights, attributes)."""
        try:
            data = json.loads(Path(path).read_text())
            extra = data["scrying"]
            meta = data["metadata"]
        except (OSError, json.JSONDecodeError, KeyError) as err:
            raise InvalidInputError(f"{str(path)!r} is not a scrying graph JSON file: {err}") from err
        if meta.get("schema_version") != SCHEMA_VERSION:
            raise InvalidInputError(f"{str(path)!r} has schema_version {meta.get('schema_version')}; expected {SCHEMA_VERSION}")
        nodes = [Node(**n) for n in extra["nodes"]]
        index = {n.node_id: i for i, n in enumerate(nodes)}
        dtype = getattr(torch, extra.get("dtype", "float64"))
        adjacency = torch.zeros(len(nodes), len(nodes), dtype=dtype)
        for link in data["links"]:
            adjacency[index[link["target"]], index[link["source"]]] = link["weight"]
        bias = None if extra["bias"] is None else torch.tensor(extra["bias"], dtype=dtype)
        return cls(
            prompt=meta["prompt"],
            prompt_tokens=list(meta["prompt_tokens"]),
            model_name=extra["model"],
            level=extra["level"],
            nodes=nodes,
            adjacency=adjacency,
            bias=bias,
            metadata=extra["metadata"],
        )
