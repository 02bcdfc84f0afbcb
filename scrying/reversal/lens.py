"""Where the answer becomes decodable, per layer and direction: the logit lens (nostalgebraist
2020) through the model's own final norm and unembedding.

Phases of :func:`lens_table`:

1. **Record** the residual stream after every block (``resid_post``) at the last prompt position
   of each pair's forward and reverse prompt (right-padded batches;
   :func:`scrying.models.adapter.final_resid` with recording hooks, no full-vocabulary logits).
2. **Decode** each recorded row with the final norm and unembedding
   (:func:`scrying.models.adapter.logits_at`) and read the answer's first token: its
   log-probability and its rank in the vocabulary (1 = top). The last layer's row is the
   model's own prediction.
3. :func:`decodable_layers`: per pair and direction, the first layer from which the first answer
   token stays within the top ``top`` tokens (NaN when it never does).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from scrying.axes import Float, Model, Tensor
from scrying.continuations import continuation_tokens
from scrying.errors import ConfigError
from scrying.models.adapter import final_resid, logits_at, model_device
from scrying.prompt_sets import pad_id, pad_right
from scrying.prompts import tokenize
from scrying.reversal.pairs import DIRECTIONS, Pair
from scrying.sites import Component, Site


@dataclass(frozen=True, kw_only=True)
class LensConfig:
    """Prompts per forward pass of the lens."""

    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"LensConfig.batch_size must be >= 1, got {self.batch_size}")


@torch.no_grad()
def last_position_resid(model: Model, prompts: list[list[int]]) -> Float[Tensor, "batch layer d_model"]:
    """The residual stream after every block at each prompt's last position (prompts of token
    ids, right-padded into one batch)."""
    tokens = pad_right([torch.tensor(p) for p in prompts], pad_id(model)).to(model_device(model))
    last = torch.tensor([len(p) - 1 for p in prompts], device=tokens.device)
    rows = torch.arange(len(prompts), device=tokens.device)
    store: dict[int, torch.Tensor] = {}

    def keep(layer: int):  # noqa: ANN202
        def fn(act: torch.Tensor, hook: object) -> None:
            store[layer] = act[rows, last].detach()

        return fn

    n_layers = model.cfg.n_layers
    read = torch.zeros(tokens.shape, dtype=torch.bool, device=tokens.device)
    read[rows, last] = True
    sites = {Site(Component.RESID_POST, layer): keep(layer) for layer in range(n_layers - 1)}
    final = final_resid(model, tokens, forward=sites, read=read)
    store[n_layers - 1] = final[rows, last]
    return torch.stack([store[layer] for layer in range(n_layers)], dim=1)


@torch.no_grad()
def lens_table(model: Model, pairs: list[Pair], config: LensConfig | None = None) -> pd.DataFrame:
    """One row per pair, direction and layer: ``logprob`` and ``rank`` of the answer's first
    token decoded from the residual stream after that layer at the last prompt position."""
    config = config or LensConfig()
    out = []
    for direction in DIRECTIONS:
        for start in range(0, len(pairs), config.batch_size):
            chunk = list(range(start, min(start + config.batch_size, len(pairs))))
            prompts = [tokenize(model, pairs[i].prompt(direction))[0].tolist() for i in chunk]
            first = torch.tensor([continuation_tokens(model, pairs[i].answer(direction), what="answer")[0] for i in chunk])
            resid = last_position_resid(model, prompts)  # batch layer d_model
            n_layers = resid.shape[1]
            flat = resid.reshape(-1, resid.shape[-1])
            logits = torch.cat(list(logits_at(model, flat))).double().log_softmax(-1)
            target = first.repeat_interleave(n_layers).to(logits.device)
            value = logits.gather(1, target[:, None])[:, 0]
            rank = 1 + (logits > value[:, None]).sum(-1)
            for k, (lp, r) in enumerate(zip(value.tolist(), rank.tolist(), strict=True)):
                i, layer = chunk[k // n_layers], k % n_layers
                out.append({"index": i, "relation": pairs[i].relation, "direction": direction, "layer": layer,
                            "logprob": lp, "rank": int(r)})
    return pd.DataFrame(out, columns=["index", "relation", "direction", "layer", "logprob", "rank"])


def decodable_layers(table: pd.DataFrame, top: int = 10) -> pd.DataFrame:
    """Per pair and direction, the first layer from which the answer's first token ranks within
    ``top`` at every later layer (NaN when it is not there at the last layer)."""
    rows = []
    for (index, direction), part in table.sort_values("layer").groupby(["index", "direction"]):
        inside = (part["rank"] <= top).tolist()
        layer = float("nan")
        for k in range(len(inside) - 1, -1, -1):
            if not inside[k]:
                break
            layer = float(part["layer"].iloc[k])
        rows.append({"index": index, "relation": part["relation"].iloc[0], "direction": direction, "layer": layer})
    return pd.DataFrame(rows)
