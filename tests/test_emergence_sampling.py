"""Sampled outputs (scrying.emergence.sampling): the frequency of sampling a target equals its
teacher-forced probability (what p^L claims), the draws are seeded, and a sampled study scores
sampled exact match."""

from __future__ import annotations

import math

import pytest
from scipy.stats import binomtest

from scrying.continuations import non_text_tokens
from scrying.emergence.item_scoring import ScoringConfig, score_items
from scrying.emergence.sampling import sample_continuations
from scrying.emergence.tasks import Item
from scrying.errors import ConfigError
from tests.tiny_models import tiny

ITEMS = [Item("a", "t1 t2", " t3"), Item("b", "t4", " t5 t6")]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny("gemma3", tmp_path_factory.mktemp("tiny-sampling"))


def test_sampled_frequency_is_the_teacher_forced_probability(model):
    """Of 600 samples of a one-token and a two-token target, the fraction equal to the target
    lies within the 99.9% Clopper-Pearson interval of exp(sum of its teacher-forced log-probs),
    the probability of sampling it (p^L for the two-token one); the banned tokens are removed
    from the softmax, so the logprob is taken over the same support only when none is banned."""
    scored = score_items(model, ITEMS, ScoringConfig(samples=600, sample_seed=3, text_only=False, batch_size=300))
    for s in scored:
        assert s.samples is not None and len(s.samples) == 600
        hits = sum(x.strip() == s.target.strip() for x in s.samples)
        probability = math.exp(sum(s.target_logprobs))
        interval = binomtest(hits, 600).proportion_ci(0.999, method="exact")
        assert interval.low <= probability <= interval.high, (s.item, hits, probability)


def test_samples_are_seeded_and_banned_tokens_never_drawn(model):
    prompts = [[1, 5, 6], [1, 7]]
    banned = non_text_tokens(model)
    one = sample_continuations(model, prompts, [3, 2], n_samples=5, seed=0, batch_size=4, banned=banned)
    again = sample_continuations(model, prompts, [3, 2], n_samples=5, seed=0, batch_size=4, banned=banned)
    other = sample_continuations(model, prompts, [3, 2], n_samples=5, seed=1, batch_size=4, banned=banned)
    assert one == again and one != other
    assert [len(x) for x in one] == [5, 5] and all(len(t) == 3 for t in one[0]) and all(len(t) == 2 for t in one[1])
    assert not {t for rows in one for row in rows for t in row} & set(banned)
    with pytest.raises(ConfigError, match="n_samples must be a positive integer, got 0"):
        sample_continuations(model, prompts, [1, 1], n_samples=0, seed=0, batch_size=2)
    with pytest.raises(ConfigError, match="ScoringConfig.samples must be a non-negative integer, got -1"):
        ScoringConfig(samples=-1)
