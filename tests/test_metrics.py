"""The one implementation of each metric (scrying.metrics) against torch's own formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from scrying.errors import ConfigError, InvalidInputError
from scrying.metrics import (
    KL,
    DemeanedLogit,
    LogitDiff,
    Loss,
    Metric,
    TargetLogProb,
    metric_values,
)

GEN = torch.Generator().manual_seed(0)
LOGITS = torch.randn(3, 4, 11, generator=GEN, dtype=torch.float64)  # row pos d_vocab
PROMPTS = torch.tensor([0, 1, 1])  # rows 1 and 2 are two runs of prompt 1


def test_every_metric_is_one_protocol():
    metrics = [
        LogitDiff(correct=(1,), incorrect=(2,)),
        TargetLogProb(target=(3,)),
        Loss(target=(3,)),
        KL(clean_logprobs=torch.zeros(2, 11)),
        DemeanedLogit(target=5),
    ]
    assert all(isinstance(m, Metric) for m in metrics)
    assert [m.name for m in metrics] == ["logit-diff", "logprob", "loss", "kl", "demeaned-logit"]


def test_logit_diff_per_prompt_tokens():
    metric = LogitDiff(correct=(1, 4), incorrect=(2, 7), position=-2)
    last = LOGITS[:, -2]
    expected = torch.stack([last[0, 1] - last[0, 2], last[1, 4] - last[1, 7], last[2, 4] - last[2, 7]])
    assert torch.allclose(metric(LOGITS, PROMPTS), expected, atol=0, rtol=0)


def test_logprob_and_loss_are_cross_entropy():
    target = torch.tensor([3, 9])
    ce = F.cross_entropy(LOGITS[:, -1].float(), target[PROMPTS], reduction="none")
    assert torch.allclose(Loss(target=(3, 9))(LOGITS, PROMPTS), ce, atol=1e-6)
    assert torch.allclose(TargetLogProb(target=(3, 9))(LOGITS, PROMPTS), -ce, atol=1e-6)


def test_kl_is_torch_kl_div():
    clean = torch.randn(2, 11, generator=GEN, dtype=torch.float64).log_softmax(-1)
    got = KL(clean_logprobs=clean)(LOGITS, PROMPTS)
    run = LOGITS[:, -1].log_softmax(-1)
    expected = F.kl_div(run, clean[PROMPTS], log_target=True, reduction="none").sum(-1)
    assert torch.allclose(got.double(), expected, atol=1e-6)
    assert float(KL(clean_logprobs=LOGITS[:, -1].log_softmax(-1))(LOGITS, torch.arange(3)).abs().max()) < 1e-6


def test_demeaned_logit():
    got = DemeanedLogit(target=5, position=0)(LOGITS, PROMPTS)
    assert torch.allclose(got, LOGITS[:, 0, 5] - LOGITS[:, 0].mean(-1))
    shifted = DemeanedLogit(target=5, position=0)(LOGITS + 3.0, PROMPTS)
    assert torch.allclose(got, shifted)


def test_bad_metric_input():
    with pytest.raises(ConfigError, match="unknown metric 'accuracy'"):
        metric_values("accuracy", LOGITS[:, -1], torch.zeros(3, dtype=torch.long))
    with pytest.raises(InvalidInputError, match="logit-diff metric needs an incorrect token"):
        metric_values("logit-diff", LOGITS[:, -1], torch.zeros(3, dtype=torch.long))
    with pytest.raises(ConfigError, match="LogitDiff.correct and .incorrect"):
        LogitDiff(correct=(1, 2), incorrect=(3,))
    with pytest.raises(ConfigError, match="TargetLogProb.target must be non-empty"):
        TargetLogProb(target=())
