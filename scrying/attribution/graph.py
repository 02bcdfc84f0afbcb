"""One graph type for both granularities: nodes, a weighted adjacency matrix, and metadata.

Nodes (:mod:`scrying.attribution.nodes`, ``kind``): ``embedding`` (token at a position),
``feature`` (a neuron or dictionary feature at layer/position), ``error`` (what the features
leave unexplained at layer/position), ``component`` (attention head or MLP, summed over
positions: ``pos`` -1), ``logit`` (a target token). ``adjacency[target, source]`` is the direct
effect of source on target. The JSON file is circuit-tracer's format, written and read by
:mod:`scrying.attribution.graph_json`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import pandas as pd
import torch

from scrying.attribution import graph_json
from scrying.attribution.graph_json import SCHEMA_VERSION, cantor_pair, process_token
from scrying.attribution.nodes import Node, NodeKind
from scrying.axes import Float, Tensor
from scrying.errors import InvalidInputError

__all__ = ["SCHEMA_VERSION", "Graph", "Node", "NodeKind", "cantor_pair", "process_token"]


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
        return graph_json.schema_ids(self.nodes, self.prompt_tokens)

    def to_json(self) -> dict[str, Any]:
        """The graph as circuit-tracer's JSON document, with scrying's records
        (:mod:`scrying.attribution.graph_json`)."""
        return graph_json.graph_dict(self)

    def write_json(self, path: str | Path) -> Path:
        return graph_json.write_file(self, path)

    def _repr_html_(self) -> str:
        """In a notebook, the interactive viewer inline (:func:`scrying.viewer.inline_html`: the
        page in an iframe, no server); :func:`scrying.viewer.show` adds a PNG for readers
        without a kernel."""
        from scrying.viewer import inline_html

        return inline_html(self.to_json())

    @classmethod
    def read_json(cls, path: str | Path) -> Graph:
        """Read a graph written by :meth:`write_json` (exactly: ids, weights, typed node fields).
        Any other file (unreadable, not UTF-8 JSON, a field missing or of another type) is an
        :class:`InvalidInputError` naming the file and the field."""
        stored = graph_json.read_file(path)
        try:
            nodes = [Node(**fields) for fields in stored.nodes]
            graph = cls(
                prompt=stored.prompt,
                prompt_tokens=stored.prompt_tokens,
                model_name=stored.model,
                level=stored.level,
                nodes=nodes,
                adjacency=graph_json.adjacency_of(stored.links, graph_json.schema_ids(nodes, stored.prompt_tokens), stored.dtype),
                bias=None if stored.bias is None else torch.tensor(stored.bias, dtype=stored.dtype),
                metadata=stored.metadata,
            )
        except InvalidInputError as err:
            raise InvalidInputError(f"{str(path)!r}: {err}") from err
        return graph
