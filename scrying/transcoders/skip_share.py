"""How much of a graph's attribution flows through the transcoders' skip connections instead of
their features (issue 21: a transcoder with an affine skip ``x @ W_skip.T`` can explain its MLP
linearly, and a graph whose attribution runs through the skip says little about features).

Phases of :func:`skip_shares`:

1. **Parts**: on the clean run, each layer's replacement output split into what the graph can
   attribute to: ``features`` (``features @ W_dec``), ``skip`` (``x @ W_skip.T``), ``bias``
   (``b_dec``) and ``error`` (the MLP's real output minus the reconstruction); they sum to the
   real MLP output (checked).
2. **Gradient**: one pass of the local replacement model (attention patterns, norm scales and
   TopK masks frozen; :func:`scrying.attribution.attribution_pass` with the onward copies
   attached, so effects through later layers count) with a zero tap added to every layer's output
   after the transcoder replaced it; one backward pass of the target (the demeaned logit of the
   graph's token at the last position) gives each tap's gradient ``g_l``, the target's total
   derivative by that layer's output.
3. **Shares**: ``c = sum over d of g_l * part`` per layer, position and part, the part's total
   effect on the target (exact, not a first-order estimate: the frozen model is linear in each
   layer's output). Per layer and part: the signed sum over positions and the sum of absolute
   values; the skip share of a layer is ``sum |c_skip| / sum over parts |c_part|``, and the
   graph's is the same ratio over all layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from scrying.attribution import CleanRun, Graph, attribution_pass, clean_run, frozen_demeaned_logits
from scrying.axes import Model, Tensor
from scrying.errors import InvalidInputError
from scrying.models.adapter import final_resid
from scrying.prompts import tokenize
from scrying.sites import hooks, recorded
from scrying.transcoders.basis import TranscoderBasis

PARTS = ("features", "skip", "bias", "error")


@dataclass(frozen=True)
class SkipShares:
    """Per layer and part: ``signed`` and ``absolute`` total effects on the target (summed over
    positions), and the skip share of each layer and of the whole graph."""

    table: pd.DataFrame  # layer, part, signed, absolute
    target: float  # the replacement model's target value on the clean run

    @property
    def by_layer(self) -> pd.Series:
        wide = self.table.pivot(index="layer", columns="part", values="absolute")
        return wide["skip"] / wide[list(PARTS)].sum(axis=1)

    @property
    def share(self) -> float:
        total = self.table.absolute.sum()
        return float(self.table[self.table.part == "skip"].absolute.sum() / total) if total > 0 else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {"share": self.share, "by_layer": [float(v) for v in self.by_layer.tolist()],
                "table": self.table.to_dict(orient="list"), "target": self.target}


def output_parts(model: Model, clean: CleanRun, basis: TranscoderBasis) -> dict[str, Tensor]:
    """Phase 1: ``{part: [layer pos d_model]}`` on the clean run (model dtype)."""
    tset = basis.set
    n_layers = model.cfg.n_layers
    sites = [tset.input_site(ly) for ly in range(n_layers)] + [tset.output_site(ly) for ly in range(n_layers)]
    with torch.no_grad(), recorded(model, sites, clone=True) as store:
        final_resid(model, clean.tokens)
    if clean.state.error is None:
        raise InvalidInputError("skip shares need the clean run's error terms (a transcoder basis's clean state)")
    parts: dict[str, list[Tensor]] = {p: [] for p in PARTS}
    for layer, tc in enumerate(tset.transcoders):
        x = store[tset.input_site(layer)][0].to(tc.dtype)
        dtype = store[tset.output_site(layer)].dtype
        parts["features"].append((clean.features[layer].to(tc.dtype) @ tc.W_dec).to(dtype))
        parts["skip"].append((x @ tc.W_skip.T).to(dtype) if tc.W_skip is not None else torch.zeros_like(x, dtype=dtype))
        parts["bias"].append(tc.b_dec.to(dtype).expand(x.shape[0], -1))
        parts["error"].append(clean.state.error[layer].to(dtype))
    out = {p: torch.stack(v).detach() for p, v in parts.items()}
    real = torch.stack([store[tset.output_site(ly)][0] for ly in range(n_layers)])
    total = sum(out.values())
    if not torch.allclose(total, real, rtol=1e-3, atol=1e-4 * float(real.abs().max().clamp(min=1.0))):
        raise InvalidInputError(f"the replacement's parts do not sum to the MLP output (off by {float((total - real).abs().max()):.3g})")
    return out


def skip_shares(model: Model, clean: CleanRun, basis: TranscoderBasis, token: int) -> SkipShares:
    """Phases 1-3 for the target ``token`` (its demeaned logit at the last position)."""
    parts = output_parts(model, clean, basis)
    taps: dict[int, Tensor] = {}

    def tap(layer: int):
        def fn(act: Tensor, hook: Any) -> Tensor:
            leaf = torch.zeros_like(act, requires_grad=True)
            taps[layer] = leaf
            return act + leaf

        return fn

    extra = [(basis.set.output_site(ly), tap(ly)) for ly in range(model.cfg.n_layers)]
    with torch.enable_grad():
        with attribution_pass(model, clean, 1, cut=False), hooks(model, extra):
            final = final_resid(model, clean.tokens)[:, -1]
        target = frozen_demeaned_logits(model, clean, final, torch.tensor([[token]]))[0, 0]  # outside: its own norm scale
        target.backward()
    rows = []
    for layer in range(model.cfg.n_layers):
        grad = taps[layer].grad[0]  # pos d_model
        for part in PARTS:
            c = (grad.double() * parts[part][layer].double()).sum(-1)  # pos
            rows.append({"layer": layer, "part": part, "signed": float(c.sum()), "absolute": float(c.abs().sum())})
    return SkipShares(pd.DataFrame(rows), float(target.detach()))


def graph_skip_shares(model: Model, graph: Graph, basis: TranscoderBasis) -> SkipShares:
    """:func:`skip_shares` of a traced graph: its prompt's clean run and its target logit."""
    try:
        target = next(n for n in graph.nodes if n.kind == "logit" and n.is_target)
    except StopIteration:
        raise InvalidInputError("graph has no target logit node") from None
    clean = clean_run(model, tokenize(model, graph.prompt), basis)
    return skip_shares(model, clean, basis, int(target.feature))
