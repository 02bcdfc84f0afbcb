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
* **L1** (ReLU only) — ``l1 * sum_i f_i |W_dec_i|`` (Anthropic, "Towards Monosemanticity").
* **Schedule** — linear warmup from ``lr / warmup`` to ``lr`` over ``warmup`` steps, then
  cosine decay to ``lr * final_lr_fraction`` at the last step (:func:`lr_at`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from scrying.axes import Float, Tensor
from scrying.transcoders.transcoder import Transcoder


@dataclass(frozen=True)
class StepLoss:
    """One layer's loss on one batch, and its parts (floats detached for the history)."""

    total: Float[Tensor, ""]
    mse: float
    aux: float
    fired: torch.Tensor  # [feature] bool: fired on some row of the batch


def dead_mask(since_fired: torch.Tensor, dead_after: int) -> torch.Tensor:
    """Features that have not fired on any of the last ``dead_after`` rows."""
    return since_fired >= dead_after


def auxk_loss(
    tc: Transcoder, pre: Float[Tensor, "row feature"], error: Float[Tensor, "row d_model"], dead: torch.Tensor, k_aux: int
) -> Float[Tensor, ""]:
    """Gao et al.'s AuxK term (before its coefficient): the normalised MSE of the top-``k_aux``
    dead features' reconstruction of ``error`` (detached by the caller). 0 with no dead feature.
    The ranking reads the dead features' columns alone (not every feature's, masked: 12% of a
    recipe step, measured on one layer)."""
    columns = dead.nonzero()[:, 0]
    if len(columns) == 0:
        return pre.new_zeros(())
    values, picked = pre.index_select(-1, columns).topk(min(k_aux, len(columns)), dim=-1)
    e_hat = tc.decode_rows(columns[picked], torch.relu(values))
    scale = (error - error.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-12)
    return (e_hat - error).pow(2).sum(-1).mean() / scale


def layer_loss(
    tc: Transcoder, x: Float[Tensor, "row d_model"], y: Float[Tensor, "row d_model"], *,
    dead: torch.Tensor | None, k_aux: int, aux_coef: float, l1: float,
) -> StepLoss:
    """Reconstruction (+ AuxK where ``dead`` is given and ``aux_coef > 0``, + L1 for ReLU)."""
    pre = tc.pre_activations(x)
    if tc.spec.activation == "topk":  # sparse decode: equals tc.decode(tc.encode(x), x)
        top = pre.topk(tc.spec.k, dim=-1)
        acts = torch.relu(top.values)
        y_hat = tc.decode_sparse(top.indices, acts, x)
        fired = torch.zeros(pre.shape[-1], dtype=torch.bool).index_fill_(0, top.indices[acts > 0], True)
    else:
        feats = pre * tc.mask(pre)
        y_hat = tc.decode(feats, x)
        fired = (feats != 0).any(0)
    mse = (y_hat - y).pow(2).sum(-1).mean()
    total = mse
    aux = pre.new_zeros(())
    if dead is not None and aux_coef > 0:
        aux = auxk_loss(tc, pre, (y - y_hat).detach(), dead, k_aux)
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
