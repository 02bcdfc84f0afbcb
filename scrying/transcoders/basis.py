"""Transcoder features as the feature basis of attribution graphs.

:class:`TranscoderBasis` implements :class:`scrying.attribution.FeatureBasis`, so the one graph
builder (:func:`scrying.attribution.build_feature_graph`), its pruning, scores, validation and
JSON serve transcoder graphs unchanged. At every layer the MLP's output (the set's
``feature_output_hook``) is replaced by

    ``features @ W_dec + b_dec + x @ W_skip.T + error``

where ``x`` is the MLP's input (``feature_input_hook``) and ``features`` the transcoder's.

* **Clean run**: the features, their activity mask and the *error* ``mlp(x) - transcoder(x)``
  per (layer, position), from the real model.
* **Frozen (local replacement model)**: the mask is frozen at its clean value, so each feature
  ``(x @ W_enc.T + b_enc) * mask`` is linear in the residual stream (plus its encoder bias), and
  the error is a constant handed to the builder (``on_error``), which adds it to that layer's
  error nodes. The skip connection stays linear and live.
* **Attribution pass** (:meth:`TranscoderBasis.attribution_hooks`): with the mask frozen, only
  the features active on the prompt can move, and only they are computed, per batch copy, from
  the active encoder and decoder rows (:mod:`scrying.transcoders.active`); no pass over every
  feature happens per copy, forward or backward.
* **Weights** are read through :meth:`~scrying.transcoders.transcoder.Transcoder.detached` views
  (the same memory, not copies): gradients flow to the features, the error terms
  and the residual stream, never to the transcoder's parameters, and the caller's transcoders
  (weights, dtype, ``requires_grad``) are left as they are.
* **Dtype**: each transcoder computes in its own dtype; the residual stream is cast to it on the
  way in, features, outputs and errors back to the model's on the way out (the convention of
  :mod:`scrying.transcoders.transcoder`, as quality, labels and interventions use it).
* **Live** (:meth:`TranscoderBasis.live_state`): the transcoder's own activation, and the error
  recomputed as the MLP's real output minus the reconstruction from the unintervened features,
  so the layer outputs ``mlp(x) + (features' - features) @ W_dec``: the real model with an
  intervention steering along the decoder rows (circuit-tracer's intervention convention).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from scrying.attribution import ActiveSet, BasisState, Setting, Settings
from scrying.axes import Bool, Float, Int, Model, Tensor
from scrying.errors import InvalidInputError
from scrying.sites import Component, HookFn, Site, capture
from scrying.transcoders.active import ActiveRows, decode_active, encode_active
from scrying.transcoders.files import TranscoderSet
from scrying.transcoders.transcoder import Transcoder


class TranscoderBasis:
    """Features = transcoder latents per (layer, position); error = MLP output - reconstruction."""

    name = "transcoders"
    feature_type = "transcoder feature"
    exact = False

    def __init__(
        self,
        transcoders: TranscoderSet,
        *,
        labels: dict[tuple[int, int], str] | None = None,
        cards: dict[tuple[int, int], dict[str, Any]] | None = None,
    ) -> None:
        self.set = transcoders
        self.labels = labels or {}
        self.cards = cards or {}  # labels.json's contexts and tokens (scrying.transcoders.read_cards)

    def _weights(self, layer: int) -> Transcoder:
        """``layer``'s transcoder as the basis reads it: a detached view of the caller's (graphs
        never need the weights' gradients; read through the caller's parameters, every backward
        pass of a graph build would compute, and accumulate into them, a feature x d_model
        gradient of W_dec and W_enc per layer, as costly as the features' own gradients)."""
        return self.set.transcoders[layer].detached()

    def _check(self, model: Model) -> None:
        n = model.cfg.n_layers
        if len(self.set.transcoders) != n:
            raise InvalidInputError(f"transcoder set has {len(self.set.transcoders)} layers, the model {n}")
        d = self.set.transcoders[0].spec.d_model
        if d != model.cfg.d_model:
            raise InvalidInputError(f"transcoders read d_model {d}, the model has d_model {model.cfg.d_model}")

    def n_features(self, model: Model) -> int:
        return self.set.n_features

    def frozen_sites(self, model: Model) -> list[Site]:
        return []  # the mask and the error are the basis's own state, frozen by its hooks

    def record_sites(self, model: Model) -> list[Site]:
        self._check(model)
        layers = range(model.cfg.n_layers)
        return [self.set.input_site(ly) for ly in layers] + [self.set.output_site(ly) for ly in layers]

    @torch.no_grad()
    def clean_state(
        self, model: Model, store: dict[Site, Tensor]
    ) -> tuple[Float[Tensor, "layer pos feature"], BasisState]:
        features, masks, errors, outputs = [], [], [], []
        for layer in range(len(self.set.transcoders)):
            tc = self._weights(layer)
            x = store[self.set.input_site(layer)][0]
            y = store[self.set.output_site(layer)][0]
            pre = tc.pre_activations(x)  # in the transcoder's dtype
            mask = tc.mask(pre)
            feats = pre * mask
            features.append(feats.to(x.dtype))
            masks.append(mask.bool())  # 1 byte a feature: 4,096 x 1,024 x 18 is 75 MB, not 302
            errors.append(y - tc.decode(feats, x).to(y.dtype))
            outputs.append(y)
        state = BasisState(mask=torch.stack(masks), error=torch.stack(errors), output=torch.stack(outputs))
        return torch.stack(features), state

    def feature_hooks(
        self,
        model: Model,
        state: BasisState,
        on_features: Callable[[int, Tensor], Tensor],
        on_error: Callable[[int, Tensor], Tensor],
    ) -> list[tuple[Site, HookFn]]:
        inputs: dict[int, Tensor] = {}
        out: list[tuple[Site, HookFn]] = []
        for layer in range(model.cfg.n_layers):
            out.append((self.set.input_site(layer), capture(layer, inputs)))
            out.append((self.set.output_site(layer), self._replace(layer, state, inputs, on_features, on_error)))
        return out

    def _replace(
        self,
        layer: int,
        state: BasisState,
        inputs: dict[int, Tensor],
        on_features: Callable[[int, Tensor], Tensor],
        on_error: Callable[[int, Tensor], Tensor],
    ) -> HookFn:
        tc = self._weights(layer)
        mask, error = state.mask, state.error

        def fn(act: Tensor, hook: Any) -> Tensor:
            x = inputs.pop(layer)
            pre = tc.pre_activations(x)  # in the transcoder's dtype
            feats = pre * (mask[layer].to(pre.dtype) if mask is not None else tc.mask(pre))
            if error is not None:
                err = error[layer].expand(act.shape[0], -1, -1).to(act.dtype)
            else:  # live: the real MLP output minus the unintervened reconstruction
                err = act - tc.decode(feats, x).to(act.dtype)
            return tc.decode(on_features(layer, feats.to(act.dtype)), x).to(act.dtype) + on_error(layer, err)

        return fn

    def active_features(
        self, features: Float[Tensor, "layer pos feature"], state: BasisState
    ) -> list[ActiveSet]:
        """The features whose frozen mask is on, per layer (row-major ``(pos, index)``)."""
        _, n_pos, width = features.shape
        if state.mask is None:
            raise InvalidInputError("a transcoder basis's active features need the frozen mask of its clean state")
        return [ActiveSet(n_pos, width, torch.nonzero(mask)) for mask in state.mask]

    def attribution_hooks(
        self,
        model: Model,
        features: Float[Tensor, "layer pos feature"],
        state: BasisState,
        active: list[ActiveSet],
        on_active: Callable[[int, Tensor], Tensor],
        on_error: Callable[[int, Tensor], Tensor],
    ) -> list[tuple[Site, HookFn]]:
        """The frozen layer, active features only: ``decode_active(on_active(encode_active(x)))
        + b_dec + x @ W_skip.T + error``; equal to :meth:`feature_hooks`' output with the frozen
        mask, since every other feature is 0 there."""
        inputs: dict[int, Tensor] = {}
        out: list[tuple[Site, HookFn]] = []
        for layer in range(model.cfg.n_layers):
            out += self._input_hooks(layer, inputs)
            out.append((self.set.output_site(layer), self._active(layer, state, active[layer], inputs, on_active, on_error)))
        return out

    def _active(
        self,
        layer: int,
        state: BasisState,
        active: ActiveSet,
        inputs: dict[int, Tensor],
        on_active: Callable[[int, Tensor], Tensor],
        on_error: Callable[[int, Tensor], Tensor],
    ) -> HookFn:
        tc = self._weights(layer)
        assert active.coords is not None
        pos, index = active.coords[:, 0], active.coords[:, 1]
        if state.error is None:
            raise InvalidInputError("a transcoder basis's attribution pass needs the error terms of its clean state")
        error: Tensor = state.error[layer]

        def fn(act: Tensor, hook: Any) -> Tensor:
            x = inputs.pop(layer).to(tc.dtype)
            n_pos = x.shape[1]
            acts = encode_active(x, ActiveRows(tc.W_enc, pos, index, n_pos), tc.b_enc)
            acts = on_active(layer, acts.to(act.dtype)).to(tc.dtype)
            out = decode_active(acts, ActiveRows(tc.W_dec, pos, index, n_pos)) + tc.b_dec
            if tc.W_skip is not None:
                out = out + x @ tc.W_skip.T
            return out.to(act.dtype) + on_error(layer, error.expand(act.shape[0], -1, -1).to(act.dtype))

        return fn

    def setting_hooks(
        self, model: Model, state: BasisState, settings: Settings, reach: Int[Tensor, "layer batch"] | None = None
    ) -> list[tuple[Site, HookFn]] | None:
        """Hooks for a pass where every feature is live (nothing clamped) and only ``settings``
        (per layer, ``(row, pos, index, value)`` tensors) set features: equal to
        :meth:`feature_hooks` with the live features, the settings written into them, and the
        error term as it is, without a pass over every feature where none is needed.

        * Real MLP (``state.error`` and ``state.mask`` lifted): the layer's output is
          ``mlp(x) + sum (value - feature) W_dec[index]`` (module docstring), so only layers with a
          setting are hooked, and only the set features' own rows are encoded (their mask, for
          TopK, from the pre-activations at their position alone).
        * Masks live, clean error (``state.mask`` lifted only): every layer is the transcoder with
          its live activation plus the clean error; the real MLP is skipped (as in
          :meth:`attribution_hooks`) and a TopK set decodes its ``k`` features per position only.
        * Frozen masks: ``None`` (the active-feature path, :meth:`attribution_hooks`, serves it).

        With ``reach`` (:func:`~scrying.attribution.replacement.reached_positions`) and the clean
        outputs in ``state.output``, a layer computes only the positions of each row from its
        reach on, and copies the clean output before them: the transcoder where masks are live;
        the real MLP itself (run on the reached positions alone, stacked as one sequence: it acts
        on each position separately) where the set writes at the MLP's own output (``mlp.hook_out``).
        """
        if state.mask is not None:
            return None
        inputs: dict[int, Tensor] = {}
        out: list[tuple[Site, HookFn]] = []
        clean = state.output if reach is not None else None
        if state.error is None:
            partial = clean is not None and all(
                self.set.output_site(ly).component == Component.MLP_RESULT for ly in range(model.cfg.n_layers)
            )
            for layer in range(model.cfg.n_layers):
                if partial:
                    assert reach is not None and clean is not None
                    out += self._partial_mlp(layer, reach[layer], clean[layer], settings.get(layer), inputs)
                elif layer in settings:
                    out.append((self.set.input_site(layer), capture(layer, inputs)))
                    out.append((self.set.output_site(layer), self._steer(layer, settings[layer], inputs)))
            return out
        for layer in range(model.cfg.n_layers):
            out += self._input_hooks(layer, inputs)
            rows = None if clean is None or reach is None else (reach[layer], clean[layer])
            out.append((self.set.output_site(layer), self._live_replace(layer, state.error[layer], settings.get(layer), inputs, rows)))
        return out

    def _input_hooks(self, layer: int, inputs: dict[int, Tensor]) -> list[tuple[Site, HookFn]]:
        """Capture the layer's transcoder input, and empty the real MLP's input where the
        transcoder replaces the MLP's output whole (:func:`_empty`)."""
        skip = self.set.output_site(layer).component == Component.MLP_RESULT
        if skip and self.set.input_site(layer).component == Component.MLP_IN:
            return [(self.set.input_site(layer), _capture_and_empty(layer, inputs))]
        hooks = [(self.set.input_site(layer), capture(layer, inputs))]
        return hooks + [(Site(Component.MLP_IN, layer), _empty)] if skip else hooks

    def _steer(self, layer: int, setting: Setting, inputs: dict[int, Tensor]) -> HookFn:
        tc = self._weights(layer)

        def fn(act: Tensor, hook: Any) -> Tensor:
            return _steered(tc, act, inputs.pop(layer), setting)

        return fn

    def _partial_mlp(self, layer: int, reach: Int[Tensor, " batch"], clean: Float[Tensor, "pos d_model"],
                     setting: Setting | None, inputs: dict[int, Tensor]) -> list[tuple[Site, HookFn]]:
        """The real MLP of ``layer`` on the reached positions only, the clean output elsewhere,
        then the setting's steer (:meth:`setting_hooks`); the output site is ``mlp.hook_out``."""
        tc = self._weights(layer)
        chosen: dict[str, Tensor] = {}

        def take(act: Tensor, hook: Any) -> Tensor:
            reached = _reached(reach, act)
            chosen["rows"] = reached
            return act[reached].unsqueeze(0)  # 1 n d_model: the MLP is position-wise

        def put(act: Tensor, hook: Any) -> Tensor:
            reached = chosen.pop("rows")
            full = clean.to(act.dtype).expand(reached.shape[0], -1, -1).clone()
            full[reached] = act[0]
            return full if setting is None else _steered(tc, full, inputs.pop(layer), setting)

        out: list[tuple[Site, HookFn]] = []
        if setting is not None:
            out.append((self.set.input_site(layer), capture(layer, inputs)))  # before take where both are mlp.hook_in
        return out + [(Site(Component.MLP_IN, layer), take), (self.set.output_site(layer), put)]

    def _live_replace(self, layer: int, error: Float[Tensor, "pos d_model"], setting: Setting | None,
                      inputs: dict[int, Tensor], reached: tuple[Tensor, Tensor] | None = None) -> HookFn:
        """The transcoder with its live activation plus the clean ``error``; with ``reached``
        (``(reach [batch], clean output [pos d_model])``), only the reached positions computed."""
        tc = self._weights(layer)

        def fn(act: Tensor, hook: Any) -> Tensor:
            x = inputs.pop(layer).to(tc.dtype)
            if reached is None:
                y = _live_output(tc, x).to(act.dtype) + error.expand(x.shape[0], -1, -1).to(act.dtype)
            else:
                reach, clean = reached
                rows = _reached(reach, x)
                y = clean.to(act.dtype).expand(x.shape[0], -1, -1).clone()
                y[rows] = _live_output(tc, x[rows]).to(act.dtype) + error.expand(x.shape[0], -1, -1)[rows].to(act.dtype)
            return y if setting is None else _steered(tc, y, x, setting)

        return fn

    def label(self, layer: int, index: int) -> str:
        return self.labels.get((layer, index), f"L{layer} transcoder feature {index}")

    def unit_sites(self, model: Model, layer: int) -> list[Site]:
        return [self.set.input_site(layer)]

    def unit_values(self, store: dict[Site, Tensor], layer: int, indices: Tensor) -> Float[Tensor, "batch seq n"]:
        tc = self._weights(layer)
        return tc.encode(store[self.set.input_site(layer)].to(tc.dtype))[..., indices]

    def write_rows(self, model: Model, layer: int, indices: list[int]) -> Float[Tensor, "n d_model"]:
        return self._weights(layer).W_dec[indices]

    def stored_card(self, layer: int, index: int) -> dict[str, Any] | None:
        return self.cards.get((layer, index))

    def live_state(self, state: BasisState) -> BasisState:
        """No frozen mask, and the error recomputed from the real MLP (module docstring)."""
        return state.lifted("mask", "error")


def _reached(reach: Int[Tensor, " batch"], act: Float[Tensor, "batch pos d_model"]) -> Bool[Tensor, "batch pos"]:
    """Which (row, position) of ``act`` are at or after their row's reach."""
    return torch.arange(act.shape[1], device=act.device) >= reach.to(act.device)[:, None]


def _live_output(tc: Transcoder, x: Float[Tensor, "*rows d_model"]) -> Float[Tensor, "*rows d_model"]:
    """The transcoder's reconstruction with its live activation (a TopK set decodes its ``k``)."""
    pre = tc.pre_activations(x)
    if tc.spec.activation == "topk":
        top = pre.topk(tc.spec.k, dim=-1)
        return tc.decode_sparse(top.indices, torch.relu(top.values), x)
    return tc.decode(pre * tc.mask(pre), x)


def _steered(tc: Transcoder, act: Float[Tensor, "batch pos d_model"], x: Float[Tensor, "batch pos d_model"],
             setting: Setting) -> Float[Tensor, "batch pos d_model"]:
    """``act`` plus each setting's ``(value - feature) W_dec[index]`` at its row and position,
    the feature's live activation encoded from ``x`` there alone."""
    pre = tc.pre_activations(x[setting[0], setting[1]].to(tc.dtype))  # the set rows only
    return act.index_put((setting[0], setting[1]), _setting_rows(tc, pre, setting).to(act.dtype), accumulate=True)


def _setting_rows(tc: Transcoder, pre: Float[Tensor, "n feature"], setting: Setting) -> Float[Tensor, "n d_model"]:
    """What each setting ``(row, pos, index, value)`` adds to its layer's output: ``(value -
    feature) * W_dec[index]``, the feature's live activation read from ``pre``, every
    pre-activation at the setting's own row and position (a TopK mask needs them all)."""
    _, _, index, values = setting
    live = (pre * tc.mask(pre)).gather(1, index[:, None])[:, 0]
    return (values.to(tc.dtype) - live)[:, None] * tc.W_dec[index]


def _capture_and_empty(layer: int, store: dict[int, Tensor]) -> HookFn:
    """:func:`~scrying.sites.capture` at the MLP's input, which then flows on empty (:func:`_empty`)."""
    keep = capture(layer, store)

    def fn(act: Tensor, hook: Any) -> Tensor:
        keep(act, hook)
        return _empty(act, hook)

    return fn


def _empty(act: Tensor, hook: Any) -> Tensor:
    """The MLP's input with no positions: the MLP's output is replaced whole at its output hook
    (``mlp.hook_out``), so the real MLP (two thirds of a forward pass's work) is skipped."""
    return act[:, :0]
