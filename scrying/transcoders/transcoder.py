"""A per-layer transcoder: sparse features that read an MLP's input and write its output.

Shapes follow circuit-tracer's ``SingleLayerTranscoder`` (and its safetensors files):

* ``W_enc``  ``feature d_model`` — one encoder row per feature,
* ``b_enc``  ``feature``,
* ``W_dec``  ``feature d_model`` — one decoder row per feature,
* ``b_dec``  ``d_model``,
* ``W_skip`` ``d_model d_model`` (optional; applied as ``x @ W_skip.T``, Gao et al. 2025
  "Transcoders beat sparse autoencoders"),
* ``threshold`` ``feature`` (JumpReLU only).

``features = act(x @ W_enc.T + b_enc)`` and ``output = features @ W_dec + b_dec + x @ W_skip.T``.

**Dtype convention** (every user: the attribution basis, quality, labels, interventions): a
transcoder computes in its own :attr:`Transcoder.dtype`; activations are cast to it on the way in
and results back to the caller's dtype on the way out. Nothing casts, freezes or otherwise
changes a caller's transcoder; code that must not compute the weights' gradients reads
:meth:`Transcoder.detached`, a view of the same weights.
Every activation here is the pre-activation times a 0/1 mask (ReLU: ``pre > 0``; JumpReLU:
``pre > threshold``; TopK: the ``k`` largest pre-activations that are also positive), which is
what lets the attribution basis freeze the mask and keep each feature linear in its input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import einops
import torch

from scrying.axes import Float, Int, Tensor
from scrying.errors import ConfigError, InvalidInputError

Activation = Literal["relu", "jumprelu", "topk"]
ACTIVATIONS: tuple[str, ...] = ("relu", "jumprelu", "topk")


@dataclass(frozen=True, kw_only=True)
class TranscoderSpec:
    """What a transcoder is, apart from its weights."""

    d_model: int
    n_features: int
    activation: Activation = "relu"
    k: int | None = None  # topk only
    skip: bool = False

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"TranscoderSpec.activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.d_model < 1 or self.n_features < 1:
            raise ConfigError(f"TranscoderSpec.d_model and n_features must be >= 1, got {self.d_model}, {self.n_features}")
        if (self.activation == "topk") != (self.k is not None):
            raise ConfigError(f"TranscoderSpec.k is required for activation 'topk' and only for it, got k={self.k}")
        if self.k is not None and not 1 <= self.k <= self.n_features:
            raise ConfigError(f"TranscoderSpec.k must be in 1..{self.n_features}, got {self.k}")


class Transcoder(torch.nn.Module):
    """One layer's transcoder (weights as parameters, so it trains as it is)."""

    def __init__(self, spec: TranscoderSpec, *, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.spec = spec
        d, f = spec.d_model, spec.n_features
        self.W_enc = torch.nn.Parameter(torch.zeros(f, d, dtype=dtype))
        self.b_enc = torch.nn.Parameter(torch.zeros(f, dtype=dtype))
        self.W_dec = torch.nn.Parameter(torch.zeros(f, d, dtype=dtype))
        self.b_dec = torch.nn.Parameter(torch.zeros(d, dtype=dtype))
        self.W_skip = torch.nn.Parameter(torch.zeros(d, d, dtype=dtype)) if spec.skip else None
        self.threshold = torch.nn.Parameter(torch.zeros(f, dtype=dtype)) if spec.activation == "jumprelu" else None

    @property
    def dtype(self) -> torch.dtype:
        """The dtype it computes in (its weights')."""
        return self.W_enc.dtype

    def detached(self) -> Transcoder:
        """A transcoder on the same weights (the same memory, not a copy), detached from
        autograd: what reads it never computes the weights' gradients, and this transcoder (its
        weights, dtype and ``requires_grad`` flags) is left as it is."""
        out = Transcoder.__new__(Transcoder)
        torch.nn.Module.__init__(out)
        out.spec = self.spec
        for name in ("W_enc", "b_enc", "W_dec", "b_dec", "W_skip", "threshold"):
            weight = getattr(self, name)
            setattr(out, name, None if weight is None else torch.nn.Parameter(weight.detach(), requires_grad=False))
        return out

    def tensors(self) -> dict[str, Tensor]:
        """The weights by circuit-tracer's names (``threshold`` and ``W_skip`` where present)."""
        return {name: p for name, p in self.named_parameters()}

    def load_tensors(self, tensors: dict[str, Tensor]) -> Transcoder:
        """Copy weights in, checking every name and shape; returns self."""
        expected = {name: tuple(p.shape) for name, p in self.named_parameters()}
        got = {name: tuple(t.shape) for name, t in tensors.items()}
        if got != expected:
            raise InvalidInputError(f"transcoder tensors: expected {expected}, got {got}")
        with torch.no_grad():
            for name, p in self.named_parameters():
                p.copy_(tensors[name].to(p.dtype))
        return self

    def pre_activations(self, x: Float[Tensor, "*batch d_model"]) -> Float[Tensor, "*batch feature"]:
        return einops.einsum(x.to(self.W_enc.dtype), self.W_enc, "... d, f d -> ... f") + self.b_enc

    def mask(self, pre: Float[Tensor, "*batch feature"]) -> torch.Tensor:
        """Which features are active (0/1 in the pre-activations' dtype)."""
        if self.spec.activation == "relu":
            on = pre > 0
        elif self.spec.activation == "jumprelu":
            on = pre > self.threshold
        else:
            top = pre.topk(self.spec.k, dim=-1).indices
            on = torch.zeros_like(pre, dtype=torch.bool).scatter(-1, top, True) & (pre > 0)
        return on.to(pre.dtype)

    def encode(self, x: Float[Tensor, "*batch d_model"]) -> Float[Tensor, "*batch feature"]:
        pre = self.pre_activations(x)
        return pre * self.mask(pre)

    def decode(
        self, features: Float[Tensor, "*batch feature"], x: Float[Tensor, "*batch d_model"]
    ) -> Float[Tensor, "*batch d_model"]:
        return self._bias_and_skip(einops.einsum(features.to(self.W_dec.dtype), self.W_dec, "... f, f d -> ... d"), x)

    def decode_rows(self, indices: Int[Tensor, "*batch k"], acts: Float[Tensor, "*batch k"]) -> Float[Tensor, "*batch d_model"]:
        """``sum_j acts[..., j] W_dec[indices[..., j]]`` without the dense ``batch x feature``
        product (``embedding_bag``); no bias, no skip."""
        k = indices.shape[-1]
        flat = torch.nn.functional.embedding_bag(indices.reshape(-1, k), self.W_dec,
                                                 per_sample_weights=acts.reshape(-1, k).to(self.W_dec.dtype), mode="sum")
        return flat.view(*indices.shape[:-1], self.W_dec.shape[-1])  # also for no rows

    def decode_sparse(
        self, indices: Int[Tensor, "*batch k"], acts: Float[Tensor, "*batch k"], x: Float[Tensor, "*batch d_model"]
    ) -> Float[Tensor, "*batch d_model"]:
        """:meth:`decode` of features that are 0 outside ``indices`` (a TopK set's ``k`` per row)."""
        return self._bias_and_skip(self.decode_rows(indices, acts), x)

    def _bias_and_skip(self, out: Float[Tensor, "*batch d_model"], x: Float[Tensor, "*batch d_model"]) -> Float[Tensor, "*batch d_model"]:
        out = out + self.b_dec
        if self.W_skip is not None:
            out = out + einops.einsum(x.to(self.W_skip.dtype), self.W_skip, "... i, o i -> ... o")
        return out

    def forward(self, x: Float[Tensor, "*batch d_model"]) -> Float[Tensor, "*batch d_model"]:
        return self.decode(self.encode(x), x)
