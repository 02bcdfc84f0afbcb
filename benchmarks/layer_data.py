"""One layer's MLP input and output on the mix, for the single-layer transcoder benchmarks
(``transcoder_init.py``, ``transcoder_schedule.py``): harvested from the first windows of a text,
then normalised as the recipe does (one root-mean-square scale per side, from the training rows).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from scrying.sites import Component, Site, recorded
from scrying.transcoders.corpus import read_texts
from scrying.transcoders.train import _rms, first_windows
from scrying.transcoders.train_loss import dead_mask, layer_loss


def harvest_layer(model, path: Path, layer: int, n: int, *, seq_len: int = 128, batch: int = 16) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001 - a loaded Model
    """``layer``'s MLP input and output at every position past BOS of the first ``n`` windows of
    ``path`` (the model run only up to that layer)."""
    sites = [Site(Component.MLP_IN, layer), Site(Component.MLP_RESULT, layer)]
    windows = first_windows(model, read_texts([path]), seq_len, n, what=str(path))
    xs, ys = [], []
    for start in range(0, n, batch):
        with torch.no_grad(), recorded(model, sites) as store:
            model(windows[start : start + batch], stop_at_layer=layer + 1)
        xs.append(store[sites[0]][:, 1:].flatten(0, 1).float())
        ys.append(store[sites[1]][:, 1:].flatten(0, 1).float())
    return torch.cat(xs), torch.cat(ys)


def normalised(x: torch.Tensor, y: torch.Tensor, xe: torch.Tensor, ye: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Training and held-out rows divided by the training rows' scales, input and output apart
    (the training run's own scale, ``train._rms``)."""
    s_in, s_out = _rms(x), _rms(y)
    return x / s_in, y / s_out, xe / s_in, ye / s_out


def held_out_figures(tc, xe: torch.Tensor, ye: torch.Tensor) -> tuple[float, float, float]:  # noqa: ANN001 - a Transcoder
    """Held-out FVU, and the shares of features never firing and firing on fewer than one row in 1,000."""
    with torch.no_grad():
        feats = tc.encode(xe)
        fvu = float((tc.decode(feats, xe) - ye).pow(2).sum() / (ye - ye.mean(0)).pow(2).sum())
        fired = (feats != 0).sum(0)
    return fvu, float((fired == 0).float().mean()), float(((fired > 0) & (fired * 1000 < xe.shape[0])).float().mean())


def train_layer(tc, x: torch.Tensor, y: torch.Tensor, *, steps: int, batch_size: int, dead_after: int, k_aux: int,  # noqa: ANN001 - a Transcoder
                aux_coef: float, lr_of_step: Callable[[int], float]) -> torch.Tensor:
    """``steps`` Adam steps of ``tc`` on batches of ``batch_size`` rows drawn from ``x``, ``y`` with a
    generator seeded 0 (the same batches on every call), the recipe's loss with AuxK over the
    features not fired in the last ``dead_after`` rows, the learning rate ``lr_of_step(step)``.
    Returns the rows since each feature last fired."""
    optimizer = torch.optim.Adam(tc.parameters(), lr=lr_of_step(0))
    since = torch.zeros(tc.W_enc.shape[0], dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    for step in range(steps):
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=gen)
        part = layer_loss(tc, x[idx], y[idx], dead=dead_mask(since, dead_after), k_aux=k_aux, aux_coef=aux_coef, l1=0.0)
        since = torch.where(part.fired, 0, since + len(idx))
        for group in optimizer.param_groups:
            group["lr"] = lr_of_step(step)
        optimizer.zero_grad()
        part.total.backward()
        optimizer.step()
    return since
