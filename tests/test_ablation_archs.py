"""The batched sweep equals the one-head loop on every architecture (float64, exact to 1e-9),
for every metric, ablation and position choice, on prompts of different lengths (right padding),
with and without a reference set."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from scrying.ablation import AblationConfig, PromptRecord, head_sweep, head_sweep_loop, prompt_set
from scrying.ablation.replace import clean_z, replacement_z
from scrying.errors import InvalidInputError
from tests.tiny_models import ARCHS, tiny

RECORDS = [
    PromptRecord("t1 t5 t2 t7 t1 t5 t2", " t7", " t5"),
    PromptRecord("t3 t9", " t3", " t9"),
    PromptRecord("t8 t2 t6 t1", " t2", " t6"),
    PromptRecord("t4 t4 t0 t11 t12 t13 t4", " t0", " t12"),
    PromptRecord("t6 t10 t6 t10 t6", " t10", " t6"),
]
REFERENCE = [
    PromptRecord("t2 t3 t2 t3 t2 t3 t2 t3"),
    PromptRecord("t9 t8"),
    PromptRecord("t5 t14 t5 t15 t1"),
]


@pytest.fixture(scope="module", params=ARCHS)
def model(request, tmp_path_factory):
    return tiny(request.param, tmp_path_factory.mktemp("tiny-ablation"))


def _prompts(model):
    prompts = prompt_set(model, RECORDS)
    gen = torch.Generator().manual_seed(5)
    mask = (torch.rand(prompts.tokens.shape, generator=gen) < 0.5) & prompts.real
    mask[:, 1] = True  # at least one ablated position per prompt
    return dataclasses.replace(prompts, ablate_mask=mask)


@pytest.mark.parametrize("method", ["zero", "mean", "resample"])
def test_batched_equals_loop_everywhere(model, method):
    prompts = _prompts(model)
    assert len(set(prompts.lengths.tolist())) > 2  # padding is exercised
    references = [None] if method == "zero" else [None, prompt_set(model, REFERENCE)]
    for metric, positions, reference in itertools.product(
        ["logit-diff", "logprob", "loss", "kl"], ["all", "last", "mask"], references
    ):
        config = AblationConfig(metric=metric, method=method, positions=positions, batch_size=7)
        batched = head_sweep(model, prompts, config, reference=reference)
        looped = head_sweep_loop(model, prompts, config, reference=reference)
        where = f"{metric}, {positions}, reference={reference is not None}"
        assert not batched.effects.isnan().any(), where
        assert torch.allclose(batched.clean, looped.clean, atol=1e-9, rtol=0), where
        assert (batched.effects - looped.effects).abs().max() < 1e-9, where
        assert batched.effects.abs().max() > 1e-6, where  # the ablations do something (KL is small)


def _clean(model, prompts):
    return clean_z(model, prompts.tokens)


def test_resample_sources_are_long_enough_and_other_prompts(model):
    prompts = _prompts(model)
    z = _clean(model, prompts)
    config = AblationConfig(method="resample", positions="all")
    values = replacement_z(model, prompts, config)
    for layer in range(model.cfg.n_layers):
        for b, length in enumerate(prompts.lengths.tolist()):
            hits = [
                j for j in range(prompts.n_prompts)
                if prompts.lengths[j] >= length and torch.equal(values[layer][b, :length], z[layer][j, :length])
            ]
            assert hits and b not in hits


def test_last_position_values_are_end_aligned(model):
    """positions='last': a prompt's last position takes the reference prompts' own last-position
    value (their mean, or one resampled prompt's), not whatever sits at the same index."""
    from scrying.ablation.replace import replacement_z

    prompts = _prompts(model)
    reference = prompt_set(model, REFERENCE)
    z_ref = _clean(model, reference)
    ends = [zl[torch.arange(reference.n_prompts), reference.lengths - 1] for zl in z_ref]  # ref head d
    last = prompts.lengths - 1
    rows = torch.arange(prompts.n_prompts)
    mean = replacement_z(model, prompts, AblationConfig(method="mean", positions="last"), reference)
    resample = replacement_z(model, prompts, AblationConfig(method="resample", positions="last"), reference)
    for layer in range(model.cfg.n_layers):
        assert torch.allclose(mean[layer][rows, last], ends[layer].mean(0).expand(len(rows), -1, -1))
        for b in range(prompts.n_prompts):
            assert any(torch.equal(resample[layer][b, last[b]], ends[layer][j]) for j in range(reference.n_prompts))


def test_resample_without_a_long_enough_source_names_the_prompt(model):
    prompts = prompt_set(model, RECORDS[:3])  # prompt 1 is the only one of its length
    with pytest.raises(InvalidInputError, match=r"resample ablation of prompt 1 \(8 tokens\) needs another prompt with at least 8 tokens"):
        head_sweep(model, prompts, AblationConfig(method="resample"))
    head_sweep(model, prompts, AblationConfig(method="resample", positions="last"))  # end-aligned: fine
