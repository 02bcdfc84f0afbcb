"""Pruning curve (Michel et al. 2019, fig. 3): ablate heads cumulatively, least important first.

Phases: order heads by ascending importance (``|effect|`` of the single-head sweep by default);
replica k of a batched forward ablates the first ``k`` heads together (hooks on ``z`` of every
layer, one head mask per replica); read the metric; the curve is metric vs fraction ablated.
"""

from __future__ import annotations

from collections.abc import Sequence

import einops
import pandas as pd
import torch
from tqdm.auto import tqdm

from scrying.ablation.config import AblationConfig
from scrying.ablation.reads import clean_logprobs_at, per_prompt
from scrying.ablation.replace import Head, check_heads, layer_hooks, read_and_ablate, replacement_z
from scrying.axes import Model
from scrying.models.adapter import final_resid
from scrying.prompt_sets import PromptSet
from scrying.sites import hooks


def importance_order(table: pd.DataFrame, column: str = "effect") -> list[Head]:
    """Heads from least to most important by ``|column|``."""
    ranked = table.assign(_key=table[column].abs()).sort_values("_key", kind="stable")
    return [(int(r.layer), int(r.head)) for r in ranked.itertuples()]


@torch.no_grad()
def pruning_curve(
    model: Model,
    prompts: PromptSet,
    order: Sequence[Head],
    config: AblationConfig | None = None,
    *,
    reference: PromptSet | None = None,
) -> pd.DataFrame:
    """Columns: n_ablated, fraction, metric (mean over prompts), last_head."""
    config = config or AblationConfig()
    order = check_heads(model, order)
    n_total = model.cfg.n_layers * model.cfg.n_heads
    plan, pos_mask = read_and_ablate(prompts, config)
    sources = replacement_z(model, prompts, config, reference)
    clean_lp = None
    if config.metric == "kl":
        clean_lp = clean_logprobs_at(model, plan, final_resid(model, prompts.tokens), chunk=config.read_chunk)
    masks = torch.zeros(len(order) + 1, model.cfg.n_layers, model.cfg.n_heads, dtype=torch.bool)
    for k, (layer, head) in enumerate(order, start=1):
        masks[k:, layer, head] = True
    batch = prompts.n_prompts
    prompt_chunk = min(batch, config.batch_size)
    per_forward = max(1, config.batch_size // prompt_chunk)
    results = []
    for k0 in tqdm(range(0, len(masks), per_forward), disable=not config.progress, desc="pruning"):
        group = masks[k0 : k0 + per_forward]
        r = group.shape[0]
        total = torch.zeros(r, dtype=torch.float64)
        for b0 in range(0, batch, prompt_chunk):
            index = torch.arange(b0, min(batch, b0 + prompt_chunk))
            tokens = einops.repeat(prompts.tokens[index], "b pos -> (r b) pos", r=r)
            rows = einops.repeat(index, "b -> (r b)", r=r)
            chunk_sources = [s[index] for s in sources]
            with hooks(model, layer_hooks(model, group, pos_mask[index], chunk_sources)):
                resid = final_resid(model, tokens, read=plan.mask[rows])
            values = per_prompt(model, plan, rows, resid, clean_logprobs=clean_lp, chunk=config.read_chunk)
            total += einops.reduce(values.double(), "(r b) -> r", "sum", r=r)
        results.append(total / batch)
    metric = torch.cat(results)
    return pd.DataFrame(
        {
            "n_ablated": range(len(masks)),
            "fraction": [k / n_total for k in range(len(masks))],
            "metric": metric.double().numpy(),
            "last_head": ["-"] + [f"L{layer}H{head}" for layer, head in order],
        }
    )
