"""On the default model itself (slow): the probe's log-probabilities equal a plain transformers
forward pass of Gemma 3 270M within 1e-3, on real pairs of every shipped relation."""

from __future__ import annotations

import pytest
import torch

from scrying.models import local_hf_dir
from scrying.reversal.pair_scoring import ModelScorer, ReversalConfig, score_chunk
from scrying.reversal.probe import read_pair_files
from scrying.reversal.relations import packaged_relation_files
from tests.conftest import cache_config


@pytest.mark.slow
def test_gemma_logprobs_agree_with_plain_transformers(gemma):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(local_hf_dir("gemma-3-270m", cache_config()), torch_dtype=torch.float32).eval()
    pairs = read_pair_files(packaged_relation_files())
    chosen = [i for i in range(0, len(pairs), 40)]  # some pairs of every relation
    records = score_chunk(ModelScorer(gemma, batch_size=8), pairs, chosen, ReversalConfig(distractors=2))
    tokenizer = gemma.tokenizer
    for i, record in zip(chosen, records, strict=True):
        for direction in ("forward", "reverse"):
            part = record.direction(direction)
            prompt = tokenizer(pairs[i].prompt(direction))["input_ids"]
            for candidate, value in ((part.answer, part.logprob),):
                answer = tokenizer(" " + candidate, add_special_tokens=False)["input_ids"]
                with torch.no_grad():
                    logits = hf(torch.tensor([prompt + answer])).logits[0].double().log_softmax(-1)
                expected = sum(float(logits[len(prompt) + j - 1, t]) for j, t in enumerate(answer))
                assert value == pytest.approx(expected, abs=1e-3), (pairs[i].where, direction)
