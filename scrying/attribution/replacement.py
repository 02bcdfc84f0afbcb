"""The local replacement model: the real model with its nonlinearities frozen on one prompt.

Frozen at their values on the prompt (Ameisen et al. 2025, "Circuit Tracing", §2.2 local
replacement model; circuit-tracer's ``ReplacementModel``):

* every normalization scale (pre-, post-, q/k- and final norms),
* every attention pattern,
* whatever the feature basis freezes (:mod:`scrying.attribution.basis`): for MLP neurons, every
  gate (gated MLPs keep ``act(gate(x))`` fixed, so a neuron ``post_i = act(gate_i) * up_i(x)``
  is linear in the residual stream; non-gated MLPs keep the slope ``act(pre_i) / pre_i``).

With these frozen, every feature activation and every logit is a linear, homogeneous function of
the embeddings, of the earlier features' activations and of the (constant) error terms, so
direct effects are exact.

Two ways to run it, both built from hooks on :mod:`scrying.sites` only:

* :func:`attribution_pass` — one forward over a replicated batch in which each layer's features
  are cut from the gradient (they become leaves), for batched backward passes that read direct
  effects (gradient x activation) at every source at once.
* :func:`intervention_pass` — a forward with every frozen quantity *replaced* by its clean value
  and every feature clamped to its clean activation except where told otherwise; the reference
  measurement of what an edge predicts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from scrying.attribution.basis import FeatureBasis, NeuronBasis
from scrying.axes import Float, Int, Model, Tensor
from scrying.sites import Component, HookFn, Site, has_site, hooks, recorded

_SCALES = (
    Component.LN1_SCALE,
    Component.LN2_SCALE,
    Component.LN1_POST_SCALE,
    Component.LN2_POST_SCALE,
    Component.Q_NORM_SCALE,
    Component.K_NORM_SCALE,
)


def frozen_sites(model: Model, basis: FeatureBasis) -> list[Site]:
    """Every site whose clean value the replacement model freezes: norm scales, attention
    patterns, and what the basis freezes."""
    sites = [Site(Component.FINAL_SCALE)]
    for layer in range(model.cfg.n_layers):
        sites += [Site(c, layer) for c in _SCALES if has_site(model, Site(c, layer))]
        sites.append(Site(Component.PATTERN, layer))
    return sites + basis.frozen_sites(model)


@dataclass
class CleanRun:
    """Clean activations of one prompt: frozen quantities, feature activations, embeddings."""

    tokens: Int[Tensor, "1 pos"]
    frozen: dict[Site, Tensor]
    features: Float[Tensor, "layer pos feature"]
    resid0: Float[Tensor, "pos d_model"]
    logits: Float[Tensor, "pos d_vocab"]
    basis: FeatureBasis
    state: dict[str, Any] = field(default_factory=dict)  # the basis's own clean quantities


@torch.no_grad()
def clean_run(model: Model, tokens: Int[Tensor, "1 pos"], basis: FeatureBasis | None = None) -> CleanRun:
    """Run the prompt once and keep what the replacement model needs (default basis: neurons)."""
    basis = basis or NeuronBasis()
    frozen = frozen_sites(model, basis)
    sites = list(dict.fromkeys(frozen + basis.record_sites(model) + [Site(Component.RESID_PRE, 0)]))
    with recorded(model, sites, clone=True) as store:
        logits = model(tokens)
    features, state = basis.clean_state(model, store)
    return CleanRun(
        tokens=tokens,
        frozen={s: store[s] for s in frozen},
        features=features,
        resid0=store[Site(Component.RESID_PRE, 0)][0],
        logits=logits[0].detach(),
        basis=basis,
        state=state,
    )


@dataclass
class Leaves:
    """Tensors created during an attribution pass: read ``.grad`` after ``backward``."""

    features: dict[int, Tensor] = field(default_factory=dict)  # layer -> [batch pos feature] leaf
    live: dict[int, Tensor] = field(default_factory=dict)  # attached features, for target values
    errors: dict[int, Tensor] = field(default_factory=dict)  # layer -> the basis's error term, a leaf
    resid0: Tensor | None = None  # [batch pos d_model] leaf


def _freeze_hooks(clean: CleanRun, batch: int) -> list[tuple[Site, HookFn]]:
    def replace(value: Tensor) -> HookFn:
        def fn(act: Tensor, hook: Any) -> Tensor:
            return value.expand(batch, *value.shape[1:]).to(act.dtype)

        return fn

    return [(site, replace(value)) for site, value in clean.frozen.items()]


@contextmanager
def attribution_pass(model: Model, clean: CleanRun, batch: int, *, cut: bool = True) -> Iterator[Leaves]:
    """Hooks for a batched forward of ``clean.tokens`` repeated ``batch`` times.

    Inside the block, run ``model(tokens.expand(batch, -1))``; feature activations (``live``,
    attached to their inputs) can serve as backward seeds, while the copies that flow onward are
    leaves (``features``) whose gradients are the direct effects per unit activation. The
    basis's error terms (constants of the replacement model) flow on as leaves (``errors``).

    With ``cut=False`` the onward copies stay attached (``act + zero leaf``), so leaf gradients
    are *total* effects through later features too.
    """
    leaves = Leaves()

    def on_features(layer: int, act: Tensor) -> Tensor:
        leaves.live[layer] = act
        if cut:
            leaf = act.detach().requires_grad_(True)
            leaves.features[layer] = leaf
            return leaf
        zero = torch.zeros_like(act, requires_grad=True)
        leaves.features[layer] = zero
        return act + zero

    def on_error(layer: int, error: Tensor) -> Tensor:
        leaf = error.detach().clone().requires_grad_(True)
        leaves.errors[layer] = leaf
        return leaf

    def on_resid0(act: Tensor, hook: Any) -> Tensor:
        leaf = act.detach().requires_grad_(True)
        leaves.resid0 = leaf
        return leaf

    fwd = _freeze_hooks(clean, batch) + clean.basis.feature_hooks(model, clean.state, on_features, on_error)
    fwd.append((Site(Component.RESID_PRE, 0), on_resid0))
    with hooks(model, fwd):
        yield leaves


@dataclass(frozen=True)
class Intervention:
    """One row of an intervention batch: features ``(layer, pos, index) -> value`` and
    embedding rows ``pos -> vector`` to set; everything else stays at its clean value."""

    features: dict[tuple[int, int, int], float] = field(default_factory=dict)
    resid0: dict[int, Tensor] = field(default_factory=dict)


@torch.no_grad()
def intervention_pass(
    model: Model,
    clean: CleanRun,
    interventions: list[Intervention],
    *,
    free_layer: int | None = None,
) -> tuple[Float[Tensor, "batch pos d_vocab"], Float[Tensor, "batch layer pos feature"]]:
    """Run the frozen model once per intervention (batched), every feature clamped to its clean
    activation except the ones an intervention sets.

    Features of ``free_layer`` are computed live (linear in their input) instead of clamped, so
    a target feature there shows the effect. Returns logits and every layer's live (pre-clamp)
    feature activations, per intervention.
    """
    batch = len(interventions)
    live: dict[int, Tensor] = {}

    def on_features(layer: int, act: Tensor) -> Tensor:
        live[layer] = act.clone()
        if layer == free_layer:
            value = act.clone()
        else:
            value = clean.features[layer].unsqueeze(0).expand(batch, -1, -1).clone().to(act.dtype)
        for row, intervention in enumerate(interventions):
            for (ly, pos, idx), v in intervention.features.items():
                if ly == layer:
                    value[row, pos, idx] = v
        return value

    def on_resid0(act: Tensor, hook: Any) -> Tensor:
        act = act.clone()
        for row, intervention in enumerate(interventions):
            for pos, vector in intervention.resid0.items():
                act[row, pos] = vector
        return act

    fwd = [(Site(Component.RESID_PRE, 0), on_resid0)]
    fwd += _freeze_hooks(clean, batch) + clean.basis.feature_hooks(model, clean.state, on_features, lambda _, e: e)
    with hooks(model, fwd):
        logits = model(clean.tokens.expand(batch, -1))
    return logits, torch.stack([live[layer] for layer in range(model.cfg.n_layers)], dim=1)
