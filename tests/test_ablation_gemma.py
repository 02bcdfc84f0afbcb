"""Head ablation on the default model (Gemma 3 270M: 4 query heads share 1 KV head)."""

from __future__ import annotations

import pytest

from scrying.ablation import (
    AblationConfig,
    BootstrapConfig,
    detect_heads,
    head_sweep,
    head_sweep_loop,
    ioi_records,
    prompt_set,
)
from scrying.models import LoadConfig, load_model


@pytest.fixture(scope="module")
def ioi(gemma):
    return prompt_set(gemma, ioi_records())


@pytest.fixture(scope="module")
def gemma64():
    """The default model in float64, so that the comparison below is of the algorithms, not of
    float32 summation order (in float32 the two differ by ~3e-5 over all 72 heads)."""
    return load_model("gemma-3-270m", LoadConfig(dtype="float64"))


@pytest.mark.parametrize("method", ["zero", "mean", "resample"])
def test_batched_equals_loop_on_grouped_query_heads(gemma64, method):
    prompts = prompt_set(gemma64, ioi_records()[:4])
    heads = [(0, 1), (9, 0), (9, 3), (17, 2)]  # query heads sharing one KV head
    config = AblationConfig(metric="logit-diff", method=method, batch_size=8)
    batched = head_sweep(gemma64, prompts, config, heads=heads)
    looped = head_sweep_loop(gemma64, prompts, config, heads=heads)
    swept = tuple(zip(*heads, strict=True))
    assert not batched.effects[swept].isnan().any()
    assert (batched.effects[swept] - looped.effects[swept]).abs().max() < 1e-5
    assert batched.effects[swept].abs().max() > 0.1
    assert batched.clean.mean() > 1.0  # the model prefers the indirect object


def test_ioi_table_has_intervals(gemma, ioi):
    """All 72 heads over the packaged IOI prompts, mean ablation, with bootstrap intervals."""
    table = head_sweep(gemma, ioi, AblationConfig(metric="logit-diff", method="mean")).table(
        BootstrapConfig(n_resamples=1000)
    )
    assert len(table) == 72 and (table.n_prompts >= 20).all()
    assert (table.ci_low <= table.effect).all() and (table.effect <= table.ci_high).all()
    carrier = table.sort_values("effect").iloc[0]  # the head whose loss hurts the answer most
    assert carrier.effect < -0.5 and carrier.ci_high < 0
    assert (table.ci_high > table.ci_low).all()


@pytest.mark.slow
def test_gemma_has_induction_heads(gemma):
    """The detector's best induction head of the default model is confirmed by ablation: the
    loss on the repeated half rises when it is ablated (interval above zero)."""
    table = detect_heads(gemma, n_prompts=8, half_len=20, seed=0)
    best = table.sort_values("induction", ascending=False).iloc[0]
    assert best.induction > 0.3 and best.ci_low > 0


@pytest.mark.slow
def test_full_sweep_equals_loop(gemma64):
    """What the benchmark times: all 72 heads over the 32 IOI prompts, batched and looped (float64)."""
    prompts = prompt_set(gemma64, ioi_records())
    config = AblationConfig(metric="logit-diff", method="mean", batch_size=128)
    batched = head_sweep(gemma64, prompts, config)
    looped = head_sweep_loop(gemma64, prompts, config)
    assert not batched.effects.isnan().any() and prompts.n_prompts == 32
    assert (batched.effects - looped.effects).abs().max() < 1e-5
