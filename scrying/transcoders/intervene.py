"""Intervene on transcoder features in the real model: ablate, clamp, scale or steer.

A feature ``i`` of layer ``l`` changed from its activation ``a`` to ``a'`` at a position adds
``(a' - a) * W_dec[i]`` to that layer's MLP output there (circuit-tracer's convention: the
transcoder's error and every other feature are left as the real model makes them, so nothing
else moves unless the change propagates). Activations are the transcoder's, computed in the same
run from the MLP's real input, so an earlier intervention reaches later features.

* ``set``   — ``a' = value`` (0 ablates, any other value clamps);
* ``scale`` — ``a' = value * a``;
* ``steer`` — ``a' = a + value`` (adds ``value * W_dec[i]`` whether or not the feature fires).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
import torch

from scrying.axes import Float, Int, Model, Tensor
from scrying.errors import ConfigError, InvalidInputError
from scrying.sites import HookFn, hooks
from scrying.transcoders.files import TranscoderSet

Mode = Literal["set", "scale", "steer"]


@dataclass(frozen=True, kw_only=True)
class FeatureEdit:
    """One change: feature ``index`` of ``layer`` at ``pos`` (``None``: every position but BOS)."""

    layer: int
    index: int
    mode: Mode
    value: float
    pos: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("set", "scale", "steer"):
            raise ConfigError(f"FeatureEdit.mode must be 'set', 'scale' or 'steer', got {self.mode!r}")


def _hook(tset: TranscoderSet, layer: int, edits: list[FeatureEdit], inputs: dict[int, Tensor]) -> HookFn:
    tc = tset.transcoders[layer]

    def fn(act: Tensor, hook: Any) -> Tensor:
        x = inputs.pop(layer)
        feats = tc.encode(x.to(tc.dtype))  # in the transcoder's dtype; the change back in the model's
        out = act.clone()
        for e in edits:
            where = slice(1, None) if e.pos is None else slice(e.pos, e.pos + 1)
            a = feats[:, where, e.index]
            new = {"set": torch.full_like(a, e.value), "scale": e.value * a, "steer": a + e.value}[e.mode]
            out[:, where] += ((new - a)[..., None] * tc.W_dec[e.index]).to(out.dtype)
        return out

    return fn


@torch.no_grad()
def intervened_logits(
    model: Model, tset: TranscoderSet, tokens: Int[Tensor, "batch pos"], edits: list[FeatureEdit]
) -> Float[Tensor, "batch pos d_vocab"]:
    """The real model's logits with ``edits`` applied (see the module docstring)."""
    n_pos = tokens.shape[-1]
    for e in edits:
        tset.check_feature(e.layer, e.index)
        if e.pos is not None and not 0 <= e.pos < n_pos:
            raise InvalidInputError(f"position {e.pos} is outside the prompt's {n_pos} tokens")
    inputs: dict[int, Tensor] = {}
    fwd: list[tuple[Any, HookFn]] = []
    for layer in sorted({e.layer for e in edits}):
        fwd.append((tset.input_site(layer), _keep(layer, inputs)))
        fwd.append((tset.output_site(layer), _hook(tset, layer, [e for e in edits if e.layer == layer], inputs)))
    with hooks(model, fwd):
        return model(tokens)


def compare_top_tokens(model: Model, clean: Tensor, edited: Tensor, k: int = 10) -> pd.DataFrame:
    """The union of both runs' top-``k`` next tokens (last position), probabilities before and after."""
    p0, p1 = clean[0, -1].double().softmax(-1), edited[0, -1].double().softmax(-1)
    ids = list(dict.fromkeys(p0.topk(k).indices.tolist() + p1.topk(k).indices.tolist()))
    table = pd.DataFrame(
        {
            "token": [model.tokenizer.decode([t]) for t in ids],
            "p_clean": [float(p0[t]) for t in ids],
            "p_intervened": [float(p1[t]) for t in ids],
        }
    )
    table["change"] = table["p_intervened"] - table["p_clean"]
    return table.sort_values("p_intervened", ascending=False, ignore_index=True)


def _keep(layer: int, store: dict[int, Tensor]) -> HookFn:
    def fn(act: Tensor, hook: Any) -> None:
        store[layer] = act

    return fn
