"""Exact activation patching of edges and nodes of the component graph.

Patching the edge u -> v means that receiver v reads ``a_u(corrupt)`` instead of u's output in
the current run; every other receiver reads the residual stream as it is. With a set C of
corrupted edges (as in hannamw/EAP-IG ``evaluate_graph``), receiver v's input is

    x_v = resid_v + sum_{u : (u, v) in C} (a_u(corrupt) - a_u(current run)),

where ``a_u(current run)`` is u's output in the patched run itself (it differs from the clean
output when u's own inputs were patched). For one edge this is ``a_u(corrupt) - a_u(clean)``:
the exact counterpart of the EAP score. Patching a node = corrupting all its outgoing edges,
which replaces its output by its corrupted value everywhere downstream. Head outputs use the
same (post-norm linearised) definition as :mod:`scrying.circuits.nodes`, so prediction and
measurement agree.

Phases of :func:`patch_edges`: (1) lay out ``variant x prompt`` rows; (2) replicated forward
(:mod:`scrying.circuits.receivers`) whose receiver hooks add the sum above, computed from the
outputs recorded so far in the same pass; (3) the metric of replica 0, averaged over prompts.
"""

from __future__ import annotations

import einops
import torch
from jaxtyping import Bool
from tqdm.auto import tqdm

from scrying.axes import Float, Int, Model, Tensor
from scrying.circuits.config import PatchConfig
from scrying.circuits.eap import RunPair
from scrying.circuits.nodes import ComponentNodes
from scrying.circuits.receivers import receiver_forward
from scrying.errors import InvalidInputError
from scrying.metrics import Metric


@torch.no_grad()
def patch_edges(
    model: Model,
    clean: Int[Tensor, "batch pos"],
    pair: RunPair,
    metric: Metric,
    corrupted: Bool[Tensor, "variant src dst"],
    nodes: ComponentNodes,
    config: PatchConfig | None = None,
) -> Float[Tensor, " variant"]:
    """The metric (mean over prompts) with each variant's set of edges corrupted; ``nodes``:
    the node index the mask is laid out in (q/k/v-split receivers or not)."""
    config = config or PatchConfig()
    want = (len(nodes.sources), len(nodes.receivers))
    if corrupted.ndim != 3 or tuple(corrupted.shape[1:]) != want:
        kind = "q/k/v-split" if nodes.split_qkv else "unsplit"
        raise InvalidInputError(
            f"corrupted edge mask must be [variant, {want[0]}, {want[1]}] for the {kind} "
            f"component nodes, got {tuple(corrupted.shape)}"
        )
    results: list[Tensor] = []
    starts = range(0, corrupted.shape[0], config.chunk)
    for start in tqdm(starts, disable=not config.progress, desc="patch"):
        mask = corrupted[start : start + config.chunk] & nodes.edge_mask
        results.append(_patch_chunk(model, clean, pair, metric, mask, nodes))
    return torch.cat(results)


def _patch_chunk(
    model: Model,
    clean: Tensor,
    pair: RunPair,
    metric: Metric,
    mask: Tensor,
    nodes: ComponentNodes,
) -> Tensor:
    variants, batch = mask.shape[0], clean.shape[0]
    mask = mask.to(pair.clean.dtype).to(pair.clean.device)

    def additions(receivers: list[int], outputs: Tensor) -> Tensor | None:
        n_src = outputs.shape[0]
        m = mask[:, :n_src, receivers]
        if not bool(m.any()):
            return None
        current = einops.rearrange(outputs, "s (v b) p d -> s v b p d", v=variants)
        diff = einops.rearrange(pair.corrupt[:n_src], "s b p d -> s 1 b p d") - current
        add = torch.einsum("vst,svbpd->tvbpd", m, diff)
        return einops.rearrange(add, "t v b p d -> t (v b) p d")

    tokens = einops.repeat(clean, "b p -> (v b) p", v=variants)
    run = receiver_forward(model, tokens, nodes, additions=additions)
    prompts = einops.repeat(torch.arange(batch), "b -> (v b)", v=variants)
    values = metric(run.logits[: variants * batch], prompts)
    return einops.reduce(values, "(v b) -> v", "mean", v=variants)


def single_edge_masks(
    nodes: ComponentNodes, edges: list[tuple[int, int]]
) -> Bool[Tensor, "variant src dst"]:
    """One variant per edge, corrupting that edge only."""
    mask = torch.zeros(len(edges), len(nodes.sources), len(nodes.receivers), dtype=torch.bool)
    for i, (u, v) in enumerate(edges):
        mask[i, u, v] = True
    return mask


def edge_effects(
    model: Model,
    clean: Int[Tensor, "batch pos"],
    pair: RunPair,
    metric: Metric,
    edges: list[tuple[int, int]],
    config: PatchConfig | None = None,
    *,
    split_qkv: bool = False,
) -> Float[Tensor, " edge"]:
    """Exact effect ``metric(edge corrupted) - metric(clean)`` of each edge, one at a time
    (receiver indices of the q/k/v-split graph with ``split_qkv``)."""
    nodes = ComponentNodes.of(model, split_qkv=split_qkv)
    patched = patch_edges(model, clean, pair, metric, single_edge_masks(nodes, edges), nodes, config)
    return patched - pair.clean_metric.mean()


def node_effects(
    model: Model,
    clean: Int[Tensor, "batch pos"],
    pair: RunPair,
    metric: Metric,
    sources: list[int],
    nodes: ComponentNodes,
    config: PatchConfig | None = None,
) -> Float[Tensor, " node"]:
    """Exact effect ``metric(node patched) - metric(clean)`` of each of ``sources`` (indices of
    :attr:`ComponentNodes.sources`), one at a time: every outgoing edge corrupted, so the node's
    output is its corrupted (baseline) value everywhere downstream."""
    mask = torch.zeros(len(sources), len(nodes.sources), len(nodes.receivers), dtype=torch.bool)
    for i, u in enumerate(sources):
        mask[i, u, :] = True
    patched = patch_edges(model, clean, pair, metric, mask, nodes, config)
    return patched - pair.clean_metric.mean()
