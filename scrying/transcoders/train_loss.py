"""The training objective and schedule of a transcoder: reconstruction, AuxK, learning rate.

* **Reconstruction** — ``|y_hat - y|^2`` summed over ``d_model``, mean over rows (activations are
  normalised to unit scale per layer, so this is comparable across layers).
* **AuxK** (Gao et al. 2024, "Scaling and evaluating sparse autoencoders", section A.2): with
  ``e = y - y_hat`` the main reconstruction's error, the ``k_aux`` largest pre-activations among
  the *dead* features (not fired on any of the last ``dead_after`` training rows) reconstruct
  it alone (no bias, no skip): ``e_hat = W_dec[dead]^T topk_aux(pre[dead])``, and the loss adds
  ``aux_coef * |e_hat - e|^2 / |e - mean e|^2`` (``aux_coef`` 1/32 in the paper; ``k_aux`` a
  power of two near ``d_model / 2``; the error is a constant, so only the dead features learn
  from it). With no dead feature the term is 0.
* **Sparse decoding** (TopK) — only the ``k`` active decoder rows are summed
  (:meth:`~scrying.transcoders.transcoder.Transcoder.decode_sparse`, ``embedding_bag``), equal to
  the dense ``features @ W_dec``.
* **Sparse encoder gradient** — the pre-activations are computed once without autograd (they are
  needed whole, to rank), and only the entries the loss reads (the TopK and AuxK picks) carry a
  gradient (:func:`selected_pre`): the weights' gradient is a sparse ``rows x features`` matrix
  times the inputs, not a second dense ``rows x d_model x features`` product (equal up to
  summation order, tested against the dense autograd; ``benchmarks/transcoder_step.py``: one
  layer's whole recipe step, 2,048 rows x 8,192 features, at 0.87x the dense autograd's time,
  measured beside a training run).
* **L1** (ReLU only) — ``l1 * sum_i f_i |W_dec_i|`` (Anthropic, "Towards Monosemanticity").
* **Schedule** — linear warmup from ``lr / warmup`` to ``lr`` over ``warmup`` steps, then
  cosine decay to ``lr * final_lr_fraction`` at the last step (:func:`lr_at`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from scrying.axes import Float, Int, Tensor
from scrying.transcoders.transcoder import Transcoder


@dataclass(frozen=True)
class StepLoss:
    """One layer's loss on one batch, and its parts (floats detached for the history)."""

    total: Float[Tensor, ""]
    mse: float
    aux: float
    fired: torch.Tensor  # [feature] bool: fired on some row of the batch


class _SelectedPre(torch.autograd.Function):
    """``pre.gather(-1, indices)`` where ``pre = x @ W_enc.T + b_enc`` was computed without autograd;
    the backward reads only the selected entries' gradients."""

    @staticmethod
    def forward(ctx, x: Tensor, w_enc: Tensor, b_enc: Tensor, pre: Tensor, indices: Tensor) -> Tensor:  # noqa: ARG004 (b_enc: gradient only)
        ctx.save_for_backward(x, w_enc, indices)
        return pre.gather(-1, indices)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, w_enc, indices = ctx.saved_tensors
        n, k = indices.shape
        flat, weights = indices.reshape(-1), grad.reshape(-1).contiguous()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.nn.functional.embedding_bag(indices, w_enc, per_sample_weights=grad, mode="sum")
        if ctx.needs_input_grad[1]:  # [row, feature] CSR (each row holds its k picks), transposed, times x
            with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state", once per run
                warnings.simplefilter("ignore", UserWarning)
                picks = torch.sparse_csr_tensor(torch.arange(0, n * k + 1, k), flat, weights, (n, w_enc.shape[0]))
            grad_w = picks.t() @ x
        if ctx.needs_input_grad[2]:
            grad_b = weights.new_zeros(w_enc.shape[0]).index_add_(0, flat, weights)
        return grad_x, grad_w, grad_b, None, None


def selected_pre(
    tc: Transcoder, x: Float[Tensor, "row d_model"], pre: Float[Tensor, "row feature"], indices: Int[Tensor, "row pick"]
) -> Float[Tensor, "row pick"]:
    """``tc.pre_activations(x).gather(-1, indices)``, differentiable in ``W_enc``, ``b_enc`` (and
    ``x``), given ``pre``, those pre-activations computed without autograd; the backward costs
    ``rows x pick x d_model``, not ``rows x feature x d_model``."""
    return _SelectedPre.apply(x.to(tc.W_enc.dtype), tc.W_enc, tc.b_enc, pre.detach(), indices)


def dead_mask(since_fired: torch.Tensor, dead_after: int) -> torch.Tensor:
    """Features that have not fired on any of the last ``dead_after`` rows."""
    return since_fired >= dead_after


def auxk_loss(
    tc: Transcoder, x: Float[Tensor, "row d_model"], pre: Float[Tensor, "row feature"], error: Float[Tensor, "row d_model"],
    dead: torch.Tensor, k_aux: int,
) -> Float[Tensor, ""]:
    """Gao et al.'s AuxK term (before its coefficient): the normalised MSE of the top-``k_aux``
    dead features' reconstruction of ``error`` (detached by the caller). 0 with no dead feature.
    ``pre`` is ``tc.pre_activations(x)`` (its autograd is not used: :func:`selected_pre`). The
    ranking reads the dead features' columns alone (not every feature's, masked: 12% of a recipe
    step, measured on one layer)."""
    columns = dead.nonzero()[:, 0]
    if len(columns) == 0:
        return pre.new_zeros(())
    with torch.no_grad():
        picked = pre.index_select(-1, columns).topk(min(k_aux, len(columns)), dim=-1).indices
    features = columns[picked]
    e_hat = tc.decode_rows(features, torch.relu(selected_pre(tc, x, pre, features)))
    scale = (error - error.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-12)
    return (e_hat - error).pow(2).sum(-1).mean() / scale


def layer_loss(
    tc: Transcoder, x: Float[Tensor, "row d_model"], y: Float[Tensor, "row d_model"], *,
    dead: torch.Tensor | None, k_aux: int, aux_coef: float, l1: float,
) -> StepLoss:
    """Reconstruction (+ AuxK where ``dead`` is given and ``aux_coef > 0``, + L1 for ReLU)."""
    if tc.spec.activation == "topk":  # sparse decode: equals tc.decode(tc.encode(x), x)
        with torch.no_grad():
            pre = tc.pre_activations(x)
            top = pre.topk(tc.spec.k, dim=-1).indices
        acts = torch.relu(selected_pre(tc, x, pre, top))
        y_hat = tc.decode_sparse(top, acts, x)
        fired = torch.zeros(pre.shape[-1], dtype=torch.bool).index_fill_(0, top[acts > 0], True)
    else:
        pre = tc.pre_activations(x)
        feats = pre * tc.mask(pre)
        y_hat = tc.decode(feats, x)
        fired = (feats != 0).any(0)
    mse = (y_hat - y).pow(2).sum(-1).mean()
    total = mse
    aux = pre.new_zeros(())
    if dead is not None and aux_coef > 0:
        aux = auxk_loss(tc, x, pre, (y - y_hat).detach(), dead, k_aux)
        total = total + aux_coef * aux
    if l1 > 0 and tc.spec.activation != "topk":
        total = total + l1 * (feats * tc.W_dec.norm(dim=1)).sum(-1).mean()
    return StepLoss(total, float(mse.detach()), float(aux.detach()), fired)


def lr_at(step: int, total_steps: int, lr: float, warmup: int, final_fraction: float) -> float:
    """The learning rate at 0-based ``step`` of ``total_steps``: linear warmup over ``warmup``
    steps (``lr * (step + 1) / warmup``), then cosine from ``lr`` to ``lr * final_fraction``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    span = max(1, total_steps - warmup - 1)
    progress = min(1.0, (step - warmup) / span)
    return lr * (final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress)))
