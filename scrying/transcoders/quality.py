"""Per-layer quality of a transcoder set on held-out windows.

* ``fvu`` — fraction of MLP-output variance unexplained: ``sum |y - y_hat|^2 / sum |y - mean y|^2``
  over every (window, position > 0) row; ``1 - fvu`` is the variance explained.
* ``l0`` — mean number of active features per row.
* ``dead_fraction`` — fraction of features never active on these rows.
"""

from __future__ import annotations

import pandas as pd
import torch

from scrying.axes import Int, Model, Tensor
from scrying.models.adapter import final_resid
from scrying.sites import recorded
from scrying.transcoders.files import TranscoderSet


@torch.no_grad()
def quality_report(model: Model, tset: TranscoderSet, windows: Int[Tensor, "batch seq"], *, batch: int = 16) -> pd.DataFrame:
    """One row per layer: fvu, variance_explained, l0, dead_fraction, rows."""
    n = model.cfg.n_layers
    sites = [tset.input_site(ly) for ly in range(n)] + [tset.output_site(ly) for ly in range(n)]
    err = torch.zeros(n, dtype=torch.float64)
    sq = torch.zeros(n, dtype=torch.float64)
    total = [torch.zeros(model.cfg.d_model, dtype=torch.float64) for _ in range(n)]
    active = torch.zeros(n, dtype=torch.float64)
    ever = torch.zeros(n, tset.n_features, dtype=torch.bool)
    rows = 0
    for start in range(0, windows.shape[0], batch):
        with recorded(model, sites) as store:
            final_resid(model, windows[start : start + batch])
        for ly, tc in enumerate(tset.transcoders):
            x = store[tset.input_site(ly)][:, 1:].flatten(0, 1).to(tc.dtype)
            y = store[tset.output_site(ly)][:, 1:].flatten(0, 1).double()
            feats = tc.encode(x)
            err[ly] += (tc.decode(feats, x).double() - y).pow(2).sum()
            sq[ly] += y.pow(2).sum()
            total[ly] += y.sum(0)
            on = feats != 0
            active[ly] += on.sum()
            ever[ly] |= on.any(0)
        rows += x.shape[0]
    mean_sq = torch.stack([(t / rows).pow(2).sum() for t in total])
    variance = sq - rows * mean_sq  # sum |y - mean y|^2
    fvu = err / variance
    return pd.DataFrame(
        {
            "layer": list(range(n)),
            "fvu": fvu.tolist(),
            "variance_explained": (1 - fvu).tolist(),
            "l0": (active / rows).tolist(),
            "dead_fraction": (1 - ever.double().mean(-1)).tolist(),
            "rows": [rows] * n,
        }
    )
