"""Reviving dead TopK features by their encoder bias: the recipe's last chunks (``revive_chunks``).

AuxK (Gao et al. 2024; :func:`scrying.transcoders.train_loss.auxk_loss`) trains a dead feature
through ``relu`` of its pre-activation, as OpenAI's reference trainer does (``auxk_vals =
relu(auxk_vals)``): a feature whose pre-activation is negative on every row gets no gradient from
it and stays dead. On the full 31-chunk recipe set's layer 16 (8,192 TopK-64 features; 162,560
rows of the mix): 14.7% of the features never reached the top 64, and 9.1% (62% of those) had a
negative pre-activation on every row.

:func:`revive_dead` keeps each dead feature's encoder and decoder rows (its direction, which AuxK
trained where it could) and raises its encoder bias just enough that it enters the top ``k`` on a
chosen share of the rows: with ``margin = pre - kth`` (``kth`` each row's ``k``-th largest
pre-activation), the bias rises by minus the ``m``-th largest margin, ``m = ceil(rate x rows)``,
so the feature's margin is >= 0 on those ``m`` rows. Training then keeps or drops it on its merits.
With ``rare=True`` the same lift applies to every feature active on fewer than ``m`` rows: most
features that fire on none of a small held-out sample did fire, rarely, on the training rows.

Measured on that layer 16 by ``benchmarks/transcoder_revival.py``
(``results/transcoders/revival/layer-16.txt``): each variant from the set's weights, then 64 Adam
steps on 130,048 rows of fresh training text at the schedule's final learning rate; features
active on none of 32,512 held-out positions, and held-out FVU:

====================================================== =====  ======
variant                                                dead   FVU
====================================================== =====  ======
the set as trained (no step)                           39.9%  0.1813
more steps alone                                       39.8%  0.1784
AuxK counting dead after 32,768 rows, not 262,144      39.8%  0.1784
that, AuxK coefficient 1 (not 1/32), lr 1e-3           39.1%  0.1821
revival of the dead at 1/2,000 of the rows             28.3%  0.1786
revival of the dead at 1/500                           26.3%  0.1791
``rare=True`` at 1/500 (5,781 features lifted)         7.0%   0.1805
Bricken et al.'s resampling (rows at high-loss inputs) 43.6%  0.1812
====================================================== =====  ======

Revival of the dead alone touches the 1,322 features silent on all 130,048 training rows; right
after it 26.7% were still silent on the held-out rows, fired elsewhere too rarely to show. Lifting
the rare ones costs 0.002 of FVU against revival of the dead alone. Resampling builds features for
outlier rows.
"""

from __future__ import annotations

import math

import torch

from scrying.axes import Float, Tensor
from scrying.errors import ConfigError
from scrying.transcoders.transcoder import Transcoder


@torch.no_grad()
def revive_dead(
    tc: Transcoder, x: Float[Tensor, "row d_model"], rate: float, *, rare: bool = False, batch: int = 4096
) -> torch.Tensor:
    """Revive the features of a TopK transcoder that are active on no row of ``x`` (with
    ``rare``: on fewer than ``ceil(rate x rows)``): raise each one's ``b_enc`` so that it reaches
    the top ``k`` on ``ceil(rate x rows)`` of them (see the module docstring; one pass over
    ``x``). Returns the revived features (``[feature]`` bool); the other features are untouched.
    Features revived together may push each other out of a row's top ``k``: each then fires on
    fewer rows."""
    if tc.spec.activation != "topk" or tc.spec.k is None:
        raise ConfigError(f"revive_dead applies to TopK transcoders, got activation {tc.spec.activation!r}")
    if not 0 < rate <= 1:
        raise ConfigError(f"revive rate must be in (0, 1], got {rate}")
    m = min(x.shape[0], math.ceil(rate * x.shape[0]))
    fired = torch.zeros(tc.spec.n_features, dtype=torch.long)  # rows each feature is active on
    best = torch.full((tc.spec.n_features, 0), -math.inf, dtype=tc.dtype)  # [feature m]: each one's m largest margins
    for start in range(0, x.shape[0], batch):
        pre = tc.pre_activations(x[start : start + batch].to(tc.dtype))
        top = pre.topk(tc.spec.k, dim=-1)
        fired += torch.bincount(top.indices[top.values > 0], minlength=tc.spec.n_features)  # active: in the top k and positive
        margins = torch.cat([best, (pre - top.values[:, -1:]).T], dim=1)
        best = margins.topk(min(m, margins.shape[1]), dim=1).values
    dead = fired < m if rare else fired == 0
    raise_by = (-best[dead, -1]).clamp_min(0)
    # a hair above the m-th row's tie with its k-th value (TopK breaks ties arbitrarily)
    tc.b_enc[dead] += raise_by + 1e-4 * raise_by.abs().clamp_min(1.0)
    return dead
