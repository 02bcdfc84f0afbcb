"""Bad input to head ablation: clear errors that name the line or the head."""

from __future__ import annotations

import json

import pytest
import torch

from scrying.ablation import (
    AblationConfig,
    BootstrapConfig,
    PromptRecord,
    head_sweep,
    ioi_records,
    prompt_set,
    read_prompt_file,
    repeated_tokens,
)
from scrying.cli.main import main
from scrying.errors import ConfigError, InvalidInputError, PromptError, SiteError
from scrying.stats import interval


def _write(tmp_path, lines):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join((json.dumps(x) if not isinstance(x, str) else x) + "\n" for x in lines))
    return path


def test_empty_prompt_file(tmp_path):
    path = _write(tmp_path, ["", "   "])
    with pytest.raises(InvalidInputError, match="has no prompts"):
        read_prompt_file(path)
    assert main(["ablate", "--prompts", str(path)]) == 2


def test_missing_correct_names_the_line(tmp_path, capsys):
    path = _write(tmp_path, [{"prompt": "a b", "correct": " x", "incorrect": " y"}, {"prompt": "c d", "incorrect": " y"}])
    with pytest.raises(InvalidInputError, match=r"prompts.jsonl line 2: missing 'correct'"):
        read_prompt_file(path, need_answers=True)
    assert read_prompt_file(path)[1].correct is None  # fine for metrics without answers
    assert main(["ablate", "--prompts", str(path)]) == 2
    assert "line 2: missing 'correct'" in capsys.readouterr().err


def test_bad_json_and_empty_prompt_name_the_line(tmp_path):
    with pytest.raises(InvalidInputError, match="line 1: not valid JSON"):
        read_prompt_file(_write(tmp_path, ["{nope"]))
    with pytest.raises(PromptError, match="line 2"):
        read_prompt_file(_write(tmp_path, [{"prompt": "x"}, {"prompt": "  "}]))


def test_multi_token_answer_names_the_line(tmp_path, toy_model):
    path = _write(
        tmp_path,
        [{"prompt": "t1 t2", "correct": " t3", "incorrect": " t4"}, {"prompt": "t1 t2", "correct": " t3 t5", "incorrect": " t4"}],
    )
    with pytest.raises(PromptError, match=r"line 2: 'correct' ' t3 t5' is 2 tokens"):
        prompt_set(toy_model, read_prompt_file(path, need_answers=True))


def test_unknown_head(toy_model):
    prompts = repeated_tokens(toy_model, 2, 5)
    with pytest.raises(SiteError, match=r"unknown head \(layer 2, head 0\).*layers 0..1"):
        head_sweep(toy_model, prompts, AblationConfig(metric="loss"), heads=[(2, 0)])
    with pytest.raises(SiteError, match=r"unknown head \(layer 0, head 4\).*heads 0..3"):
        head_sweep(toy_model, prompts, AblationConfig(metric="loss"), heads=[(0, 4)])


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="AblationConfig.metric"):
        AblationConfig(metric="accuracy")
    with pytest.raises(ConfigError, match="AblationConfig.method"):
        AblationConfig(method="noise")
    with pytest.raises(ConfigError, match="AblationConfig.batch_size"):
        AblationConfig(batch_size=0)
    with pytest.raises(ConfigError, match="BootstrapConfig.confidence"):
        BootstrapConfig(confidence=1.0)


def test_logit_diff_needs_answers(toy_model):
    with pytest.raises(InvalidInputError, match="logit-diff metric needs"):
        head_sweep(toy_model, repeated_tokens(toy_model, 2, 5), AblationConfig(metric="logit-diff"))


def test_bootstrap_interval_covers_mean_and_shrinks():
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(2, 400, generator=gen) + torch.tensor([[0.0], [3.0]])
    low, high = interval(values, BootstrapConfig(n_resamples=500))
    assert torch.all(low < values.mean(-1)) and torch.all(values.mean(-1) < high)
    # a 95% interval of a mean of 400 unit normals is about +-1.96/20 wide
    assert torch.allclose(high - low, torch.full((2,), 2 * 1.96 / 20, dtype=high.dtype), atol=0.05)


def test_bootstrap_means_equal_resampled_means():
    """The counts form equals averaging the resampled prompts themselves (same seeded draws)."""
    from scrying.stats import bootstrap_means

    values = torch.randn(3, 5, 17, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    config = BootstrapConfig(n_resamples=40, seed=3)
    index = torch.randint(17, (40, 17), generator=torch.Generator().manual_seed(3))
    expected = values[..., index].mean(-1).movedim(-1, 0)
    assert torch.allclose(bootstrap_means(values, config), expected, atol=1e-12)


def test_heatmap_hover_names_the_confidence_level():
    from scrying.ablation import effect_heatmap
    from scrying.ablation.sweep import SweepResult, effect_table

    effects = torch.randn(2, 2, 6, generator=torch.Generator().manual_seed(0))
    result = SweepResult(effects, torch.zeros(6), ((0, 0), (0, 1), (1, 0), (1, 1)), "loss", "mean")
    table = effect_table(result, BootstrapConfig(n_resamples=50, confidence=0.9))
    assert (table.confidence == 0.9).all()
    assert "90% CI" in effect_heatmap(table).data[0].hovertemplate


def test_packaged_ioi_prompts():
    records = ioi_records()
    assert len(records) >= 20
    assert all(r.correct and r.incorrect and r.correct != r.incorrect for r in records)


def test_target_mask_on_the_last_position_without_answers(toy_model):
    """The last position predicts no token of the prompt: reading it for loss/logprob without an
    answer would score a wrapped-around token, so it is refused (KL needs no target)."""
    import dataclasses

    prompts = repeated_tokens(toy_model, 2, 5, seed=0)
    mask = prompts.target_mask.clone()
    mask[1, -1] = True
    bad = dataclasses.replace(prompts, target_mask=mask)
    for metric in ("loss", "logprob"):
        with pytest.raises(InvalidInputError, match="target_mask of prompt 2 selects its last position"):
            head_sweep(toy_model, bad, AblationConfig(metric=metric), heads=[(0, 0)])
    head_sweep(toy_model, bad, AblationConfig(metric="kl"), heads=[(0, 0)])


def test_kl_is_finite_where_the_clean_distribution_has_zeros():
    from scrying.metrics import metric_values

    clean = torch.tensor([[0.0, float("-inf"), float("-inf")]])  # all mass on token 0
    ablated = torch.tensor([[1.0, 0.5, -20.0]])
    kl = metric_values("kl", ablated, torch.tensor([0]), None, clean)
    assert torch.allclose(kl, -ablated.log_softmax(-1)[:, 0])


def test_an_ablation_no_read_position_sees_is_refused(toy_model):
    """Without answers loss/logprob read positions that have a next token; ablating only the last
    position cannot change them (causal), so the sweep refuses instead of reporting zeros."""
    records = [PromptRecord("t1 t5 t2 t7"), PromptRecord("t3 t9 t4")]
    prompts = prompt_set(toy_model, records)
    for metric in ("loss", "logprob"):
        with pytest.raises(InvalidInputError, match="prompt 1: the .* metric reads positions up to 3 but heads are ablated only from position 4"):
            head_sweep(toy_model, prompts, AblationConfig(metric=metric, positions="last"))
    # KL needs no target: it reads every real position, the last included
    result = head_sweep(toy_model, prompts, AblationConfig(metric="kl", positions="last"))
    assert result.effects.abs().max() > 0
