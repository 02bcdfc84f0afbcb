"""What an ablated head's output ``z`` becomes, and the hook that puts it there.

``z`` is per query head (``batch pos head d_head``), so replacing one head's slice ablates that
query head alone even when several query heads share one key/value head (grouped-query).

* ``zero``: 0.
* ``mean``: the mean of the head's clean ``z`` over reference prompts, at each position
  (positions no reference prompt reaches get the mean over all reference positions).
* ``resample``: the head's clean ``z`` on another prompt (seeded; a random other prompt of the
  set itself, or a random reference prompt).

Prompts are aligned at the start (position 0 is BOS), as in template prompt sets: position p
takes the reference value at p, and a resample source must be long enough to have every
ablated position (else an error names the prompt). With ``positions="last"`` they are aligned
at the end: a prompt's last position takes the value at the reference prompts' own last
position (their mean, or one resampled prompt's), whatever the lengths.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import einops
import torch
from jaxtyping import Bool

from scrying.ablation.config import AblationConfig
from scrying.ablation.reads import ReadPlan, check_reach, read_plan
from scrying.axes import Float, Model, Tensor
from scrying.errors import InvalidInputError, SiteError
from scrying.models.adapter import to_model
from scrying.prompt_sets import PromptSet, pad_id, pad_right
from scrying.sites import Component, HookFn, Site, check_site, hooks, recorded

Head = tuple[int, int]


def check_heads(model: Model, heads: Iterable[Head]) -> list[Head]:
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


def all_heads(model: Model) -> list[Head]:
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


def read_and_ablate(prompts: PromptSet, config: AblationConfig) -> tuple[ReadPlan, Bool[Tensor, "batch pos"]]:
    """Where the metric reads each prompt and where heads are ablated, checked to meet
    (:func:`~scrying.ablation.metrics.check_reach`)."""
    plan = read_plan(prompts, config.metric)
    mask = ablate_mask(prompts, config)
    check_reach(plan, mask)
    return plan, mask


@torch.no_grad()
def clean_z(model: Model, tokens: torch.Tensor) -> list[Float[Tensor, "batch pos head d_head"]]:
    """Clean ``z`` of every layer."""
    sites = [Site(Component.Z, layer) for layer in range(model.cfg.n_layers)]
    with recorded(model, sites) as store:
        model(to_model(model, tokens), return_type=None)
    return [store[site] for site in sites]


def replacement_z(
    model: Model,
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
    last = config.positions == "last"
    batch_index = torch.arange(batch)
    if config.method == "mean":
        out = [_positional_mean(zl, ref.real, pos, batch) for zl in ref_z]
        if last:
            out = [ol.clone() for ol in out]  # end-aligned: the mean over the reference prompts' last positions
            for zl, ol in zip(ref_z, out, strict=True):
                ol[batch_index, prompts.lengths - 1] = zl[torch.arange(ref.n_prompts), ref.lengths - 1].mean(0)
        return out
    source = _resample_sources(prompts, ref, config, own=reference is None)
    if not last:
        return [zl[source, :pos] for zl in ref_z]
    out = []
    for zl in ref_z:
        ol = torch.zeros(batch, pos, *zl.shape[2:], dtype=zl.dtype, device=zl.device)
        ol[batch_index, prompts.lengths - 1] = zl[source, ref.lengths[source] - 1]
        out.append(ol)
    return out


def _resample_sources(prompts: PromptSet, ref: PromptSet, config: AblationConfig, *, own: bool) -> torch.Tensor:
    """For each prompt, a seeded random source prompt of ``ref`` (another one when ``ref`` is
    the set itself) that has every position where the prompt is ablated."""
    if config.positions == "last":
        need = torch.zeros_like(prompts.lengths)
    else:
        mask = ablate_mask(prompts, config)
        positions = torch.arange(mask.shape[1])
        need = torch.where(mask, positions + 1, 0).amax(dim=1)
    gen = torch.Generator().manual_seed(config.seed)
    source = []
    for b in range(prompts.n_prompts):
        ok = ref.lengths >= need[b]
        if own:
            ok[b] = False
        choices = ok.nonzero()[:, 0]
        if len(choices) == 0 and ref.n_prompts < 2:
            raise InvalidInputError("resample ablation needs at least 2 prompts (or a reference set)")
        if len(choices) == 0:
            raise InvalidInputError(
                f"resample ablation of prompt {b + 1} ({int(prompts.lengths[b])} tokens) needs another "
                f"prompt with at least {int(need[b])} tokens; give a reference set with longer prompts "
                "or use positions='last'"
            )
        source.append(int(choices[torch.randint(len(choices), (1,), generator=gen)]))
    return torch.tensor(source, dtype=torch.long)


def _positional_mean(
    z: Float[Tensor, "ref pos_r head d_head"], real: Bool[Tensor, "ref pos_ref"], pos: int, batch: int
) -> Float[Tensor, "batch pos head d_head"]:
    weight = torch.zeros(z.shape[0], z.shape[1], dtype=z.dtype, device=z.device)
    weight[:, : real.shape[1]] = real.to(z.device, z.dtype)
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
        out = torch.where(where.to(z.device), source[None].to(z.device, z.dtype), split)
        return einops.rearrange(out, "r b pos head d -> (r b) pos head d")

    return fn


def layer_hooks(
    model: Model,
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


def head_mask(model: Model, heads: Iterable[Head]) -> Bool[Tensor, "layer head"]:
    mask = torch.zeros(model.cfg.n_layers, model.cfg.n_heads, dtype=torch.bool)
    for layer, head in check_heads(model, heads):
        mask[layer, head] = True
    return mask


@contextlib.contextmanager
def ablated(
    model: Model,
    heads: Iterable[Head],
    pos_mask: Bool[Tensor, "batch pos"],
    sources: list[torch.Tensor],
) -> Iterator[Any]:
    """Run the model with all of ``heads`` ablated together (one replica)."""
    mask = head_mask(model, heads)[None]
    with hooks(model, layer_hooks(model, mask, pos_mask, sources)):
        yield model
