"""Top-activating contexts of any per-token unit (a neuron, a transcoder feature) over corpus windows.

What Neuronpedia shows beside a feature: the text where it fires hardest, the activating token
marked and every shown token shaded by the unit's activation on it. One pass over ``windows``
(``[batch seq]`` token ids), a batch at a time: ``read`` turns the recorded activations of
``sites`` into ``[batch seq unit]``; per unit the ``k`` largest activations are kept with their
window's whole activation row, so no second pass is needed to shade the context.

Used by transcoder labels (:mod:`scrying.transcoders.labels`) and by graph node cards
(:mod:`scrying.attribution.cards`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from scrying.axes import Float, Int, Model, Tensor
from scrying.errors import ConfigError
from scrying.models.adapter import final_resid
from scrying.sites import Site, recorded


@dataclass(frozen=True, kw_only=True)
class ContextConfig:
    k: int = 5  # contexts per unit
    before: int = 8  # tokens shown before the activating one
    after: int = 2  # and after it
    batch: int = 16
    skip_first: bool = True  # never pick position 0 (BOS, or a first token read without context)

    def __post_init__(self) -> None:
        for name in ("k", "batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ContextConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("before", "after"):
            if getattr(self, name) < 0:
                raise ConfigError(f"ContextConfig.{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class Context:
    """One context: ``tokens`` (decoded one by one), the unit's activation on each (``values``),
    and the index ``at`` of the activating token, whose activation is ``activation``."""

    activation: float
    tokens: list[str]
    values: list[float]
    at: int

    def to_json(self) -> dict:
        return {"activation": self.activation, "tokens": self.tokens, "values": self.values, "at": self.at}

    @property
    def text(self) -> str:
        return "".join(self.tokens[: self.at + 1])


Read = Callable[[dict[Site, Tensor]], Float[Tensor, "batch seq unit"]]


@torch.no_grad()
def top_contexts(
    model: Model,
    windows: Int[Tensor, "batch seq"],
    sites: Iterable[Site],
    read: Read,
    n_units: int,
    config: ContextConfig | None = None,
) -> list[list[Context]]:
    """Per unit (``read``'s last axis, ``n_units`` long), its top ``config.k`` contexts in
    ``windows`` with a positive activation, largest first (see the module docstring)."""
    config = config or ContextConfig()
    sites = list(sites)
    seq = windows.shape[1]
    values = torch.zeros(0, n_units, dtype=torch.float64)  # k unit
    places = torch.zeros(0, n_units, dtype=torch.long)  # window * seq + pos
    rows = torch.zeros(0, n_units, seq, dtype=torch.float64)  # the window's activations
    units = torch.arange(n_units)
    for start in range(0, windows.shape[0], config.batch):
        batch = windows[start : start + config.batch]
        with recorded(model, sites) as store:
            final_resid(model, batch)
        acts = read(store).double()  # batch seq unit
        if acts.shape != (batch.shape[0], seq, n_units):
            raise ConfigError(f"top_contexts: read gave shape {tuple(acts.shape)}, expected {(batch.shape[0], seq, n_units)}")
        ranked = acts.clone()
        if config.skip_first:
            ranked[:, 0] = -torch.inf
        flat = ranked.flatten(0, 1)  # (batch seq) unit
        top = flat.topk(min(config.k, flat.shape[0]), dim=0)
        window = top.indices // seq
        new_rows = acts.permute(2, 0, 1)[units[None, :], window]  # k unit seq
        values = torch.cat([values, top.values])
        places = torch.cat([places, top.indices + start * seq])
        rows = torch.cat([rows, new_rows])
        keep = values.topk(min(config.k, values.shape[0]), dim=0).indices
        values, places = values.gather(0, keep), places.gather(0, keep)
        rows = rows[keep, units[None, :]]
    decode = model.tokenizer.decode
    first = 1 if config.skip_first else 0
    out: list[list[Context]] = []
    for j in range(n_units):
        mine = []
        for r, (value, place) in enumerate(zip(values[:, j].tolist(), places[:, j].tolist(), strict=True)):
            if not value > 0:
                continue
            w, p = divmod(place, seq)
            lo, hi = max(first, p - config.before), min(seq, p + config.after + 1)
            ids = windows[w, lo:hi].tolist()
            mine.append(Context(value, [decode([t]) for t in ids], [float(f"{v:.4g}") for v in rows[r, j, lo:hi].tolist()], p - lo))
        out.append(mine)
    return out
