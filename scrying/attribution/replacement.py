"""The local replacement model: the real model with its nonlinearities frozen on one prompt.

Frozen at their values on the prompt (Ameisen et al. 2025, "Circuit Tracing", §2.2 local
replacement model; circuit-tracer's ``ReplacementModel``):

* every normalization scale (pre-, post-, q/k- and final norms),
* every attention pattern,
* every MLP gate: gated MLPs (Llama, Gemma) keep ``act(gate(x))`` fixed, so a neuron
  ``post_i = act(gate_i) * up_i(x)`` is linear in the residual stream; non-gated MLPs keep the
  slope ``act(pre_i) / pre_i`` fixed.

With these frozen, every neuron activation and every logit is a linear, homogeneous function of
the embeddings and of the earlier neurons' activations, so direct effects are exact.

Two ways to run it, both built from hooks on :mod:`scrying.sites` only:

* :func:`attribution_pass` — one forward over a replicated batch in which each MLP's output is
  cut from the gradient (its activations become leaves), for batched backward passes that read
  direct effects (gradient x activation) at every source at once.
* :func:`intervention_pass` — a forward with every frozen quantity *replaced* by its clean value
  and every neuron clamped to its clean activation except where told otherwise; the reference
  measurement of what an edge predicts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from scrying.axes import Float, Int, Tensor
from scrying.sites import Component, Site, has_site, hooks, recorded

_SCALES = (
    Component.LN1_SCALE,
    Component.LN2_SCALE,
    Component.LN1_POST_SCALE,
    Component.LN2_POST_SCALE,
    Component.Q_NORM_SCALE,
    Component.K_NORM_SCALE,
)


def is_gated(model: Any) -> bool:
    """Whether the MLPs are gated (``post = act(gate(x)) * up(x)``)."""
    return has_site(model, Site(Component.MLP_PRE_LINEAR, 0))


def frozen_sites(model: Any) -> list[Site]:
    """Every site whose clean value the replacement model freezes (gates only when gated)."""
    sites = [Site(Component.FINAL_SCALE)]
    gated = is_gated(model)
    for layer in range(model.cfg.n_layers):
        sites += [Site(c, layer) for c in _SCALES if has_site(model, Site(c, layer))]
        sites.append(Site(Component.PATTERN, layer))
        if gated:
            sites.append(Site(Component.MLP_PRE, layer))
    return sites


@dataclass
class CleanRun:
    """Clean activations of one prompt: frozen quantities, neuron activations, embeddings."""

    tokens: Int[Tensor, "1 pos"]
    frozen: dict[Site, Tensor]
    post: Float[Tensor, "layer pos d_mlp"]
    resid0: Float[Tensor, "pos d_model"]
    logits: Float[Tensor, "pos d_vocab"]
    slope: Float[Tensor, "layer pos d_mlp"] | None  # act(pre)/pre, non-gated MLPs only


@torch.no_grad()
def clean_run(model: Any, tokens: Int[Tensor, "1 pos"]) -> CleanRun:
    """Run the prompt once and keep what the replacement model needs."""
    frozen = frozen_sites(model)
    posts = [Site(Component.MLP_POST, layer) for layer in range(model.cfg.n_layers)]
    pres = [] if is_gated(model) else [Site(Component.MLP_PRE, layer) for layer in range(model.cfg.n_layers)]
    sites = frozen + posts + pres + [Site(Component.RESID_PRE, 0)]
    with recorded(model, sites, clone=True) as store:
        logits = model(tokens)
    slope = None
    if pres:
        pre = torch.cat([store[s] for s in pres], dim=0)
        post = torch.cat([store[s] for s in posts], dim=0)
        slope = torch.where(pre != 0, post / torch.where(pre != 0, pre, 1), torch.zeros_like(pre))
    return CleanRun(
        tokens=tokens,
        frozen={s: store[s] for s in frozen},
        post=torch.cat([store[s] for s in posts], dim=0),
        resid0=store[Site(Component.RESID_PRE, 0)][0],
        logits=logits[0].detach(),
        slope=slope,
    )


@dataclass
class Leaves:
    """Tensors created during an attribution pass: read ``.grad`` after ``backward``."""

    post: dict[int, Tensor] = field(default_factory=dict)  # layer -> [batch pos d_mlp] leaf
    live_post: dict[int, Tensor] = field(default_factory=dict)  # attached, for target values
    resid0: Tensor | None = None  # [batch pos d_model] leaf


def _freeze_hooks(model: Any, clean: CleanRun, batch: int) -> list[tuple[Site, Any]]:
    def replace(value: Tensor):
        def fn(act, hook):
            return value.expand(batch, *value.shape[1:]).to(act.dtype)

        return fn

    return [(site, replace(value)) for site, value in clean.frozen.items()]


def _linear_post_hooks(model: Any, clean: CleanRun, on_post) -> list[tuple[Site, Any]]:
    """Hooks that make each neuron linear in its input, then hand it to ``on_post``.

    Gated MLPs are already linear once their gate pre-activation is frozen; for non-gated ones
    the neuron becomes ``pre * slope`` with the clean slope ``act(pre_clean) / pre_clean``.
    """
    out: list[tuple[Site, Any]] = []
    pre_live: dict[int, Tensor] = {}
    for layer in range(model.cfg.n_layers):
        if clean.slope is None:
            out.append((Site(Component.MLP_POST, layer), _bind(on_post, layer, None, pre_live)))
        else:
            out.append((Site(Component.MLP_PRE, layer), _capture(layer, pre_live)))
            out.append((Site(Component.MLP_POST, layer), _bind(on_post, layer, clean.slope[layer], pre_live)))
    return out


def _capture(layer: int, store: dict[int, Tensor]):
    def fn(act, hook):
        store[layer] = act

    return fn


def _bind(on_post, layer: int, slope: Tensor | None, pre_live: dict[int, Tensor]):
    def fn(act, hook):
        if slope is not None:
            act = pre_live.pop(layer) * slope.to(act.dtype)
        return on_post(act, layer)

    return fn


@contextmanager
def attribution_pass(model: Any, clean: CleanRun, batch: int, *, cut_mlps: bool = True) -> Iterator[Leaves]:
    """Hooks for a batched forward of ``clean.tokens`` repeated ``batch`` times.

    Inside the block, run ``model(tokens.expand(batch, -1))``; neuron activations (``live_post``,
    attached to their inputs) can serve as backward seeds, while the copies that flow onward are
    leaves (``post``) whose gradients are the direct effects per unit activation.

    With ``cut_mlps=False`` the onward copies stay attached (``act + zero leaf``), so leaf
    gradients are *total* effects through later neurons too.
    """
    leaves = Leaves()

    def on_post(act: Tensor, layer: int) -> Tensor:
        leaves.live_post[layer] = act
        if cut_mlps:
            leaf = act.detach().requires_grad_(True)
            leaves.post[layer] = leaf
            return leaf
        zero = torch.zeros_like(act, requires_grad=True)
        leaves.post[layer] = zero
        return act + zero

    def on_resid0(act, hook):
        leaf = act.detach().requires_grad_(True)
        leaves.resid0 = leaf
        return leaf

    fwd = _freeze_hooks(model, clean, batch) + _linear_post_hooks(model, clean, on_post) + [(Site(Component.RESID_PRE, 0), on_resid0)]
    with hooks(model, fwd):
        yield leaves


@dataclass(frozen=True)
class Intervention:
    """One row of an intervention batch: neurons ``(layer, pos, index) -> value`` and
    embedding rows ``pos -> vector`` to set; everything else stays at its clean value."""

    post: dict[tuple[int, int, int], float] = field(default_factory=dict)
    resid0: dict[int, Tensor] = field(default_factory=dict)


@torch.no_grad()
def intervention_pass(
    model: Any,
    clean: CleanRun,
    interventions: list[Intervention],
    *,
    free_layer: int | None = None,
) -> tuple[Float[Tensor, "batch pos d_vocab"], Float[Tensor, "batch layer pos d_mlp"]]:
    """Run the frozen model once per intervention (batched), every neuron clamped to its clean
    activation except the ones an intervention sets.

    Neurons of ``free_layer`` are computed live (linear in their input) instead of clamped, so a
    target neuron there shows the effect. Returns logits and every layer's live (pre-clamp)
    neuron activations, per intervention.
    """
    batch = len(interventions)
    live: dict[int, Tensor] = {}

    def on_post(act: Tensor, layer: int) -> Tensor:
        live[layer] = act.clone()
        if layer == free_layer:
            value = act.clone()
        else:
            value = clean.post[layer].unsqueeze(0).expand(batch, -1, -1).clone().to(act.dtype)
        for row, intervention in enumerate(interventions):
            for (ly, pos, idx), v in intervention.post.items():
                if ly == layer:
                    value[row, pos, idx] = v
        return value

    def on_resid0(act, hook):
        act = act.clone()
        for row, intervention in enumerate(interventions):
            for pos, vector in intervention.resid0.items():
                act[row, pos] = vector
        return act

    fwd = [(Site(Component.RESID_PRE, 0), on_resid0)]
    fwd += _freeze_hooks(model, clean, batch) + _linear_post_hooks(model, clean, on_post)
    with hooks(model, fwd):
        logits = model(clean.tokens.expand(batch, -1))
    return logits, torch.stack([live[layer] for layer in range(model.cfg.n_layers)], dim=1)
