"""What an ablated head's output ``z`` becomes, and the hook that puts it there.

``z`` is per query head (``batch pos head d_head``), so replacing one head's slice ablates that
query head alone even when several query heads share one key/value head (grouped-query).

* ``zero``: 0.
* ``mean``: the mean of the head's clean ``z`` over reference prompts, at each position
  (positions no reference prompt reaches get the mean over all reference positions).
* ``resample``: the head's clean ``z`` on another prompt (seeded; a random other prompt of the
  set itself, or a random reference prompt).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import einops
import torch
from jaxtyping import Bool

from scrying.ablation.config import AblationConfig
from scrying.ablation.data import PromptSet, pad_id, pad_right
from scrying.axes import Float, Tensor
from scrying.errors import InvalidInputError, SiteError
from scrying.sites import Component, HookFn, Site, check_site, hooks, recorded

Head = tuple[int, int]


def check_heads(model: Any, heads: Iterable[Head]) -> list[Head]:
    """``heads`` as a list of ``(layer, head)``; a missing one raises :class:`SiteError`."""
    out = []
    for item in heads:
        layer, head = (int(x) for x in item)
        try:
            check_site(model, Site(Component.Z, layer, head=head))
        except SiteError as err:
            raise SiteError(f"unknown head (layer {layer}, head {head}): {err}") from err
        out.append((layer, head))
    return out


def all_heads(model: Any) -> list[Head]:
    return [(layer, head) for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)]


def ablate_mask(prompts: PromptSet, config: AblationConfig) -> Bool[Tensor, "batch pos"]:
    """Positions where heads are ablated."""
    real = prompts.real
    if config.positions == "all":
        return real
    if config.positions == "last":
        mask = torch.zeros_like(real)
        mask[torch.arange(prompts.n_prompts), prompts.lengths - 1] = True
        return mask
    if prompts.ablate_mask is None:
        raise InvalidInputError("AblationConfig.positions='mask' needs a prompt set with ablate_mask")
    return prompts.ablate_mask & real


@torch.no_grad()
def clean_z(model: Any, tokens: torch.Tensor) -> list[Float[Tensor, "batch pos head d_head"]]:
    """Clean ``z`` of every layer."""
    sites = [Site(Component.Z, layer) for layer in range(model.cfg.n_layers)]
    with recorded(model, sites) as store:
        model(tokens, return_type=None)
    return [store[site] for site in sites]


def replacement_z(
    model: Any,
    prompts: PromptSet,
    config: AblationConfig,
    reference: PromptSet | None = None,
    *,
    z: list[torch.Tensor] | None = None,
) -> list[Float[Tensor, "batch pos head d_head"]]:
    """Per layer, the ``z`` an ablated head takes on each prompt (all heads at once).

    ``z``: the prompts' own clean ``z`` if already computed (used when ``reference`` is None).
    """
    n_layers, n_heads, d_head = model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_head
    batch, pos = prompts.tokens.shape
    if config.method == "zero":
        zeros = torch.zeros(batch, pos, n_heads, d_head, device=prompts.tokens.device)
        return [zeros] * n_layers
    ref = reference or prompts
    if reference is None and z is not None:
        ref_z = z
    else:
        width = max(pos, ref.tokens.shape[1])
        ref_tokens = pad_right(list(ref.tokens), pad_id(model), width)
        ref_z = clean_z(model, ref_tokens)
    if config.method == "mean":
        return [_positional_mean(zl, ref.real, pos, batch) for zl in ref_z]
    gen = torch.Generator().manual_seed(config.seed)
    if reference is None:
        if batch < 2:
            raise InvalidInputError("resample ablation needs at least 2 prompts (or a reference set)")
        shift = torch.randint(1, batch, (batch,), generator=gen)
        source = (torch.arange(batch) + shift) % batch  # always another prompt
    else:
        source = torch.randint(ref.n_prompts, (batch,), generator=gen)
    return [zl[source, :pos] for zl in ref_z]


def _positional_mean(
    z: Float[Tensor, "ref pos_r head d_head"], real: Bool[Tensor, "ref pos_ref"], pos: int, batch: int
) -> Float[Tensor, "batch pos head d_head"]:
    weight = torch.zeros(z.shape[0], z.shape[1], dtype=z.dtype)
    weight[:, : real.shape[1]] = real.to(z.dtype)
    total = einops.einsum(weight, z, "ref pos, ref pos head d -> pos head d")
    count = weight.sum(0)
    overall = total.sum(0) / count.sum()
    mean = torch.where(count[:, None, None] > 0, total / count.clamp(min=1)[:, None, None], overall)
    return einops.repeat(mean[:pos], "pos head d -> batch pos head d", batch=batch)


def ablation_hook(
    head_mask: Bool[Tensor, "replica head"],
    pos_mask: Bool[Tensor, "batch pos"],
    source: Float[Tensor, "batch pos head d_head"],
) -> HookFn:
    """Hook for ``z`` of a batch laid out ``(replica batch)``: replica r ablates ``head_mask[r]``."""
    where = head_mask[:, None, None, :, None] & pos_mask[None, :, :, None, None]

    def fn(z: torch.Tensor, hook: Any) -> torch.Tensor:
        split = einops.rearrange(z, "(r b) pos head d -> r b pos head d", r=head_mask.shape[0])
        out = torch.where(where, source[None].to(z.dtype), split)
        return einops.rearrange(out, "r b pos head d -> (r b) pos head d")

    return fn


def layer_hooks(
    model: Any,
    head_masks: Bool[Tensor, "replica layer head"],
    pos_mask: Bool[Tensor, "batch pos"],
    sources: list[torch.Tensor],
) -> dict[Site, HookFn]:
    """Hooks ablating, in replica r, the heads ``head_masks[r]`` of every layer."""
    return {
        Site(Component.Z, layer): ablation_hook(head_masks[:, layer], pos_mask, sources[layer])
        for layer in range(model.cfg.n_layers)
        if bool(head_masks[:, layer].any())
    }


def head_mask(model: Any, heads: Iterable[Head]) -> Bool[Tensor, "layer head"]:
    mask = torch.zeros(model.cfg.n_layers, model.cfg.n_heads, dtype=torch.bool)
    for layer, head in check_heads(model, heads):
        mask[layer, head] = True
    return mask


@contextlib.contextmanager
def ablated(
    model: Any,
    heads: Iterable[Head],
    pos_mask: Bool[Tensor, "batch pos"],
    sources: list[torch.Tensor],
) -> Iterator[Any]:
    """Run the model with all of ``heads`` ablated together (one replica)."""
    mask = head_mask(model, heads)[None]
    with hooks(model, layer_hooks(model, mask, pos_mask, sources)):
        yield model
