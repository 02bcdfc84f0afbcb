"""Head ablation on toy models: batched equals looped, upstream untouched, induction circuit found."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

from scrying.ablation import (
    AblationConfig,
    ablated,
    detect_heads,
    head_sweep,
    head_sweep_loop,
    repeated_tokens,
)
from scrying.ablation.replace import ablate_mask, clean_z, replacement_z
from scrying.models import load_model
from scrying.sites import Component, Site, hooks
from scrying.toys import RepeatedSequenceTask, ToyModelConfig, TrainConfig, cached_toy
from tests.conftest import cache_config


@pytest.fixture(scope="module")
def induction_toy():
    """Like the shared ``toy_model`` (same random-period task, 300 steps, seed 0) but with 2 heads
    per layer, so the circuit is concentrated: with 4 heads the previous-token role is spread over
    layer-0 heads 1-3 and the induction role over layer-1 heads 1-3, whose ablation effects are
    within each other's intervals. Here layer 0 has one previous-token head and layer 1 two
    induction heads. ~20 s on an idle machine, then cached."""
    task = RepeatedSequenceTask(n_content=64, half_len=20)
    result = cached_toy(cache_config().cache_dir, task, ToyModelConfig(n_heads=2), TrainConfig(steps=300, eval_every=100, seed=0))
    assert result.accuracy > 0.9, result.history
    return load_model(str(result.out_dir))


@pytest.mark.parametrize("method", ["zero", "mean", "resample"])
@pytest.mark.parametrize("metric", ["loss", "kl"])
def test_batched_sweep_equals_loop(toy_model, method, metric):
    prompts = repeated_tokens(toy_model, 6, 20, seed=3)
    config = AblationConfig(metric=metric, method=method, batch_size=10)  # uneven chunks
    batched = head_sweep(toy_model, prompts, config)
    looped = head_sweep_loop(toy_model, prompts, config)
    assert torch.allclose(batched.clean, looped.clean, atol=1e-5)
    assert (batched.effects - looped.effects).abs().max() < 1e-5
    assert batched.effects.abs().max() > 1e-4  # the ablations do something


@pytest.mark.parametrize("method", ["zero", "mean", "resample"])
def test_logit_diff_reads_two_unembedding_columns(toy_model, method):
    """The batched logit-diff read (final norm, then only the two columns of the unembedding)
    equals the difference of the model's own full logits, and the loop, for every head."""
    from scrying.models.adapter import final_resid, logit_columns

    base = repeated_tokens(toy_model, 6, 20, seed=8)
    last = base.tokens.shape[1] - 1
    prompts = dataclasses.replace(
        base,
        target_mask=None,
        correct=base.tokens[:, 20],  # the token after the earlier copy of the last one
        incorrect=base.tokens[:, 5],
    )
    with torch.no_grad():
        logits = toy_model(prompts.tokens)[:, last]
        resid = final_resid(toy_model, prompts.tokens)[:, last]
        columns = torch.stack([prompts.correct, prompts.incorrect], dim=1)
        assert torch.allclose(logit_columns(toy_model, resid, columns), logits.gather(1, columns), atol=1e-5)
        demeaned = logits.gather(1, columns) - logits.mean(-1, keepdim=True)  # the whole vocabulary's mean
        assert torch.allclose(logit_columns(toy_model, resid, columns, demean=True), demeaned, atol=1e-5)
    config = AblationConfig(metric="logit-diff", method=method, batch_size=10)
    batched = head_sweep(toy_model, prompts, config)
    looped = head_sweep_loop(toy_model, prompts, config)
    assert torch.allclose(batched.clean, looped.clean, atol=1e-5)
    assert (batched.effects - looped.effects).abs().max() < 1e-5
    assert batched.effects.abs().max() > 1e-3


def test_ablation_leaves_upstream_activations_unchanged(toy_model):
    prompts = repeated_tokens(toy_model, 3, 20, seed=4)
    config = AblationConfig(method="resample", metric="loss")
    sources = replacement_z(toy_model, prompts, config)
    mask = ablate_mask(prompts, config)
    layer, head = 1, 2
    with torch.no_grad():
        _, clean = toy_model.run_with_cache(prompts.tokens)
        with ablated(toy_model, [(layer, head)], mask, sources):
            _, patched = toy_model.run_with_cache(prompts.tokens)
    z = f"blocks.{layer}.attn.hook_z"
    for name, act in clean.items():
        upstream = name.startswith("blocks.0.") or name in ("hook_embed",)
        upstream |= name.startswith(f"blocks.{layer}.") and any(
            part in name for part in ("hook_resid_pre", "ln1", "hook_q", "hook_k", "hook_v", "pattern", "scores")
        )
        if upstream:
            assert torch.equal(act, patched[name]), name
    others = [h for h in range(toy_model.cfg.n_heads) if h != head]
    assert torch.equal(clean[z][:, :, others], patched[z][:, :, others])
    assert torch.equal(patched[z][:, :, head], sources[layer][:, :, head])
    assert not torch.allclose(clean["blocks.1.hook_resid_post"], patched["blocks.1.hook_resid_post"])


def test_batched_sweep_reuses_clean_upstream(toy_model):
    """In the batched run, layer L's resid_pre is the cached clean one and earlier blocks do not run."""
    prompts = repeated_tokens(toy_model, 2, 20, seed=5)
    seen: list[int] = []
    resid: list[torch.Tensor] = []

    def record(layer):
        def fn(act, hook):
            seen.append(layer)
            if layer == 1:
                resid.append(act.clone())

        return fn

    sites = {Site(Component.RESID_PRE, 0): record(0), Site(Component.RESID_PRE, 1): record(1)}
    with hooks(toy_model, sites):
        head_sweep(toy_model, prompts, AblationConfig(metric="loss", method="zero"), heads=[(1, 0), (1, 3)])
    # one clean pass runs both blocks; the sweep over layer 1 runs block 1 only, on the clean input
    assert seen.count(0) == 1 and seen.count(1) == 2
    assert torch.equal(resid[1], torch.cat([resid[0], resid[0]]))


def test_induction_and_previous_token_heads_rank_first(induction_toy):
    """Ablation (loss on the repeated half, fixed period 15) ranks first the previous-token head
    and the induction head that the attention-pattern detector names, in that layer order, and
    both are clearly above every head the detector names as neither."""
    table = detect_heads(induction_toy, n_prompts=16, half_len=15, seed=1)
    ranked = table.sort_values("effect", ascending=False)
    top_two = {(int(r.layer), int(r.head)) for r in ranked.head(2).itertuples()}
    prev = table.loc[table.previous_token.idxmax()]
    induction = table.loc[table.induction.idxmax()]
    assert top_two == {(int(prev["layer"]), int(prev["head"])), (int(induction["layer"]), int(induction["head"]))}
    assert prev["layer"] < induction["layer"]
    assert prev.previous_token > 0.5 and induction.induction > 0.3
    circuit = (table.previous_token > 0.3) | (table.induction > 0.3)
    assert (~circuit).any()  # some head is neither, and it matters less than both circuit heads
    assert ranked.iloc[1].ci_low > table[~circuit].ci_high.max()
    assert ranked.iloc[1].effect > 0.1  # ablating the circuit breaks induction


def test_gradient_importance_is_first_order_ablation(toy_model):
    """Attribution = the slope of the metric along the ablation direction, for every head.

    The finite difference must read the same positions as the metric: ``repeated_tokens`` sets a
    ``target_mask`` (the repeated half), so ``metric="loss"`` averages those 19 positions, whereas
    ``return_type="loss"`` averages all 40; comparing with the latter gave the 0.53x mismatch.
    """
    from scrying.ablation import compare_with_ablation, gradient_importance
    from scrying.ablation.reads import per_prompt, read_plan

    prompts = repeated_tokens(toy_model, 1, 20, seed=6)
    config = AblationConfig(metric="loss", method="zero")
    grad = gradient_importance(toy_model, prompts, config)
    # zero ablation: attribution = -(z . g) and Michel's mask gradient = |z . g| (one prompt)
    assert torch.allclose(
        torch.tensor(grad.attribution.abs().values), torch.tensor(grad.mask_gradient.values), atol=1e-6
    )
    # a tiny ablation (scale the head's z by 1 - eps) moves the metric by eps times the attribution
    plan, index, eps = read_plan(prompts, config.metric), torch.arange(1), 1e-3
    sources = [z * (1 - eps) for z in clean_z(toy_model, prompts.tokens)]
    mask = ablate_mask(prompts, config)
    with torch.no_grad():
        clean = per_prompt(toy_model, plan, index, toy_model(prompts.tokens), are_logits=True)
        for row in grad.itertuples():
            with ablated(toy_model, [(row.layer, row.head)], mask, sources):
                nudged = per_prompt(toy_model, plan, index, toy_model(prompts.tokens), are_logits=True)
            slope = float(nudged - clean) / eps
            assert abs(slope - row.attribution) < 0.05 * abs(row.attribution) + 2e-4, (row.layer, row.head)
    assert grad.attribution.abs().max() > 1e-2  # the check above is not vacuous
    table = head_sweep(toy_model, prompts, config).table()
    joined, attribution, mask = compare_with_ablation(grad, table)
    assert len(joined) == 8 and attribution.n == 8 and mask.n == 8
    expected = float(pd.Series(joined["effect"]).rank().corr(pd.Series(joined["attribution"]).rank()))
    assert abs(attribution.spearman.value - expected) < 1e-9
    expected = float(pd.Series(joined["effect"].abs()).rank().corr(pd.Series(joined["mask_gradient"]).rank()))
    assert abs(mask.spearman.value - expected) < 1e-9
    assert attribution.spearman.ci_low <= attribution.spearman.value <= attribution.spearman.ci_high


def test_pruning_curve_endpoints(toy_model):
    from scrying.ablation import importance_order, pruning_curve

    prompts = repeated_tokens(toy_model, 3, 20, seed=7)
    config = AblationConfig(metric="loss", method="mean", batch_size=8)
    sweep = head_sweep(toy_model, prompts, config)
    order = importance_order(sweep.table())
    curve = pruning_curve(toy_model, prompts, order, config)
    assert len(curve) == 9 and curve.fraction.iloc[-1] == 1.0
    assert abs(curve.metric.iloc[0] - float(sweep.clean.mean())) < 1e-5
    # one head ablated: the curve's first step equals that head's single-head sweep
    first = order[0]
    single = float(sweep.clean.mean() + sweep.effects[first[0], first[1]].mean())
    assert abs(curve.metric.iloc[1] - single) < 1e-5
    # prompts split over forwards (batch_size 2 < 3 prompts) give the same curve
    chunked = pruning_curve(toy_model, prompts, order, dataclasses.replace(config, batch_size=2))
    assert (chunked.metric - curve.metric).abs().max() < 1e-5


def test_last_block_mlp_runs_at_read_positions_only(toy_model):
    """With read positions given, the final residual is unchanged there, the last block's MLP
    is skipped elsewhere, and the model is restored afterwards."""
    from scrying.models.adapter import final_resid

    prompts = repeated_tokens(toy_model, 4, 12, seed=11)
    read = torch.zeros_like(prompts.real)
    read[:, -1] = True
    read[1, 5] = True
    with torch.no_grad():
        full = final_resid(toy_model, prompts.tokens)
        partial = final_resid(toy_model, prompts.tokens, read=read)
        again = final_resid(toy_model, prompts.tokens)
    assert torch.allclose(partial[read], full[read], atol=1e-6)
    assert (partial[~read] - full[~read]).abs().amax(-1).min() > 1e-4
    assert torch.equal(again, full)


def test_detector_scores_of_ideal_patterns():
    """Known ground truth: a pure previous-token, duplicate-token and induction pattern each
    score 1 on their own score and ~0 on the others."""
    from scrying.ablation.detect import _scores

    n, size = 5, 11  # BOS + two copies of 5 tokens
    ideal = {name: torch.zeros(size, size) for name in ("previous_token", "duplicate_token", "induction")}
    for q in range(size):
        ideal["previous_token"][q, max(q - 1, 0)] = 1
        ideal["duplicate_token"][q, q - n if q > n else q] = 1
        ideal["induction"][q, q - n + 1 if q > n else q] = 1
    pattern = torch.stack(list(ideal.values()))[None]  # batch head q k
    scores = _scores(pattern, n)
    for i, name in enumerate(ideal):
        for score, values in scores.items():
            assert abs(float(values[i]) - (1.0 if score == name else 0.0)) < 1e-6, (name, score)


def test_detector_refuses_other_prompts(toy_model):
    from scrying.errors import InvalidInputError

    prompts = repeated_tokens(toy_model, 2, 6, seed=0)
    with pytest.raises(InvalidInputError, match="2 \\* half_len \\+ 1 = 15"):
        detect_heads(toy_model, half_len=7, prompts=prompts)
    shuffled = dataclasses.replace(prompts, tokens=prompts.tokens.flip(1))
    with pytest.raises(InvalidInputError, match="not a sequence of 6 tokens repeated twice"):
        detect_heads(toy_model, half_len=6, prompts=shuffled)


@pytest.mark.parametrize("method", ["zero", "mean", "resample"])
def test_gradient_importance_is_one_forward(toy_model, method):
    from scrying.ablation import gradient_importance

    prompts = repeated_tokens(toy_model, 3, 10, seed=2)
    calls = []
    with hooks(toy_model, [(Site(Component.RESID_PRE, 0), lambda act, hook: calls.append(act.shape[0]))]):
        table = gradient_importance(toy_model, prompts, AblationConfig(metric="loss", method=method))
    assert calls == [3] and len(table) == toy_model.cfg.n_layers * toy_model.cfg.n_heads
