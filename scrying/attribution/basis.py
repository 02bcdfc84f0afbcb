"""Feature bases: what the feature nodes of an attribution graph are.

The graph builder (:mod:`scrying.attribution.feature_graph`) and the local replacement model
(:mod:`scrying.attribution.replacement`) work with any :class:`FeatureBasis`; a basis says

* which activations are the features of layer ``l`` (``[batch pos feature]``) and how the clean
  run yields them (:meth:`~FeatureBasis.record_sites`, :meth:`~FeatureBasis.clean_state`);
* what must be frozen at its clean value so that every feature is a linear function of the
  residual stream (:meth:`~FeatureBasis.frozen_sites`: a gated MLP's gate, a JumpReLU's mask);
* the forward hooks that make each layer's features an explicit tensor of the computation
  (:meth:`~FeatureBasis.feature_hooks`): they hand the features to ``on_features(layer, acts)``,
  and what that returns is what flows on (a leaf for direct effects, a clamped value for an
  intervention). A basis whose features do not reconstruct its layer exactly also hands its
  residual to ``on_error(layer, error)`` (a transcoder's reconstruction error), which the builder
  adds to that layer's error nodes;
* how a feature is named (:meth:`~FeatureBasis.label`) and typed in the JSON (``feature_type``);
* its state with its own freezing lifted (:meth:`~FeatureBasis.live_state`), so validation can
  unfreeze the basis alone and see what the frozen nonlinearity costs;
* for the frozen attribution pass, which features can be nonzero at all
  (:meth:`~FeatureBasis.active_features`, an :class:`ActiveSet` per layer: every neuron; a
  transcoder's features active on the prompt) and hooks that hand only those to
  ``on_active(layer, acts)`` as a compact ``[batch n_active]`` tensor
  (:meth:`~FeatureBasis.attribution_hooks`). A sparse basis then never does dense work per
  batch copy: its backward passes contract gradients with the active decoder rows alone, as
  circuit-tracer does. :func:`dense_attribution_hooks` derives them from ``feature_hooks`` for a
  dense basis.

:class:`NeuronBasis` is the exact basis: the features are the MLP's neurons (``mlp.hook_post``),
which reconstruct the MLP output exactly (no error term). A transcoder basis plugs in here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import torch

from scrying.axes import Bool, Float, Int, Model, Tensor
from scrying.errors import InvalidInputError
from scrying.models.adapter import mlp_output_rows
from scrying.sites import Component, HookFn, Site, capture, has_site

#: ``on_features(layer, activations)`` -> the tensor that flows on in place of the activations.
OnFeatures = Callable[[int, Tensor], Tensor]
#: ``on_error(layer, error)`` -> the tensor that flows on in place of the error term.
OnError = Callable[[int, Tensor], Tensor]
#: ``on_active(layer, acts)`` -> the compact ``[batch n_active]`` tensor that flows on instead.
OnActive = Callable[[int, Tensor], Tensor]


@dataclass(frozen=True)
class ActiveSet:
    """The features of one layer that the frozen model can move, in a compact order.

    ``coords`` None: every feature at every position, row-major (compact index
    ``pos * width + index``). Otherwise ``coords[k] = (pos, index)`` of compact entry ``k``,
    sorted row-major (as :func:`torch.nonzero` of a ``[pos feature]`` mask lists them).
    """

    n_pos: int
    width: int
    coords: Int[Tensor, "n 2"] | None = None

    def __len__(self) -> int:
        return self.n_pos * self.width if self.coords is None else int(self.coords.shape[0])

    @property
    def pos(self) -> Int[Tensor, " n"]:
        """The position of every compact entry."""
        if self.coords is None:
            return torch.arange(self.n_pos).repeat_interleave(self.width)
        return self.coords[:, 0]

    def compact(self, dense: Float[Tensor, "*batch pos feature"]) -> Float[Tensor, "*batch n"]:
        """The active entries of a dense ``[... pos feature]`` tensor."""
        if self.coords is None:
            return dense.flatten(-2)
        return dense[..., self.coords[:, 0], self.coords[:, 1]]

    def lookup(self, pos: Int[Tensor, " m"], index: Int[Tensor, " m"]) -> Int[Tensor, " m"]:
        """Compact indices of features ``(pos, index)``; every one must be active."""
        key = pos * self.width + index
        if self.coords is None:
            return key
        keys = self.coords[:, 0] * self.width + self.coords[:, 1]
        found = torch.searchsorted(keys, key).clamp(max=max(len(keys) - 1, 0))
        if len(keys) == 0 or not bool((keys[found] == key).all()):
            raise InvalidInputError("a feature asked for is not active on this prompt (its activation is 0)")
        return found

    def coords_of(self, k: Int[Tensor, " m"]) -> tuple[Int[Tensor, " m"], Int[Tensor, " m"]]:
        """``(pos, index)`` of compact entries ``k``."""
        if self.coords is None:
            return k // self.width, k % self.width
        return self.coords[k, 0], self.coords[k, 1]

    def position_sums(self, values: Float[Tensor, "batch n"]) -> Float[Tensor, "batch pos"]:
        """Sum of the compact entries at each position."""
        if self.coords is None:
            return values.reshape(values.shape[0], self.n_pos, self.width).sum(-1)
        out = values.new_zeros(values.shape[0], self.n_pos)
        return out.index_add_(1, self.coords[:, 0], values)


#: One layer's feature settings of a batch of interventions: ``(row, pos, index, value)``, one
#: entry per set feature (``row``: the intervention's row in the batch).
Setting = tuple[Int[Tensor, " n"], Int[Tensor, " n"], Int[Tensor, " n"], Float[Tensor, " n"]]
#: Settings by layer.
Settings = dict[int, Setting]


@dataclass(frozen=True)
class BasisState:
    """What a basis keeps from the clean run to freeze itself (each field ``None`` when the basis
    does not use it, or once :meth:`FeatureBasis.live_state` has lifted that freezing).

    ``slope``: the neuron basis on non-gated MLPs, each neuron's clean ``act(pre) / pre``.
    ``mask``: a transcoder basis, which features are active on the clean run.
    ``error``: a transcoder basis, each layer's MLP output minus its reconstruction.
    ``output``: a transcoder basis, each layer's clean output where its features write (passes
    that recompute only the positions an intervention reaches copy it at the others; never lifted).
    """

    slope: Float[Tensor, "layer pos feature"] | None = None
    mask: Bool[Tensor, "layer pos feature"] | None = None
    error: Float[Tensor, "layer pos d_model"] | None = None
    output: Float[Tensor, "layer pos d_model"] | None = None

    def lifted(self, *fields: str) -> BasisState:
        """This state with ``fields`` unfrozen (set to ``None``)."""
        return replace(self, **dict.fromkeys(fields))


@runtime_checkable
class FeatureBasis(Protocol):
    """What the feature nodes of a graph are: the one extension point between a feature
    dictionary (MLP neurons, transcoders) and the graph builder (see the module docstring).

    A basis is stateless between prompts; everything it learns from one prompt's clean run is in
    the :class:`BasisState` that :meth:`clean_state` returns and the other methods receive; a basis with more to keep subclasses :class:`BasisState`.
    """

    name: str  # "neurons"
    feature_type: str  # the JSON's feature_type of a feature node
    exact: bool  # the features reconstruct their layer exactly (no error term of their own)

    def n_features(self, model: Model) -> int:
        """Features per layer."""
        ...

    def frozen_sites(self, model: Model) -> list[Site]:
        """Sites the replacement model freezes to their clean values for this basis (besides the
        attention patterns and norm scales every basis freezes)."""
        ...

    def record_sites(self, model: Model) -> list[Site]:
        """Sites whose clean values :meth:`clean_state` needs from the clean run."""
        ...

    def clean_state(
        self, model: Model, store: dict[Site, Tensor]
    ) -> tuple[Float[Tensor, "layer pos feature"], BasisState]:
        """Every feature's clean activation, and the state that freezes the basis, from the
        recorded ``store`` of the clean run."""
        ...

    def feature_hooks(
        self, model: Model, state: BasisState, on_features: OnFeatures, on_error: OnError
    ) -> list[tuple[Site, HookFn]]:
        """Hooks that compute each layer's features densely and pass them (and the error term,
        if any) through ``on_features``/``on_error``, which may cut, clamp or record them."""
        ...

    def setting_hooks(
        self, model: Model, state: BasisState, settings: Settings, reach: Int[Tensor, "layer batch"] | None = None
    ) -> list[tuple[Site, HookFn]] | None:
        """Hooks equal to :meth:`feature_hooks` for a pass where every feature is live and only
        ``settings`` set some, computed more cheaply; ``None`` where the basis has no cheaper way
        (the caller then uses :meth:`feature_hooks`).

        ``reach`` (optional, per layer and batch row): the first position whose MLP input may
        differ from the clean run's; the basis may copy its clean output before it instead of
        computing it (:func:`~scrying.attribution.replacement.reached_positions`)."""
        ...

    def label(self, layer: int, index: int) -> str:
        """A feature's label (a transcoder's own from ``labels.json``, else a plain name)."""
        ...

    def live_state(self, state: BasisState) -> BasisState:
        """``state`` with the basis's own freezing lifted, for validation's unfreezing steps."""
        ...

    def unit_sites(self, model: Model, layer: int) -> list[Site]:
        """Sites a plain forward pass records to compute ``layer``'s features (for corpus contexts)."""
        ...

    def unit_values(self, store: dict[Site, Tensor], layer: int, indices: Int[Tensor, " n"]) -> Float[Tensor, "batch seq n"]:
        """The ``indices`` features of ``layer`` from a forward pass's recorded ``unit_sites``."""
        ...

    def write_rows(self, model: Model, layer: int, indices: list[int]) -> Float[Tensor, "n d_model"]:
        """What each feature writes to the MLP output per unit activation (its decoder row)."""
        ...

    def stored_card(self, layer: int, index: int) -> dict[str, Any] | None:
        """What the basis's files already say of a feature (transcoders: ``labels.json``'s
        contexts), or None."""
        ...

    def active_features(
        self, features: Float[Tensor, "layer pos feature"], state: BasisState
    ) -> list[ActiveSet]:
        """Per layer, the features the frozen model can move (every one for a dense basis)."""
        ...

    def attribution_hooks(
        self,
        model: Model,
        features: Float[Tensor, "layer pos feature"],
        state: BasisState,
        active: list[ActiveSet],
        on_active: OnActive,
        on_error: OnError,
    ) -> list[tuple[Site, HookFn]]:
        """Hooks for the attribution pass: the ``active`` features only, in their compact order,
        through ``on_active`` (their gradients are the graph's edges)."""
        ...


def dense_attribution_hooks(
    basis: FeatureBasis, model: Model, state: BasisState, on_active: OnActive, on_error: OnError
) -> list[tuple[Site, HookFn]]:
    """A dense basis's attribution hooks: its ``feature_hooks``, with each layer's features
    flattened to the compact order of a full :class:`ActiveSet` and back."""

    def on_features(layer: int, act: Tensor) -> Tensor:
        return on_active(layer, act.flatten(-2)).view(act.shape)

    return basis.feature_hooks(model, state, on_features, on_error)


def dense_active(features: Float[Tensor, "layer pos feature"]) -> list[ActiveSet]:
    """Every feature of every layer (a dense basis's active sets)."""
    n_layers, n_pos, width = features.shape
    return [ActiveSet(n_pos, width) for _ in range(n_layers)]


def is_gated(model: Model) -> bool:
    """Whether the MLPs are gated (``post = act(gate(x)) * up(x)``)."""
    return has_site(model, Site(Component.MLP_PRE_LINEAR, 0))


class NeuronBasis:
    """MLP neurons as features (exact: the neurons are the MLP's own hidden units).

    Gated MLPs (Llama, Gemma) are linear in the residual stream once the gate ``act(gate(x))`` is
    frozen (``mlp.hook_pre`` is the gate's activation); for non-gated MLPs each neuron becomes
    ``pre * slope`` with the clean slope ``act(pre_clean) / pre_clean``.
    """

    name = "neurons"
    feature_type = "mlp neuron"
    exact = True

    def n_features(self, model: Model) -> int:
        return int(model.cfg.d_mlp)

    def frozen_sites(self, model: Model) -> list[Site]:
        return [Site(Component.MLP_PRE, layer) for layer in range(model.cfg.n_layers)] if is_gated(model) else []

    def record_sites(self, model: Model) -> list[Site]:
        layers = range(model.cfg.n_layers)
        posts = [Site(Component.MLP_POST, layer) for layer in layers]
        return posts if is_gated(model) else posts + [Site(Component.MLP_PRE, layer) for layer in layers]

    def clean_state(
        self, model: Model, store: dict[Site, Tensor]
    ) -> tuple[Float[Tensor, "layer pos feature"], BasisState]:
        layers = range(model.cfg.n_layers)
        post = torch.cat([store[Site(Component.MLP_POST, layer)] for layer in layers], dim=0)
        if is_gated(model):
            return post, BasisState()
        pre = torch.cat([store[Site(Component.MLP_PRE, layer)] for layer in layers], dim=0)
        slope = torch.where(pre != 0, post / torch.where(pre != 0, pre, 1), torch.zeros_like(pre))
        return post, BasisState(slope=slope)

    def feature_hooks(
        self, model: Model, state: BasisState, on_features: OnFeatures, on_error: OnError
    ) -> list[tuple[Site, HookFn]]:
        slope = state.slope
        pre_live: dict[int, Tensor] = {}
        out: list[tuple[Site, HookFn]] = []
        for layer in range(model.cfg.n_layers):
            if slope is not None:
                out.append((Site(Component.MLP_PRE, layer), capture(layer, pre_live)))
            out.append((Site(Component.MLP_POST, layer), _neurons(layer, slope, pre_live, on_features)))
        return out

    def setting_hooks(
        self, model: Model, state: BasisState, settings: Settings, reach: Int[Tensor, "layer batch"] | None = None
    ) -> list[tuple[Site, HookFn]] | None:
        return None  # the neurons are the MLP's own units: feature_hooks is the real MLP already

    def label(self, layer: int, index: int) -> str:
        return f"L{layer} neuron {index}"

    def unit_sites(self, model: Model, layer: int) -> list[Site]:
        return [Site(Component.MLP_POST, layer)]

    def unit_values(self, store: dict[Site, Tensor], layer: int, indices: Int[Tensor, " n"]) -> Float[Tensor, "batch seq n"]:
        return store[Site(Component.MLP_POST, layer)][..., indices]

    def write_rows(self, model: Model, layer: int, indices: list[int]) -> Float[Tensor, "n d_model"]:
        return mlp_output_rows(model, layer, indices)

    def stored_card(self, layer: int, index: int) -> dict[str, Any] | None:
        return None

    def live_state(self, state: BasisState) -> BasisState:
        """The state with the basis's own freezing lifted: no clean slope, so a non-gated neuron
        is its real ``act(pre)`` again (gated MLPs: the caller stops replacing the gate)."""
        return state.lifted("slope")

    def active_features(
        self, features: Float[Tensor, "layer pos feature"], state: BasisState
    ) -> list[ActiveSet]:
        """Every neuron (a gated MLP's frozen gate is rarely exactly 0; dense costs nothing extra)."""
        return dense_active(features)

    def attribution_hooks(
        self,
        model: Model,
        features: Float[Tensor, "layer pos feature"],
        state: BasisState,
        active: list[ActiveSet],
        on_active: OnActive,
        on_error: OnError,
    ) -> list[tuple[Site, HookFn]]:
        return dense_attribution_hooks(self, model, state, on_active, on_error)


def _neurons(layer: int, slope: Tensor | None, pre_live: dict[int, Tensor], on_features: OnFeatures) -> HookFn:
    def fn(act: Tensor, hook: Any) -> Tensor:
        if slope is not None:
            act = pre_live.pop(layer) * slope[layer].to(act.dtype)
        return on_features(layer, act)

    return fn
