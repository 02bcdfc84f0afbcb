"""One forward pass in which every receiver node reads its own copy of the residual stream.

Heads of a layer read the same residual stream, so a per-head input (for a per-head gradient or
a per-head patch) needs a trick that uses hooks only. Phases of :func:`receiver_forward`:

1. Replicate each row of the batch once per head receiver of a layer (``n_heads`` replicas, or
   ``3 n_heads`` with q/k/v-split receivers; rows laid out ``(replica row)``, replica
   ``h * parts + part``).
2. At ``blocks.l.ln1.hook_in`` (the attention pre-norm's input; the skip connection is taken
   before it) each replica gets its receiver's own addition (a patch and/or a zero leaf
   ``delta`` whose gradient is wanted).
3. Split receivers only: at ``hook_k`` / ``hook_v`` head ``h``'s first replica (its query
   replica) takes the key / value of ``h``'s key-group from ``h``'s key / value replica. Only
   head ``h``'s ``z`` of that replica is kept below, so overwriting the group's slot is exact
   under grouped-query attention too.
4. At ``blocks.l.attn.hook_z`` the heads are recombined: head ``h``'s ``z`` is taken from its
   first replica and broadcast to every replica, so from here on all replicas are identical
   again and head ``h``'s output depends only on head ``h``'s input(s).
5. MLPs (``ln2.hook_in``) and the logits (``ln_final.hook_in``) get one addition shared by all
   replicas; node outputs are recorded as they are computed (``hook_resid_pre`` of block 0,
   per-head outputs from ``z`` and ``W_O``, ``hook_mlp_out``), so patches can depend on them.
6. The caller's metric is averaged over replicas. Because all replicas compute the same function,
   the gradient of that average with respect to a replica's ``delta`` at layer ``l`` is that head
   receiver's input gradient, and the *sum* over replicas of an MLP's or the logits' ``delta``
   gradient is that receiver's input gradient (chain rule on the diagonal).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import einops
import torch

from scrying.axes import Float, Int, Model, Tensor
from scrying.circuits.nodes import ComponentNodes, head_outputs
from scrying.metrics import Metric
from scrying.models.adapter import has_post_norm, output_weight, post_norm_gain
from scrying.sites import Component, Site, hooks, n_kv_heads

#: ``additions(receivers, outputs)``: the addition to each receiver's input
#: ([len(receivers), row, pos, d_model]) given the source outputs recorded so far
#: ([n_sources_so_far, row, pos, d_model]); ``None`` for none.
Additions = Callable[[list[int], Tensor], Tensor | None]


@dataclass
class ReceiverForward:
    """What one replicated forward pass produced."""

    logits: Tensor  # [(replica row), pos, d_vocab]
    outputs: list[Tensor] = field(default_factory=list)  # per source: [row, pos, d_model]
    deltas: dict[int, tuple[Tensor, bool]] = field(default_factory=dict)  # first receiver -> (leaf, per head)
    n_rows: int = 0


def receiver_forward(
    model: Model,
    tokens: Int[Tensor, "row pos"],
    nodes: ComponentNodes,
    *,
    resid0: Float[Tensor, "row pos d_model"] | None = None,
    additions: Additions | None = None,
    taps: bool = False,
) -> ReceiverForward:
    """Run the replicated forward pass (see the module docstring).

    ``resid0`` replaces the input node's output (the embeddings, for EAP-IG's interpolation).
    With ``taps`` a zero leaf requiring grad is added at every receiver input; read them in
    :func:`receiver_gradients` after differentiating a metric of ``result.logits``.
    """
    n, reps, n_heads = tokens.shape[0], nodes.n_replicas, nodes.n_heads
    n_parts = len(nodes.parts)
    first = torch.arange(n_heads) * n_parts  # each head's first (query) replica
    group = torch.arange(n_heads) // (n_heads // n_kv_heads(model))  # each head's key/value head
    result = ReceiverForward(logits=torch.empty(0), n_rows=n)
    outputs = result.outputs
    post = has_post_norm(model)
    state: dict[str, Tensor] = {}

    def add_at(x: Tensor, receivers: list[int], per_replica: bool) -> Tensor:
        if additions is not None:
            add = additions(receivers, torch.stack(outputs))
            if add is not None:
                if per_replica:
                    x = x + einops.rearrange(add, "r n p d -> (r n) p d")
                else:
                    x = x + einops.repeat(add[0], "n p d -> (r n) p d", r=reps)
        if taps:
            delta = torch.zeros_like(x, requires_grad=True)
            result.deltas[receivers[0]] = (delta, per_replica)
            x = x + delta
        return x

    def embed_hook(x: Tensor, hook: Any) -> Tensor:
        if resid0 is not None:
            x = einops.repeat(resid0, "n p d -> (r n) p d", r=reps).to(x.dtype)
        outputs.append(x[:n])
        return x

    def ln1_hook(layer: int) -> Callable:
        receivers = [nodes.head_receiver(layer, h, p) for h in range(n_heads) for p in range(n_parts)]
        return lambda x, hook: add_at(x, receivers, per_replica=True)

    def kv_hook(part: int) -> Callable:
        def fn(x: Tensor, hook: Any) -> Tensor:
            x5 = einops.rearrange(x, "(r n) p g k -> r n p g k", r=reps)
            out = x5.clone()
            out[first, :, :, group] = x5[first + part, :, :, group]
            return einops.rearrange(out, "r n p g k -> (r n) p g k")

        return fn

    def z_hook(layer: int) -> Callable:
        def fn(z: Tensor, hook: Any) -> Tensor:
            z5 = einops.rearrange(z, "(r n) p h k -> r n p h k", r=reps)
            mixed = einops.rearrange(z5[first, :, :, torch.arange(n_heads)], "h n p k -> n p h k")
            state["z"] = mixed
            return einops.repeat(mixed, "n p h k -> (r n) p h k", r=reps)

        return fn

    def post_in_hook(x: Tensor, hook: Any) -> None:
        state["post_in"] = x[:n]

    def attn_out_hook(layer: int) -> Callable:
        w_o = output_weight(model, layer)
        gain = post_norm_gain(model, layer) if post else None

        def fn(y: Tensor, hook: Any) -> None:
            extra = (state["post_in"], y[:n], gain) if post else None
            heads = head_outputs(state["z"], w_o, extra)
            outputs.extend(heads.unbind(2))

        return fn

    def ln2_hook(layer: int) -> Callable:
        return lambda x, hook: add_at(x, [nodes.mlp_receiver(layer)], per_replica=False)

    def mlp_out_hook(y: Tensor, hook: Any) -> None:
        outputs.append(y[:n])

    def final_hook(x: Tensor, hook: Any) -> Tensor:
        return add_at(x, [nodes.logits_receiver], per_replica=False)

    fwd: list[tuple[Site, Callable]] = [(Site(Component.RESID_PRE, 0), embed_hook)]
    for layer in range(nodes.n_layers):
        fwd.append((Site(Component.LN1_IN, layer), ln1_hook(layer)))
        if nodes.split_qkv:
            fwd += [(Site(Component.K, layer), kv_hook(1)), (Site(Component.V, layer), kv_hook(2))]
        fwd.append((Site(Component.Z, layer), z_hook(layer)))
        if post:
            fwd.append((Site(Component.LN1_POST_IN, layer), post_in_hook))
        fwd += [
            (Site(Component.ATTN_OUT, layer), attn_out_hook(layer)),
            (Site(Component.LN2_IN, layer), ln2_hook(layer)),
            (Site(Component.MLP_OUT, layer), mlp_out_hook),
        ]
    fwd.append((Site(Component.FINAL_IN), final_hook))
    rows = einops.repeat(tokens, "n p -> (r n) p", r=reps)
    with hooks(model, forward=fwd):
        result.logits = model(rows)
    return result


def receiver_gradients(
    total: Tensor, run: ReceiverForward, nodes: ComponentNodes
) -> Float[Tensor, "dst row pos d_model"]:
    """Input gradient of every receiver, from ``total`` = the replica-averaged metric sum."""
    starts = sorted(run.deltas)
    grads = torch.autograd.grad(total, [run.deltas[s][0] for s in starts])
    out: list[Tensor] = []
    for start, grad in zip(starts, grads, strict=True):
        g = einops.rearrange(grad, "(r n) p d -> r n p d", r=nodes.n_replicas)
        out.extend(g.unbind(0) if run.deltas[start][1] else [g.sum(0)])
    return torch.stack(out)


@torch.no_grad()
def record_outputs(
    model: Model,
    tokens: Int[Tensor, "row pos"],
    nodes: ComponentNodes,
    metric: Metric,
    *,
    resid0: Float[Tensor, "row pos d_model"] | None = None,
) -> tuple[Float[Tensor, "src row pos d_model"], Float[Tensor, " row"]]:
    """Every source node's output, and the metric per prompt, on an unpatched run (with the
    input node's output replaced by ``resid0`` if given)."""
    run = receiver_forward(model, tokens, dataclasses.replace(nodes, split_qkv=False), resid0=resid0)
    n = tokens.shape[0]
    return torch.stack(run.outputs), metric(run.logits[:n], torch.arange(n))
