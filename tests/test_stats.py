"""The shared statistics (scrying.stats) against independent computations: scipy's
correlations, resamples drawn and scored one by one, and an exact sign-flip test."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats as sps

from scrying.errors import ConfigError, InvalidInputError
from scrying.stats import BootstrapConfig, paired_difference, pearson, spearman


def _data(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = 0.6 * x + rng.normal(size=n)
    y[:5] = np.round(y[:5])  # some ties
    x[5:10] = 1.0
    return x, y


def test_spearman_value_and_interval_equal_resamples_scored_by_scipy():
    x, y = _data()
    config = BootstrapConfig(n_resamples=60, seed=4)
    got = spearman(x, y, config)
    assert got.value == pytest.approx(sps.spearmanr(x, y).statistic, abs=1e-12)
    # the same seeded draws, each resample scored by scipy
    index = torch.randint(len(x), (60, len(x)), generator=torch.Generator().manual_seed(4)).numpy()
    values = np.array([sps.spearmanr(x[i], y[i]).statistic for i in index])
    low, high = np.quantile(values, [0.025, 0.975])
    assert (got.ci_low, got.ci_high) == pytest.approx((low, high), abs=1e-12)
    assert got.ci_low < got.value < got.ci_high and got.n == 40


def test_pearson_equals_numpy():
    x, y = _data(seed=1)
    got = pearson(torch.tensor(x), torch.tensor(y), BootstrapConfig(n_resamples=100))
    assert got.value == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    assert got.ci_low < got.value < got.ci_high


def test_correlation_interval_narrows_with_more_items():
    small = spearman(*_data(20, seed=2), BootstrapConfig(n_resamples=400))
    large = spearman(*_data(400, seed=2), BootstrapConfig(n_resamples=400))
    assert large.ci_high - large.ci_low < 0.5 * (small.ci_high - small.ci_low)


def test_paired_difference_exact_sign_flip_p_value():
    """Five pairs, every difference positive: of the 2^5 sign flips, 2 are as extreme (all + or
    all -), so the exact two-sided p-value is 2/32. The interval is recomputed from the seeded
    resamples, each averaged by numpy, and their percentiles."""
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    d = np.array([0.5, 0.7, 0.2, 0.9, 0.4])
    config = BootstrapConfig(n_resamples=500, seed=7)
    test = paired_difference(a, a - d, config)
    assert test.p_value == pytest.approx(2 / 32, abs=1e-12)
    assert test.difference.value == pytest.approx(0.54)
    index = torch.randint(5, (500, 5), generator=torch.Generator().manual_seed(7)).numpy()
    means = np.array([d[i].mean() for i in index])
    low, high = np.percentile(means, [2.5, 97.5])
    assert (test.difference.ci_low, test.difference.ci_high) == pytest.approx((low, high), abs=1e-12)
    assert test.difference.n == 5 and test.difference.confidence == 0.95


def test_paired_difference_p_value_enumerates_every_sign_flip():
    """Mixed signs, eight pairs: the two-sided p-value is the share of the 2^8 sign flips whose
    mean difference is at least as far from 0 as the observed one, counted by hand."""
    d = np.array([0.9, -0.3, 0.4, 1.1, -0.2, 0.6, 0.05, 0.7])
    b = np.linspace(-1, 1, 8)
    observed = abs(d.mean())
    flips = np.array(list(itertools.product([1.0, -1.0], repeat=8)))
    extreme = int((np.abs((flips * d).mean(1)) >= observed - 1e-12).sum())
    assert 2 < extreme < 256 // 2
    assert paired_difference(b + d, b).p_value == pytest.approx(extreme / 256, abs=1e-12)


def test_paired_difference_sees_a_shift_and_not_noise():
    rng = np.random.default_rng(3)
    a = rng.normal(size=60)
    shifted = paired_difference(a + 0.5 + 0.1 * rng.normal(size=60), a)
    assert shifted.p_value < 0.001 and shifted.difference.ci_low > 0.4
    same = paired_difference(a, a + 0.1 * rng.normal(size=60))
    assert same.p_value > 0.05 and same.difference.ci_low < 0 < same.difference.ci_high


def test_bad_input_is_named():
    with pytest.raises(InvalidInputError, match="spearman needs paired values of one length, got 3 and 2"):
        spearman([1, 2, 3], [1, 2])
    with pytest.raises(InvalidInputError, match="paired_difference needs finite values"):
        paired_difference([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(ConfigError, match="BootstrapConfig.n_resamples"):
        BootstrapConfig(n_resamples=0)
