"""The nodes and edges of a component graph, and what each node writes to the residual stream.

Nodes (names as in Hanna et al.'s EAP-IG repository): ``embed`` (the input: the residual stream
before block 0, embeddings included), one node per attention head ``a{l}.h{h}``, one per MLP
``m{l}``, and ``logits``. *Sources* write to the residual stream (embed, heads, MLPs); *receivers*
read it (heads, MLPs, logits). An edge u -> v exists when u is computed before v reads: a head at
layer l reads embed and everything of layers < l; the MLP at layer l also reads layer l's heads;
logits read everything. With ``split_qkv`` a head is three receivers, its query, key and value
inputs ``a{l}.h{h}<q>``, ``<k>``, ``<v>`` (as in hannamw/EAP-IG); with grouped-query attention
a query head's key and value inputs are its own (the key/value it uses, computed from that input).

Node outputs ``a_u`` (what u adds to the residual stream):

- embed: ``blocks.0.hook_resid_pre``.
- head h at layer l: ``z_h @ W_O[h]^T`` (the head's slice of the output projection). When the
  model has an attention post-norm (Gemma), the post-norm is linearised by freezing its scale at
  the run being measured: ``a_h = g * s * (z_h @ W_O[h]^T)`` with ``g`` the norm's gain and
  ``s`` the per-position scale of that run, so the heads of a layer sum exactly to
  ``hook_attn_out`` in every run (clean, corrupt, patched). An output-projection bias (GPT-2) is
  constant across runs and belongs to no head.
- MLP at layer l: ``hook_mlp_out`` (after the post-norm, if any).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Literal

import einops
import torch
from jaxtyping import Bool

from scrying.axes import Float, Model, Tensor
from scrying.errors import InvalidInputError

NodeType = Literal["embed", "head", "mlp", "logits"]
Part = Literal["", "q", "k", "v"]


@dataclass(frozen=True)
class ComponentNode:
    """A node (or a receiver) of the component graph by its typed fields: ``kind``, ``layer``
    and ``head`` (-1 where none), and for a split head's receiver its input ``part``. Its
    :attr:`name` (Hanna et al.'s spelling) is written from them here and never read back."""

    kind: NodeType
    layer: int = -1
    head: int = -1
    part: Part = ""

    @property
    def name(self) -> str:
        if self.kind == "head":
            return f"a{self.layer}.h{self.head}{self.part_tag}"
        if self.kind == "mlp":
            return f"m{self.layer}"
        return self.kind

    @property
    def part_tag(self) -> str:
        """``"<q>"``, ``"<k>"`` or ``"<v>"`` for a split head's receiver, else ``""``."""
        return f"<{self.part}>" if self.part else ""

    @property
    def node(self) -> ComponentNode:
        """The node this receiver is an input of (itself, for a node)."""
        return replace(self, part="")


EMBED = ComponentNode("embed")
LOGITS = ComponentNode("logits")


@dataclass(frozen=True)
class ComponentNodes:
    """Index of the nodes of a model with ``n_layers`` blocks of ``n_heads`` heads and an MLP."""

    n_layers: int
    n_heads: int
    split_qkv: bool = False

    @classmethod
    def of(cls, model: Model, *, split_qkv: bool = False) -> ComponentNodes:
        return cls(n_layers=model.cfg.n_layers, n_heads=model.cfg.n_heads, split_qkv=split_qkv)


    @property
    def parts(self) -> tuple[Part, ...]:
        """The inputs of a head that are receivers: ``("q", "k", "v")`` split, else one."""
        return ("q", "k", "v") if self.split_qkv else ("",)

    @property
    def n_replicas(self) -> int:
        """Replicas of each row in a receiver forward: one per head receiver of a layer."""
        return self.n_heads * len(self.parts)

    @property
    def _width(self) -> int:  # receivers per layer
        return self.n_replicas + 1

    # Sources: embed, then per layer its heads and its MLP.
    @cached_property
    def source_nodes(self) -> tuple[ComponentNode, ...]:
        nodes = [EMBED]
        for layer in range(self.n_layers):
            nodes += [ComponentNode("head", layer, h) for h in range(self.n_heads)] + [ComponentNode("mlp", layer)]
        return tuple(nodes)

    # Receivers: per layer its heads (or their q, k, v inputs) and its MLP, then logits.
    @cached_property
    def receiver_nodes(self) -> tuple[ComponentNode, ...]:
        nodes: list[ComponentNode] = []
        for layer in range(self.n_layers):
            for h in range(self.n_heads):
                nodes += [ComponentNode("head", layer, h, p) for p in self.parts]
            nodes.append(ComponentNode("mlp", layer))
        return (*nodes, LOGITS)

    @property
    def nodes(self) -> tuple[ComponentNode, ...]:
        """All nodes: embed, heads and MLPs in order, logits."""
        return (*self.source_nodes, LOGITS)

    @cached_property
    def sources(self) -> tuple[str, ...]:
        """The sources' names."""
        return tuple(n.name for n in self.source_nodes)

    @cached_property
    def receivers(self) -> tuple[str, ...]:
        """The receivers' names."""
        return tuple(n.name for n in self.receiver_nodes)

    @property
    def names(self) -> tuple[str, ...]:
        """All node names: embed, heads and MLPs in order, logits."""
        return (*self.sources, LOGITS.name)

    def head_source(self, layer: int, head: int) -> int:
        return 1 + layer * (self.n_heads + 1) + head

    def mlp_source(self, layer: int) -> int:
        return 1 + layer * (self.n_heads + 1) + self.n_heads

    def head_receiver(self, layer: int, head: int, part: int = 0) -> int:
        """Receiver index of a head (``part``: 0, 1, 2 for its q, k, v input when split)."""
        return layer * self._width + head * len(self.parts) + part

    def mlp_receiver(self, layer: int) -> int:
        return layer * self._width + self.n_replicas

    @property
    def logits_receiver(self) -> int:
        return self.n_layers * self._width

    def n_sources_before(self, receiver: int) -> int:
        """Number of sources (a prefix of :attr:`sources`) that ``receiver`` reads."""
        if receiver == self.logits_receiver:
            return len(self.sources)
        layer, slot = divmod(receiver, self._width)
        return 1 + layer * (self.n_heads + 1) + (self.n_heads if slot == self.n_replicas else 0)

    @cached_property
    def edge_mask(self) -> Bool[Tensor, "src dst"]:
        """``mask[u, v]``: whether the edge u -> v exists."""
        mask = torch.zeros(len(self.sources), len(self.receivers), dtype=torch.bool)
        for v in range(len(self.receivers)):
            mask[: self.n_sources_before(v), v] = True
        return mask

    def edge_index(self, sources: Iterable[str], receivers: Iterable[str]) -> list[tuple[int, int]]:
        """(source index, receiver index) of named edges; an unknown name raises
        :class:`~scrying.errors.InvalidInputError` (e.g. a ``<q>`` receiver of an unsplit index)."""
        src = {n: i for i, n in enumerate(self.sources)}
        dst = {n: i for i, n in enumerate(self.receivers)}
        out = []
        for s, t in zip(sources, receivers, strict=True):
            if s not in src or t not in dst:
                kind = "split" if self.split_qkv else "unsplit"
                raise InvalidInputError(f"no edge {s!r} -> {t!r} among the {kind} component nodes")
            out.append((src[s], dst[t]))
        return out

    @cached_property
    def edges(self) -> list[tuple[int, int]]:
        """(source index, receiver index) of every edge, receivers in order."""
        return [(int(u), int(v)) for v, u in zip(*torch.nonzero(self.edge_mask.T).T, strict=True)]


def head_outputs(
    z: Float[Tensor, "batch pos head d_head"],
    w_o: Float[Tensor, "head d_head d_model"],
    post: tuple[Float[Tensor, "batch pos d_model"], Float[Tensor, "batch pos d_model"], Float[Tensor, " d_model"]] | None = None,
) -> Float[Tensor, "batch pos head d_model"]:
    """Each head's residual-stream contribution ``a_h`` (see the module docstring).

    ``post`` = (post-norm input, post-norm output, gain) of this run when the model has an
    attention post-norm; the output is then ``x * s * g`` per position, with ``s`` recovered by
    least squares over channels, so the heads sum exactly to the post-norm output.
    """
    out = torch.einsum("bphk,hkd->bphd", z, w_o)
    if post is None:
        return out
    x, y, gain = post
    xg = x * gain
    scale = (y * xg).sum(-1) / (xg * xg).sum(-1).clamp_min(torch.finfo(x.dtype).tiny)
    return out * einops.rearrange(scale, "b p -> b p 1 1") * gain

