"""Frozen attention for batched attribution passes, without a copy of the pattern per batch row.

An attribution pass runs ``batch`` copies of the prompt with every attention pattern frozen at
its clean value. Handing the model the frozen pattern at ``hook_pattern`` works, but the
attention's ``pattern @ values`` then broadcasts the one pattern over the batch, and the matrix
product materializes (and keeps for the backward pass) a ``[batch head pos pos]`` copy per layer:
4.8 GB at 1,024 tokens and batch 16 for Gemma 3 270M.

Here the attention's output is replaced at ``hook_z`` by the frozen pattern times the values
captured at ``hook_v``, computed as one product per key/value head over the batch folded into the
columns (``[head q k] @ [k (batch d_head)]``), so the pattern is stored once. The model's own
attention still runs in the forward pass (its output is discarded, and with it what it kept).

:func:`z_is_pattern_times_values` checks on the clean run that ``hook_z`` is exactly
``pattern @ values`` for the architecture (grouped-query heads repeated as ``repeat_kv`` does);
where it is not, the replacement model falls back to freezing the pattern itself.
"""

from __future__ import annotations

from typing import Any

import einops
import torch

from scrying.axes import Float, Model, Tensor
from scrying.sites import Component, HookFn, Site, capture, has_site


def pattern_times_values(
    pattern: Float[Tensor, "1 head q k"], v: Float[Tensor, "batch k kv_head d_head"]
) -> Float[Tensor, "batch q head d_head"]:
    """``z[b, q, h] = sum_k pattern[h, q, k] v[b, k, h // rep]`` (``rep`` query heads per
    key/value head, consecutive), with one ``[rep*q k]`` matrix per key/value head."""
    batch, _, kv_heads, d_head = v.shape
    heads, q = pattern.shape[1], pattern.shape[2]
    grouped = pattern[0].to(v.dtype).reshape(kv_heads, (heads // kv_heads) * q, -1)  # kv (rep q) k
    columns = einops.rearrange(v, "b k g d -> g k (b d)")
    out = torch.bmm(grouped, columns)  # kv (rep q) (b d)
    return einops.rearrange(out, "g (rep q) (b d) -> b q (g rep) d", q=q, b=batch, d=d_head)


def z_is_pattern_times_values(model: Model, store: dict[Site, Tensor], *, rtol: float = 1e-4) -> bool:
    """Whether every layer's recorded ``hook_z`` equals its pattern times its values."""
    for layer in range(model.cfg.n_layers):
        sites = [Site(c, layer) for c in (Component.PATTERN, Component.V, Component.Z)]
        if not all(s in store for s in sites):
            return False
        pattern, v, z = (store[s] for s in sites)
        if v.dim() != 4 or z.dim() != 4 or pattern.shape[1] % v.shape[2]:
            return False
        got = pattern_times_values(pattern, v)
        if got.shape != z.shape or not torch.allclose(got, z, rtol=rtol, atol=rtol * float(z.abs().max())):
            return False
    return True


def attention_sites(model: Model) -> list[Site]:
    """The sites :func:`z_is_pattern_times_values` reads (where the model has them)."""
    sites = [Site(c, layer) for layer in range(model.cfg.n_layers) for c in (Component.V, Component.Z)]
    return [s for s in sites if has_site(model, s)]


def frozen_attention_hooks(model: Model, patterns: dict[int, Tensor]) -> list[tuple[Site, HookFn]]:
    """Hooks that make each layer's attention output the frozen ``patterns[layer]`` times the
    live values."""
    values: dict[int, Tensor] = {}
    out: list[tuple[Site, HookFn]] = []
    for layer in range(model.cfg.n_layers):
        out.append((Site(Component.V, layer), capture(layer, values)))
        out.append((Site(Component.Z, layer), _output(layer, patterns[layer], values)))
    return out


def _output(layer: int, pattern: Tensor, values: dict[int, Tensor]) -> HookFn:
    def fn(act: Tensor, hook: Any) -> Tensor:
        return pattern_times_values(pattern, values.pop(layer)).to(act.dtype)

    return fn
