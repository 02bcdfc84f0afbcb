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

Two ways to run it and one reader of its logits, all built from hooks on :mod:`scrying.sites` only:

* :func:`attribution_pass` — one forward over a replicated batch in which each layer's features
  are cut from the gradient (they become leaves), for batched backward passes that read direct
  effects (gradient x activation) at every source at once.
* :func:`frozen_demeaned_logits` (the reader) — the frozen final norm and the target columns of the
  unembedding at the last position only, for logit targets read from an attribution pass
  stopped after the last block.
* :func:`intervention_pass` — a forward with every frozen quantity *replaced* by its clean value
  and every feature clamped to its clean activation except where told otherwise; the reference
  measurement of what an edge predicts.
* :func:`intervened_targets` — the same interventions, read as validation needs them: the
  demeaned logits of a few target tokens at the last position (never the whole vocabulary),
  from the clean residual stream before the earliest intervened layer (the blocks before it
  are the clean run's), with the frozen basis computed from its active features alone
  (:meth:`~scrying.attribution.basis.FeatureBasis.attribution_hooks`; a transcoder's real MLP is
  then skipped). Equal to :func:`intervention_pass` to rounding (tested).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
from jaxtyping import Bool

from scrying.attribution.basis import (
    ActiveSet,
    BasisState,
    FeatureBasis,
    NeuronBasis,
    dense_active,
    dense_attribution_hooks,
)
from scrying.attribution.frozen_attention import (
    attention_sites,
    frozen_attention_hooks,
    z_is_pattern_times_values,
)
from scrying.axes import Float, Int, Model, Tensor
from scrying.errors import ConfigError, InvalidInputError
from scrying.models.adapter import final_resid, final_softcap, last_position_logits, logit_columns
from scrying.sites import Component, HookFn, Site, check_site, has_site, hooks, recorded

_SCALES = (
    Component.LN1_SCALE,
    Component.LN2_SCALE,
    Component.LN1_POST_SCALE,
    Component.LN2_POST_SCALE,
    Component.Q_NORM_SCALE,
    Component.K_NORM_SCALE,
)


#: What :func:`intervention_pass` can unfreeze, one kind at a time (validation locates the gap
#: between the frozen and the real model with it): attention patterns, normalization scales
#: (``"norms"``: every one; ``"final_norm"``: the final norm's alone, the one between the last
#: block and the logits), the
#: basis (its frozen nonlinearity, MLP gates / slopes / a transcoder's mask, and a transcoder's
#: frozen reconstruction error: the real MLP), and the features the graph did not select (its
#: error nodes), which are otherwise clamped to their clean values. ``"masks"`` lifts the
#: basis's nonlinearity alone and keeps its error term frozen (for a transcoder: features
#: computed with their live activation, the MLP still replaced by the transcoder plus the clean
#: error); ``"basis"`` implies it.
Unfreeze = Literal["patterns", "norms", "final_norm", "masks", "basis", "errors"]


def frozen_sites(model: Model, basis: FeatureBasis) -> list[Site]:
    """Every site whose clean value the replacement model freezes: norm scales, attention
    patterns, and what the basis freezes.

    The norm hooks must exist where the architecture has the norm (a pre-norm before attention
    and MLP in every block, a final norm): a missing one would leave that norm live and the
    graph silently inexact, so it raises :class:`~scrying.errors.SiteError`. A final logit
    softcap (``cfg.output_logits_soft_cap``, Gemma 2) cannot be frozen by a hook and is refused.
    """
    cap = final_softcap(model)
    if cap:
        raise ConfigError(
            f"the model applies a final logit softcap ({cap:g}), which the local replacement model "
            "cannot freeze; attribution graphs would not be exact"
        )
    sites = [Site(Component.FINAL_SCALE)]
    required = (Component.LN1_SCALE, Component.LN2_SCALE)
    for layer in range(model.cfg.n_layers):
        for component in required:
            check_site(model, Site(component, layer))
        sites += [Site(c, layer) for c in _SCALES if has_site(model, Site(c, layer))]
        sites.append(Site(Component.PATTERN, layer))
    check_site(model, Site(Component.FINAL_SCALE))
    return sites + basis.frozen_sites(model)


def _kind(site: Site, basis_sites: set[Site]) -> Unfreeze:
    if site in basis_sites:
        return "masks"  # a gate or slope: the basis's nonlinearity
    if site.component == Component.FINAL_SCALE:
        return "final_norm"
    return "patterns" if site.component == Component.PATTERN else "norms"


def _lifted(unfrozen: frozenset[str]) -> frozenset[str]:
    """``unfrozen`` with what it implies (the whole basis live: its nonlinearity too; every norm
    live: the final one too)."""
    implied = ({"masks"} if "basis" in unfrozen else set()) | ({"final_norm"} if "norms" in unfrozen else set())
    return unfrozen | implied


def _state(clean: CleanRun, unfrozen: frozenset[str]) -> BasisState:
    """The basis's state with what ``unfrozen`` lifts: everything (``"basis"``), or its
    nonlinearity alone (``"masks"``: the live state with the clean error term kept)."""
    if "basis" in unfrozen:
        return clean.basis.live_state(clean.state)
    if "masks" in unfrozen:
        return replace(clean.basis.live_state(clean.state), error=clean.state.error)
    return clean.state


@dataclass
class CleanRun:
    """Clean activations of one prompt: frozen quantities, feature activations, embeddings."""

    tokens: Int[Tensor, "1 pos"]
    frozen: dict[Site, Tensor]
    features: Float[Tensor, "layer pos feature"]
    resid0: Float[Tensor, "pos d_model"]
    # the residual stream before each block (intervened passes start at the first block they change)
    resid: Float[Tensor, "layer pos d_model"]
    last_logits: Float[Tensor, " d_vocab"]  # at the last position only (1 GB for all at 1,024 tokens)
    basis: FeatureBasis
    state: BasisState = field(default_factory=BasisState)  # the basis's own clean quantities
    # hook_z is pattern @ values here (checked on this run): attribution passes may then apply
    # the frozen patterns at hook_z, without a pattern copy per batch row (frozen_attention).
    z_from_pattern: bool = False


@torch.no_grad()
def clean_run(model: Model, tokens: Int[Tensor, "1 pos"], basis: FeatureBasis | None = None) -> CleanRun:
    """Run the prompt once and keep what the replacement model needs (default basis: neurons)."""
    basis = basis or NeuronBasis()
    frozen = frozen_sites(model, basis)
    resids = [Site(Component.RESID_PRE, layer) for layer in range(model.cfg.n_layers)]
    sites = list(dict.fromkeys(frozen + basis.record_sites(model) + resids + attention_sites(model)))
    with recorded(model, sites, clone=True) as store:
        last_logits = last_position_logits(model, final_resid(model, tokens))[0, 0]
    features, state = basis.clean_state(model, store)
    return CleanRun(
        tokens=tokens,
        frozen={s: store[s] for s in frozen},
        features=features,
        resid0=store[Site(Component.RESID_PRE, 0)][0],
        resid=torch.cat([store[site] for site in resids]),
        last_logits=last_logits.detach(),
        basis=basis,
        state=state,
        z_from_pattern=z_is_pattern_times_values(model, store),
    )


def checked_clean_run(clean: CleanRun, tokens: Int[Tensor, "1 pos"], basis: FeatureBasis) -> CleanRun:
    """``clean``, a caller's clean run, once it is shown to be of ``tokens`` in ``basis``."""
    if clean.basis is not basis or not torch.equal(clean.tokens.cpu(), tokens.cpu()):
        raise InvalidInputError(
            f"a clean run of {clean.tokens.shape[-1]} tokens in the {clean.basis.name!r} basis was passed for "
            f"{tokens.shape[-1]} tokens in the {basis.name!r} basis; expected the run of these tokens in this basis object"
        )
    return clean


@dataclass
class Leaves:
    """Tensors created during an attribution pass: read ``.grad`` after ``backward``.

    Features are compact (``[batch n_active]``, in the order of ``active[layer]``): the features
    the frozen model can move, every one for a dense basis, the active ones for a sparse one.
    """

    active: list[ActiveSet] = field(default_factory=list)  # layer -> which features, in order
    features: dict[int, Tensor] = field(default_factory=dict)  # layer -> [batch n_active] leaf
    live: dict[int, Tensor] = field(default_factory=dict)  # attached features, for target values
    # layer -> [batch pos 1] zero leaf scaling the basis's error term: its gradient is the error
    # term's direct effect at each position
    errors: dict[int, Tensor] = field(default_factory=dict)
    resid0: Tensor | None = None  # [batch pos d_model] leaf

    def gradient(self, layer: int, pos: int, index: int) -> float:
        """The first copy's gradient at feature ``(layer, pos, index)`` (0 where none reached it)."""
        grad = self.features[layer].grad
        if grad is None:
            return 0.0
        k = self.active[layer].lookup(torch.tensor([pos]), torch.tensor([index]))
        return float(grad[0, k[0]])


def _freeze_hooks(
    model: Model, clean: CleanRun, batch: int, unfrozen: frozenset[str] = frozenset()
) -> list[tuple[Site, HookFn]]:
    def replaced(value: Tensor) -> HookFn:
        def fn(act: Tensor, hook: Any) -> Tensor:
            return value.expand(batch, *value.shape[1:]).to(act.dtype)

        return fn

    basis_sites = set(clean.basis.frozen_sites(model))
    unfrozen = _lifted(unfrozen)
    return [
        (site, replaced(value))
        for site, value in clean.frozen.items()
        if _kind(site, basis_sites) not in unfrozen
    ]


@contextmanager
def attribution_pass(
    model: Model, clean: CleanRun, batch: int, *, cut: bool = True, frozen: bool = True
) -> Iterator[Leaves]:
    """Hooks for a batched forward of ``clean.tokens`` repeated ``batch`` times.

    Inside the block, run ``model(tokens.expand(batch, -1))``; feature activations (``live``,
    attached to their inputs, compact: see :class:`Leaves`) can serve as backward seeds, while
    the copies that flow onward are leaves (``features``) whose gradients are the direct effects
    per unit activation. The basis's error terms (constants of the replacement model) flow on
    scaled by ``1 + tap`` (``errors``: zero leaves whose gradients are the terms' direct
    effects). Frozen, the basis's own attribution hooks run (a sparse basis tracks its active
    features only) and, where ``hook_z`` is pattern times values, the frozen patterns are applied
    there (:mod:`scrying.attribution.frozen_attention`); unfrozen, every feature is tracked
    through its ``feature_hooks``.

    With ``cut=False`` the onward copies stay attached (``act + zero leaf``), so leaf gradients
    are *total* effects through later features too. With ``frozen=False`` nothing is frozen:
    the real model's gradients (for an activation x gradient baseline).
    """
    basis = clean.basis
    leaves = Leaves(active=basis.active_features(clean.features, clean.state) if frozen else dense_active(clean.features))

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
        # error * (1 + tap), tap a zero leaf with one entry per (copy, position): the same value,
        # and tap's gradient is the error term's direct effect, sum over d of error x gradient,
        # without a [batch pos d_model] copy of the error or of its gradient per layer. Frozen,
        # the error is a constant; unfrozen it is the real MLP's output minus the reconstruction,
        # a function of the layer's input that the real model's gradient must flow through.
        tap = torch.zeros(*error.shape[:-1], 1, dtype=error.dtype, requires_grad=True)
        leaves.errors[layer] = tap
        return (error.detach() if frozen else error) * (1 + tap)

    def on_resid0(act: Tensor, hook: Any) -> Tensor:
        leaf = act.detach().requires_grad_(True)
        leaves.resid0 = leaf
        return leaf

    if frozen and clean.z_from_pattern:  # the patterns applied at hook_z, stored once
        fwd = _freeze_hooks(model, clean, batch, frozenset({"patterns"}))
        patterns = {layer: clean.frozen[Site(Component.PATTERN, layer)] for layer in range(model.cfg.n_layers)}
        fwd += frozen_attention_hooks(model, patterns)
        fwd += basis.attribution_hooks(model, clean.features, clean.state, leaves.active, on_features, on_error)
    elif frozen:
        fwd = _freeze_hooks(model, clean, batch)
        fwd += basis.attribution_hooks(model, clean.features, clean.state, leaves.active, on_features, on_error)
    else:
        fwd = dense_attribution_hooks(basis, model, basis.live_state(clean.state), on_features, on_error)
    fwd.append((Site(Component.RESID_PRE, 0), on_resid0))
    with hooks(model, fwd):
        yield leaves


def frozen_demeaned_logits(
    model: Model, clean: CleanRun, resid: Float[Tensor, "row d_model"], columns: Int[Tensor, "row col"]
) -> Float[Tensor, "row col"]:
    """The replacement model's demeaned logits (logit minus the vocabulary mean) of tokens
    ``columns[i]`` at the prompt's last position, from rows of the residual stream after the
    last block there (e.g. one per copy of an :func:`attribution_pass`, read with
    :func:`~scrying.models.adapter.final_resid`): the final norm with its clean scale, frozen as
    :func:`attribution_pass` freezes it, then only those columns and the unembedding's mean row
    (:func:`~scrying.models.adapter.logit_columns` with ``demean``), never the whole vocabulary."""
    scale = clean.frozen[Site(Component.FINAL_SCALE)][:, -1:]  # 1 1 1

    def fn(act: Tensor, hook: Any) -> Tensor:
        return scale.expand_as(act).to(act.dtype)

    with hooks(model, [(Site(Component.FINAL_SCALE), fn)]):
        return logit_columns(model, resid, columns, demean=True)


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
    live: Bool[Tensor, "layer pos feature"] | None = None,
    unfrozen: frozenset[Unfreeze] = frozenset(),
    last_only: bool = False,
) -> tuple[Float[Tensor, "batch read d_vocab"], Float[Tensor, "batch layer pos feature"]]:
    """Run the frozen model once per intervention (batched), every feature clamped to its clean
    activation except the ones an intervention sets.

    Features of ``free_layer``, and those ``live`` marks, are computed (linear in their input)
    instead of clamped, so a target feature there shows the effect. ``unfrozen`` lifts kinds of
    freezing (:data:`Unfreeze`; ``"errors"``: every feature live); with all four the pass is the
    real model with the interventions. Returns logits and every layer's live (pre-clamp) feature
    activations, per intervention; ``last_only``: logits at the last position alone
    (``[batch 1 d_vocab]``; the unembedding at every position is most of a long prompt's pass).
    """
    batch = len(interventions)
    computed: dict[int, Tensor] = {}

    def on_features(layer: int, act: Tensor) -> Tensor:
        computed[layer] = act.clone()
        if layer == free_layer or "errors" in unfrozen:
            value = act.clone()
        else:
            value = clean.features[layer].unsqueeze(0).expand(batch, -1, -1).clone().to(act.dtype)
            if live is not None:
                value = torch.where(live[layer].to(act.device), act, value)
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

    state = _state(clean, unfrozen)
    fwd = [(Site(Component.RESID_PRE, 0), on_resid0)]
    fwd += _freeze_hooks(model, clean, batch, frozenset(unfrozen))
    fwd += clean.basis.feature_hooks(model, state, on_features, lambda _, e: e)
    with hooks(model, fwd):
        if last_only:
            logits = last_position_logits(model, final_resid(model, clean.tokens.expand(batch, -1)))
        else:
            logits = model(clean.tokens.expand(batch, -1))
    return logits, torch.stack([computed[layer] for layer in range(model.cfg.n_layers)], dim=1)


@torch.no_grad()
def intervened_targets(
    model: Model,
    clean: CleanRun,
    interventions: list[Intervention],
    columns: Int[Tensor, " col"],
    *,
    live: Bool[Tensor, "layer pos feature"] | None = None,
    unfrozen: frozenset[Unfreeze] = frozenset(),
) -> Float[Tensor, "batch col"]:
    """The demeaned logits (logit minus the vocabulary mean) of tokens ``columns`` at the last
    position, one row per intervention: :func:`intervention_pass` (``free_layer`` None) read for
    a few targets, cheaply (module docstring).

    * The pass starts at the earliest block an intervention changes, from the clean residual
      stream there (``clean.resid``): nothing before it differs from the clean run.
    * Where the basis is frozen (``"masks"`` and ``"basis"`` not in ``unfrozen``) its features
      are computed through :meth:`~scrying.attribution.basis.FeatureBasis.attribution_hooks`, the
      active features only (the others are 0 under the frozen mask), clamped there.
    * Where every feature is live and the basis has a cheaper way to apply only the settings
      (:meth:`~scrying.attribution.basis.FeatureBasis.setting_hooks`: transcoders steer the real
      MLP's output along the set features' decoder rows), it is used.
    * Only the target columns of the unembedding and its mean row are read, with the final norm's
      clean scale where the final norm is frozen (:func:`frozen_demeaned_logits`).
    """
    batch = len(interventions)
    touched = [ly for iv in interventions for ly, _, _ in iv.features]
    start = 0 if any(iv.resid0 for iv in interventions) else min(touched, default=0)
    resid = clean.resid[start].unsqueeze(0).expand(batch, -1, -1).clone()
    for row, intervention in enumerate(interventions):
        for pos, vector in intervention.resid0.items():
            resid[row, pos] = vector.to(resid.dtype)
    settings = _settings(interventions)
    every = "errors" in unfrozen
    fwd = _freeze_hooks(model, clean, batch, frozenset(unfrozen))
    steered = None
    if every:
        reach = reached_positions(interventions, model.cfg.n_layers, clean.tokens.shape[-1])
        steered = clean.basis.setting_hooks(model, _state(clean, frozenset(unfrozen)), settings, reach)
    if steered is not None:  # every feature live, only the settings move: the basis's cheaper way
        fwd += steered
    elif _lifted(frozenset(unfrozen)) & {"masks", "basis"}:

        def on_features(layer: int, act: Tensor) -> Tensor:
            if every:
                value = act.clone()
            else:
                value = clean.features[layer].unsqueeze(0).expand(batch, -1, -1).to(act.dtype).clone()
                if live is not None:
                    value = torch.where(live[layer].to(act.device), act, value)
            if layer in settings:
                rows, pos, index, values = settings[layer]
                value[rows, pos, index] = values.to(value.dtype)
            return value

        fwd += clean.basis.feature_hooks(model, _state(clean, frozenset(unfrozen)), on_features, lambda _, e: e)
    else:
        active = clean.basis.active_features(clean.features, clean.state)
        fixed = [a.compact(clean.features[layer]) for layer, a in enumerate(active)]
        moving = None if live is None else [
            a.compact(live[layer].to(clean.features.dtype)) > 0 for layer, a in enumerate(active)
        ]

        def on_active(layer: int, act: Tensor) -> Tensor:
            if every:
                value = act.clone()
            else:
                value = fixed[layer].unsqueeze(0).expand(batch, -1).to(act.dtype).clone()
                if moving is not None:
                    value = torch.where(moving[layer].to(act.device), act, value)
            if layer in settings:
                rows, pos, index, values = settings[layer]
                value[rows, active[layer].lookup(pos, index)] = values.to(value.dtype)
            return value

        fwd += clean.basis.attribution_hooks(model, clean.features, clean.state, active, on_active, lambda _, e: e)
    with hooks(model, fwd):
        final = final_resid(model, resid, start_layer=start)[:, -1]
    wanted = columns.unsqueeze(0).expand(batch, -1)
    if "final_norm" in _lifted(frozenset(unfrozen)):
        return logit_columns(model, final, wanted, demean=True)
    return frozen_demeaned_logits(model, clean, final, wanted)


def reached_positions(interventions: list[Intervention], n_layers: int, n_pos: int) -> Int[Tensor, "layer batch"]:
    """Per layer and intervention, the first position whose MLP input can differ from the clean
    run's (``n_pos``: none). A feature set at ``(layer l, position p)`` changes that layer's MLP
    output at ``p`` alone, so the MLP inputs of the layers after ``l``, from ``p`` on: attention
    carries a change forward, never back, and every other sublayer acts position by position. An
    embedding row set at ``p`` changes every layer's inputs from ``p`` on."""
    reach = torch.full((n_layers, len(interventions)), n_pos, dtype=torch.long)
    for row, intervention in enumerate(interventions):
        for layer, pos, _ in intervention.features:
            reach[layer + 1 :, row] = reach[layer + 1 :, row].clamp(max=pos)
        for pos in intervention.resid0:
            reach[:, row] = reach[:, row].clamp(max=pos)
    return reach


def _settings(interventions: list[Intervention]) -> dict[int, tuple[Tensor, Tensor, Tensor, Tensor]]:
    """The interventions' feature settings by layer: ``(row, pos, index, value)`` tensors."""
    by_layer: dict[int, list[tuple[int, int, int, float]]] = {}
    for row, intervention in enumerate(interventions):
        for (layer, pos, index), value in intervention.features.items():
            by_layer.setdefault(layer, []).append((row, pos, index, value))
    out = {}
    for layer, entries in by_layer.items():
        rows, pos, index, values = zip(*entries, strict=True)
        out[layer] = (torch.tensor(rows), torch.tensor(pos), torch.tensor(index), torch.tensor(values, dtype=torch.float64))
    return out
