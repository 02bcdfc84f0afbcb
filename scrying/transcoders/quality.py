"""Per-layer quality of a transcoder set on held-out windows.

* ``fvu`` — fraction of MLP-output variance unexplained: ``sum |y - y_hat|^2 / sum |y - mean y|^2``
  over every (window, position > 0) row; ``1 - fvu`` is the variance explained.
* ``l0`` — mean number of active features per row.
* ``dead_fraction`` — fraction of features never active on these rows.
* ``rare_fraction`` — fraction of features active on some row but on fewer than one row in
  ``rare_every`` (apart from the dead ones).
* Spliced in (where ``splice_windows`` are given; :func:`spliced_loss`): the model run with one
  layer's MLP output replaced by its transcoder's reconstruction at every position past BOS (one
  layer at a time, the rest of the model real): ``ce_clean`` and ``ce_spliced``, the mean
  next-token cross-entropy (nats) over every position, ``ce_increase`` their difference, and
  ``kl`` the mean ``KL(clean || spliced)`` of the next-token distributions.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from scrying.axes import Int, Model, Tensor
from scrying.models.adapter import final_resid
from scrying.sites import capture, hooks, recorded
from scrying.transcoders.files import TranscoderSet


@torch.no_grad()
def quality_report(
    model: Model, tset: TranscoderSet, windows: Int[Tensor, "batch seq"], *, batch: int = 16, rare_every: int = 1000,
    splice_windows: Int[Tensor, "splice seq"] | None = None,
) -> pd.DataFrame:
    """One row per layer: fvu, variance_explained, l0, dead_fraction, rare_fraction, rows (and,
    with ``splice_windows``, the columns of :func:`spliced_loss`)."""
    n = model.cfg.n_layers
    sites = [tset.input_site(ly) for ly in range(n)] + [tset.output_site(ly) for ly in range(n)]
    err = torch.zeros(n, dtype=torch.float64)
    sq = torch.zeros(n, dtype=torch.float64)
    total = [torch.zeros(model.cfg.d_model, dtype=torch.float64) for _ in range(n)]
    active = torch.zeros(n, dtype=torch.float64)
    fired = torch.zeros(n, tset.n_features, dtype=torch.float64)
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
            fired[ly] += on.sum(0)
        rows += x.shape[0]
    mean_sq = torch.stack([(t / rows).pow(2).sum() for t in total])
    variance = sq - rows * mean_sq  # sum |y - mean y|^2
    fvu = err / variance
    report = pd.DataFrame(
        {
            "layer": list(range(n)),
            "fvu": fvu.tolist(),
            "variance_explained": (1 - fvu).tolist(),
            "l0": (active / rows).tolist(),
            "dead_fraction": (fired == 0).double().mean(-1).tolist(),
            "rare_fraction": ((fired > 0) & (fired * rare_every < rows)).double().mean(-1).tolist(),
            "rows": [rows] * n,
        }
    )
    if splice_windows is not None:
        report = report.merge(spliced_loss(model, tset, splice_windows, batch=max(1, batch // 4)), on="layer")
    return report


@torch.no_grad()
def spliced_loss(model: Model, tset: TranscoderSet, windows: Int[Tensor, "batch seq"], *, batch: int = 4) -> pd.DataFrame:
    """Per layer: next-token loss and KL with that layer's MLP output replaced by the
    transcoder's reconstruction from the MLP's real input (positions past BOS; position 0 keeps
    the real MLP, as training never saw it). Means over every predicted token of ``windows``."""
    n = model.cfg.n_layers
    ce_clean = torch.zeros((), dtype=torch.float64)
    ce = torch.zeros(n, dtype=torch.float64)
    kl = torch.zeros(n, dtype=torch.float64)
    count = 0
    for start in range(0, windows.shape[0], batch):
        tokens = windows[start : start + batch]
        targets = tokens[:, 1:]
        clean = torch.log_softmax(model(tokens)[:, :-1].double(), dim=-1)
        ce_clean += -clean.gather(-1, targets[..., None]).sum()
        for ly in range(n):
            logp = torch.log_softmax(_spliced_logits(model, tset, ly, tokens)[:, :-1].double(), dim=-1)
            ce[ly] += -logp.gather(-1, targets[..., None]).sum()
            kl[ly] += (clean.exp() * (clean - logp)).sum()
        count += targets.numel()
    return pd.DataFrame(
        {
            "layer": list(range(n)),
            "ce_clean": [float(ce_clean / count)] * n,
            "ce_spliced": (ce / count).tolist(),
            "ce_increase": ((ce - ce_clean) / count).tolist(),
            "kl": (kl / count).tolist(),
        }
    )


def _spliced_logits(model: Model, tset: TranscoderSet, layer: int, tokens: Int[Tensor, "batch seq"]) -> Tensor:
    tc, inputs = tset.transcoders[layer], {}

    def splice(act: Tensor, hook: Any) -> Tensor:
        out = act.clone()
        out[:, 1:] = tc(inputs.pop(layer)[:, 1:]).to(act.dtype)
        return out

    with hooks(model, [(tset.input_site(layer), capture(layer, inputs)), (tset.output_site(layer), splice)]):
        return model(tokens)


def quality_markdown(report: pd.DataFrame) -> str:
    """The report as a README table: one row per layer (FVU, L0, dead and rare fractions, and
    the spliced-in loss increase and KL where measured), then the mean over layers."""
    spliced = "ce_increase" in report.columns
    head = "| layer | FVU | L0 | dead | rare |" + (" loss increase (nats) | KL |" if spliced else "")
    lines = [head, "|---" * (7 if spliced else 5) + "|"]

    def row(name: str, r: pd.Series | dict) -> str:
        cells = f"| {name} | {r['fvu']:.3f} | {r['l0']:.1f} | {r['dead_fraction']:.1%} | {r['rare_fraction']:.1%} |"
        return cells + (f" {r['ce_increase']:+.3f} | {r['kl']:.3f} |" if spliced else "")

    lines += [row(str(int(r["layer"])), r) for _, r in report.iterrows()]
    lines.append(row("mean", report.mean(numeric_only=True)))
    return "\n".join(lines)
