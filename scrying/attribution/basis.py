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
  unfreeze the basis alone and see what the frozen nonlinearity costs.

:class:`NeuronBasis` is the exact basis: the features are the MLP's neurons (``mlp.hook_post``),
which reconstruct the MLP output exactly (no error term). A transcoder basis plugs in here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch

from scrying.axes import Float, Model, Tensor
from scrying.sites import Component, HookFn, Site, has_site

#: ``on_features(layer, activations)`` -> the tensor that flows on in place of the activations.
OnFeatures = Callable[[int, Tensor], Tensor]
#: ``on_error(layer, error)`` -> the tensor that flows on in place of the error term.
OnError = Callable[[int, Tensor], Tensor]


@runtime_checkable
class FeatureBasis(Protocol):
    name: str  # "neurons"
    feature_type: str  # the JSON's feature_type of a feature node
    exact: bool  # the features reconstruct their layer exactly (no error term of their own)

    def n_features(self, model: Model) -> int: ...

    def frozen_sites(self, model: Model) -> list[Site]: ...

    def record_sites(self, model: Model) -> list[Site]: ...

    def clean_state(
        self, model: Model, store: dict[Site, Tensor]
    ) -> tuple[Float[Tensor, "layer pos feature"], dict[str, Any]]: ...

    def feature_hooks(
        self, model: Model, state: dict[str, Any], on_features: OnFeatures, on_error: OnError
    ) -> list[tuple[Site, HookFn]]: ...

    def label(self, layer: int, index: int) -> str: ...

    def live_state(self, state: dict[str, Any]) -> dict[str, Any]: ...


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
    ) -> tuple[Float[Tensor, "layer pos feature"], dict[str, Any]]:
        layers = range(model.cfg.n_layers)
        post = torch.cat([store[Site(Component.MLP_POST, layer)] for layer in layers], dim=0)
        if is_gated(model):
            return post, {}
        pre = torch.cat([store[Site(Component.MLP_PRE, layer)] for layer in layers], dim=0)
        slope = torch.where(pre != 0, post / torch.where(pre != 0, pre, 1), torch.zeros_like(pre))
        return post, {"slope": slope}

    def feature_hooks(
        self, model: Model, state: dict[str, Any], on_features: OnFeatures, on_error: OnError
    ) -> list[tuple[Site, HookFn]]:
        slope: Tensor | None = state.get("slope")
        pre_live: dict[int, Tensor] = {}
        out: list[tuple[Site, HookFn]] = []
        for layer in range(model.cfg.n_layers):
            if slope is not None:
                out.append((Site(Component.MLP_PRE, layer), _capture(layer, pre_live)))
            out.append((Site(Component.MLP_POST, layer), _neurons(layer, slope, pre_live, on_features)))
        return out

    def label(self, layer: int, index: int) -> str:
        return f"L{layer} neuron {index}"

    def live_state(self, state: dict[str, Any]) -> dict[str, Any]:
        """The state with the basis's own freezing lifted: no clean slope, so a non-gated neuron
        is its real ``act(pre)`` again (gated MLPs: the caller stops replacing the gate)."""
        return {k: v for k, v in state.items() if k != "slope"}


def _capture(layer: int, store: dict[int, Tensor]) -> HookFn:
    def fn(act: Tensor, hook: Any) -> None:
        store[layer] = act

    return fn


def _neurons(layer: int, slope: Tensor | None, pre_live: dict[int, Tensor], on_features: OnFeatures) -> HookFn:
    def fn(act: Tensor, hook: Any) -> Tensor:
        if slope is not None:
            act = pre_live.pop(layer) * slope[layer].to(act.dtype)
        return on_features(layer, act)

    return fn
