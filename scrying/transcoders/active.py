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
pass is the other one.
"""

from __future__ import annotations

from typing import Any

import torch

from scrying.axes import Float, Int, Tensor

#: Elements of the gathered weight rows per chunk of positions (32 MB in float32).
CHUNK_ELEMENTS = 1 << 23


def _layout(pos: Int[Tensor, " n"], n_pos: int) -> tuple[Int[Tensor, " n"], int]:
    """Each entry's slot among its position's entries (``pos`` sorted), and the most per position."""
    counts = torch.bincount(pos, minlength=n_pos)
    first = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(pos)) - first[pos]
    return slot, int(counts.max()) if len(pos) else 0


def _padded_weights(
    weight: Float[Tensor, "n_features d_model"], pos: Tensor, slot: Tensor, index: Tensor, lo: int, hi: int, width: int
) -> tuple[Float[Tensor, "chunk slot d_model"], Tensor]:
    """Rows ``weight[index[k]]`` of the entries at positions ``lo..hi-1``, laid out ``[pos slot]``
    (zero where a position has fewer entries), and which entries those are."""
    inside = (pos >= lo) & (pos < hi)
    padded = weight.new_zeros(hi - lo, width, weight.shape[-1])
    padded[pos[inside] - lo, slot[inside]] = weight[index[inside]]
    return padded, inside


def _positions(n_pos: int, width: int, d_model: int) -> range:
    step = max(1, CHUNK_ELEMENTS // max(1, width * d_model))
    return range(0, n_pos, step)


def _gather_dot(
    rows: Float[Tensor, "batch pos d_model"], pos: Int[Tensor, " n"], weight: Float[Tensor, "n_features d_model"], index: Int[Tensor, " n"]
) -> Float[Tensor, "batch n"]:
    """``out[b, k] = rows[b, pos[k]] · weight[index[k]]``: one batched product per position
    (``[batch d_model] @ [d_model slot]``) over the position's padded rows."""
    n_pos = rows.shape[1]
    slot, width = _layout(pos, n_pos)
    out = rows.new_empty(rows.shape[0], len(pos))
    step = _positions(n_pos, width, rows.shape[-1]).step
    for lo in range(0, n_pos, step):
        hi = min(lo + step, n_pos)
        padded, inside = _padded_weights(weight.to(rows.dtype), pos, slot, index, lo, hi, width)
        dots = torch.bmm(rows[:, lo:hi].transpose(0, 1), padded.transpose(1, 2))  # chunk batch slot
        out[:, inside] = dots[pos[inside] - lo, :, slot[inside]].T
    return out


def _scatter_rows(
    values: Float[Tensor, "batch n"], pos: Int[Tensor, " n"], weight: Float[Tensor, "n_features d_model"], index: Int[Tensor, " n"], n_pos: int
) -> Float[Tensor, "batch pos d_model"]:
    """``out[b, p] = sum over k with pos[k] = p of values[b, k] weight[index[k]]``: one batched
    product per position (``[batch slot] @ [slot d_model]``)."""
    slot, width = _layout(pos, n_pos)
    out = values.new_zeros(values.shape[0], n_pos, weight.shape[-1])
    step = _positions(n_pos, width, weight.shape[-1]).step
    for lo in range(0, n_pos, step):
        hi = min(lo + step, n_pos)
        padded, inside = _padded_weights(weight.to(values.dtype), pos, slot, index, lo, hi, width)
        coeffs = values.new_zeros(hi - lo, values.shape[0], width)
        coeffs[pos[inside] - lo, :, slot[inside]] = values[:, inside].T
        out[:, lo:hi] = torch.bmm(coeffs, padded).transpose(0, 1)
    return out


class _Encode(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, pos: Tensor, index: Tensor, W_enc: Tensor) -> Tensor:
        ctx.save_for_backward(pos, index, W_enc)
        ctx.n_pos = x.shape[1]
        return _gather_dot(x, pos, W_enc, index)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
        pos, index, W_enc = ctx.saved_tensors
        return _scatter_rows(grad, pos, W_enc, index, ctx.n_pos), None, None, None


class _Decode(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, acts: Tensor, pos: Tensor, index: Tensor, W_dec: Tensor, n_pos: int) -> Tensor:
        ctx.save_for_backward(pos, index, W_dec)
        return _scatter_rows(acts, pos, W_dec, index, n_pos)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None, None]:
        pos, index, W_dec = ctx.saved_tensors
        return _gather_dot(grad, pos, W_dec, index), None, None, None, None


def encode_active(
    x: Float[Tensor, "batch pos d_model"],
    pos: Int[Tensor, " n"],
    index: Int[Tensor, " n"],
    W_enc: Float[Tensor, "n_features d_model"],
    b_enc: Float[Tensor, " n_features"],
) -> Float[Tensor, "batch n"]:
    """Pre-activations of the active features (their values, the mask being 1 there)."""
    return _Encode.apply(x, pos, index, W_enc.detach()) + b_enc.detach()[index].to(x.dtype)


def decode_active(
    acts: Float[Tensor, "batch n"],
    pos: Int[Tensor, " n"],
    index: Int[Tensor, " n"],
    W_dec: Float[Tensor, "n_features d_model"],
    n_pos: int,
) -> Float[Tensor, "batch pos d_model"]:
    """The active features' decoder output (no ``b_dec``, no skip), per position."""
    return _Decode.apply(acts, pos, index, W_dec.detach(), n_pos)
