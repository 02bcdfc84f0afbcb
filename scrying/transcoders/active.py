"""A transcoder restricted to its active features: encode and decode without dense work.

In the local replacement model a transcoder's activity mask is frozen at its clean value, so only
the features active on the prompt (a TopK-32 set: 32 per position, of thousands) can be nonzero.
The attribution pass tracks those alone, as a compact ``[batch n_active]`` tensor whose entry
``k`` is feature ``index[k]`` at position ``pos[k]``:

* :func:`encode_active`: ``acts[b, k] = x[b, pos[k]] · W_enc[index[k]] + b_enc[index[k]]``,
* :func:`decode_active`: ``out[b, p] = sum over k with pos[k] = p of acts[b, k] W_dec[index[k]]``.

Both cost ``batch x n_active x d_model`` in the forward and in the backward pass, against
``batch x pos x n_features x d_model`` for the dense matrix products: the backward pass of the
decoder is circuit-tracer's contraction of the gradient with the active decoder rows. Each
position's active rows are laid out side by side (padded to the most any position has: ``k``
for TopK), so the work is one batched matrix product over positions, done a chunk of positions
at a time: a long prompt never materializes a ``[batch n_active d_model]`` tensor (1 GB at
1,024 tokens and batch 16). Each function is a :class:`torch.autograd.Function` whose backward
pass is the other one. :class:`ActiveRows` holds one weight's active rows and their layout; a
short prompt's padded rows are kept (built once per attribution pass, not once per backward).
"""

from __future__ import annotations

from typing import Any

import torch

from scrying.axes import Float, Int, Tensor

#: Elements of the gathered weight rows per chunk of positions (32 MB in float32).
CHUNK_ELEMENTS = 1 << 23
#: Padded rows up to this many elements (8 MB in float32: 100 tokens of TopK-32 with d_model
#: 640) are built once per attribution pass and kept; longer prompts rebuild them in every pass
#: over the layer (memory before time: kept at 256 tokens they would take 377 MB for 18 layers).
KEEP_ELEMENTS = 1 << 21


class ActiveRows:
    """Rows ``weight[index[k]]`` of the active entries ``k`` (at positions ``pos[k]``, sorted),
    laid out per position: ``[pos slot d_model]``, zero where a position has fewer entries;
    kept between calls up to ``KEEP_ELEMENTS``."""

    def __init__(self, weight: Float[Tensor, "n_features d_model"], pos: Int[Tensor, " n"], index: Int[Tensor, " n"], n_pos: int) -> None:
        self.weight, self.pos, self.index, self.n_pos = weight.detach(), pos, index, n_pos
        counts = torch.bincount(pos, minlength=n_pos)
        self.slot = torch.arange(len(pos)) - (torch.cumsum(counts, 0) - counts)[pos]
        self.width = int(counts.max()) if len(pos) else 0
        d_model = weight.shape[-1]
        # Each (position, slot)'s feature; empty slots read row 0 and are zeroed (``empty``).
        self.layout = torch.zeros((n_pos, self.width), dtype=torch.long)
        self.layout[pos, self.slot] = index
        self.empty = torch.ones((n_pos, self.width, 1), dtype=torch.bool)
        self.empty[pos, self.slot] = False
        self._any_empty = bool(self.empty.any())
        self.step = max(1, CHUNK_ELEMENTS // max(1, self.width * d_model))
        self._kept: dict[torch.dtype, Tensor] = {}
        self._keep = n_pos * self.width * d_model <= KEEP_ELEMENTS

    def _padded(self, lo: int, hi: int, dtype: torch.dtype) -> tuple[Float[Tensor, "chunk slot d_model"], Tensor]:
        """The padded rows of positions ``lo..hi-1``, and which entries are there."""
        inside = (self.pos >= lo) & (self.pos < hi)
        if self._keep:
            if dtype not in self._kept:
                self._kept[dtype] = self._build(0, self.n_pos, dtype)
            return self._kept[dtype][lo:hi], inside
        return self._build(lo, hi, dtype), inside

    def _build(self, lo: int, hi: int, dtype: torch.dtype) -> Tensor:
        padded = self.weight[self.layout[lo:hi]].to(dtype)
        return padded.masked_fill_(self.empty[lo:hi], 0.0) if self._any_empty else padded

    def dot(self, rows: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch n"]:
        """``out[b, k] = rows[b, pos[k]] · weight[index[k]]``: per position one batched product
        ``[batch d_model] @ [d_model slot]``."""
        out = rows.new_empty(rows.shape[0], len(self.pos))
        for lo in range(0, self.n_pos, self.step):
            hi = min(lo + self.step, self.n_pos)
            padded, inside = self._padded(lo, hi, rows.dtype)
            dots = torch.bmm(rows[:, lo:hi].transpose(0, 1), padded.transpose(1, 2))  # chunk batch slot
            out[:, inside] = dots[self.pos[inside] - lo, :, self.slot[inside]].T
        return out

    def scatter(self, values: Float[Tensor, "batch n"]) -> Float[Tensor, "batch pos d_model"]:
        """``out[b, p] = sum over k with pos[k] = p of values[b, k] weight[index[k]]``: per
        position one batched product ``[batch slot] @ [slot d_model]``."""
        out = values.new_zeros(values.shape[0], self.n_pos, self.weight.shape[-1])
        for lo in range(0, self.n_pos, self.step):
            hi = min(lo + self.step, self.n_pos)
            padded, inside = self._padded(lo, hi, values.dtype)
            coeffs = values.new_zeros(hi - lo, values.shape[0], self.width)
            coeffs[self.pos[inside] - lo, :, self.slot[inside]] = values[:, inside].T
            out[:, lo:hi] = torch.bmm(coeffs, padded).transpose(0, 1)
        return out


class _Encode(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, rows: ActiveRows) -> Tensor:
        ctx.rows = rows
        return rows.dot(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return ctx.rows.scatter(grad), None


class _Decode(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, acts: Tensor, rows: ActiveRows) -> Tensor:
        ctx.rows = rows
        return rows.scatter(acts)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return ctx.rows.dot(grad), None


def encode_active(
    x: Float[Tensor, "batch pos d_model"], rows: ActiveRows, b_enc: Float[Tensor, " n_features"]
) -> Float[Tensor, "batch n"]:
    """Pre-activations of the active features (their values, the mask being 1 there);
    ``rows`` holds the encoder's active rows (``W_enc``)."""
    return _Encode.apply(x, rows) + b_enc.detach()[rows.index].to(x.dtype)


def decode_active(acts: Float[Tensor, "batch n"], rows: ActiveRows) -> Float[Tensor, "batch pos d_model"]:
    """The active features' decoder output (no ``b_dec``, no skip), per position; ``rows``
    holds the decoder's active rows (``W_dec``)."""
    return _Decode.apply(acts, rows)
