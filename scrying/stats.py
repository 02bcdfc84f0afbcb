"""Statistics every instrument reports: bootstrap intervals, paired tests, rank correlations.

* :func:`bootstrap_means` / :func:`interval`: percentile bootstrap (Efron 1979) of a mean over
  prompts: draw ``n_resamples`` seeded resamples of the prompt indices (with replacement), the
  mean of each, and the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles.
* :func:`paired_difference`: the mean of ``a - b`` over paired items with its bootstrap interval
  and a two-sided sign-flip permutation p-value (``scipy.stats.permutation_test`` with
  ``permutation_type="samples"``: under the null each pair's labels are exchangeable).
* :func:`spearman`, :func:`pearson`: a correlation with a percentile-bootstrap interval over
  items (pairs resampled together).

Every resample is drawn from a :class:`torch.Generator` (or ``numpy`` ``default_rng``) seeded
by :class:`BootstrapConfig.seed`, so a figure reproduces exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import einops
import numpy as np
import torch
from scipy import stats as sps

from scrying.axes import Float, Tensor
from scrying.errors import ConfigError, InvalidInputError


@dataclass(frozen=True, kw_only=True)
class BootstrapConfig:
    """Percentile bootstrap over prompts (or items)."""

    n_resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_resamples < 1:
            raise ConfigError(f"BootstrapConfig.n_resamples must be >= 1, got {self.n_resamples}")
        if not 0.0 < self.confidence < 1.0:
            raise ConfigError(f"BootstrapConfig.confidence must be in (0, 1), got {self.confidence}")

    @property
    def quantiles(self) -> tuple[float, float]:
        alpha = (1 - self.confidence) / 2
        return alpha, 1 - alpha


def _resample_index(n: int, config: BootstrapConfig) -> torch.Tensor:
    gen = torch.Generator().manual_seed(config.seed)
    return torch.randint(n, (config.n_resamples, n), generator=gen)


def bootstrap_means(
    values: Float[Tensor, "*item prompt"], config: BootstrapConfig
) -> Float[Tensor, " sample *item"]:
    """Mean over prompts of each bootstrap resample: a resample is how many times it draws each
    prompt, so its mean is ``counts @ values / n`` (no ``item x sample x prompt`` tensor)."""
    n = values.shape[-1]
    index = _resample_index(n, config)
    counts = torch.zeros(config.n_resamples, n, dtype=values.dtype).scatter_add_(
        1, index, torch.ones(index.shape, dtype=values.dtype)
    )
    return einops.einsum(counts, values, "sample prompt, ... prompt -> sample ...") / n


def interval(values: Float[Tensor, "*item prompt"], config: BootstrapConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower and upper percentile-bootstrap bounds of the mean over the last axis."""
    means = bootstrap_means(values.double(), config)
    bounds = np.quantile(means.numpy(), list(config.quantiles), axis=0)  # torch.quantile caps the size
    return torch.as_tensor(bounds[0]), torch.as_tensor(bounds[1])


@dataclass(frozen=True)
class Estimate:
    """A statistic with its percentile-bootstrap interval over ``n`` items."""

    value: float
    ci_low: float
    ci_high: float
    n: int
    confidence: float

    def to_json(self) -> dict[str, float]:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high, "n": self.n,
                "confidence": self.confidence}


@dataclass(frozen=True)
class PairedTest:
    """Mean of ``a - b`` over paired items, its interval, and a two-sided permutation p-value."""

    difference: Estimate
    p_value: float


def _as_array(values: object) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().double().cpu().numpy().ravel()
    return np.asarray(values, dtype=float).ravel()


def _paired_arrays(a: object, b: object, *, what: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_array(a), _as_array(b)
    if x.shape != y.shape:
        raise InvalidInputError(f"{what} needs paired values of one length, got {x.size} and {y.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InvalidInputError(f"{what} needs finite values (got NaN or inf)")
    return x, y


def paired_difference(a: object, b: object, config: BootstrapConfig | None = None) -> PairedTest:
    """Is ``a`` different from ``b`` on the same items? (bootstrap interval of the mean
    difference; exact or seeded Monte-Carlo sign-flip p-value)."""
    config = config or BootstrapConfig()
    x, y = _paired_arrays(a, b, what="paired_difference")
    if x.size < 2:
        raise InvalidInputError(f"paired_difference needs at least 2 pairs, got {x.size}")
    d = torch.from_numpy(x - y)
    low, high = interval(d, config)
    result = sps.permutation_test(
        (x, y),
        lambda u, v, axis: np.mean(u - v, axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=min(config.n_resamples * 10, 9999),
        alternative="two-sided",
        random_state=np.random.default_rng(config.seed),
    )
    estimate = Estimate(float(d.mean()), float(low), float(high), int(x.size), config.confidence)
    return PairedTest(estimate, float(result.pvalue))


def _rank_rows(values: np.ndarray) -> np.ndarray:
    return sps.rankdata(values, axis=-1)  # average ranks for ties, as spearmanr


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xc = x - x.mean(-1, keepdims=True)
    yc = y - y.mean(-1, keepdims=True)
    denominator = np.sqrt((xc * xc).sum(-1) * (yc * yc).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (xc * yc).sum(-1) / denominator, np.nan)


def _correlation(x: np.ndarray, y: np.ndarray, config: BootstrapConfig, *, ranks: bool) -> Estimate:
    n = x.size
    nan = float("nan")
    if n < 2:
        return Estimate(nan, nan, nan, n, config.confidence)
    prepare = _rank_rows if ranks else (lambda v: v)
    value = float(_pearson_rows(prepare(x)[None], prepare(y)[None])[0])
    if n < 3:  # two points always correlate perfectly: no interval to speak of
        return Estimate(value, nan, nan, n, config.confidence)
    index = _resample_index(n, config).numpy()
    samples = _pearson_rows(prepare(x[index]), prepare(y[index]))
    samples = samples[np.isfinite(samples)]  # a resample of one repeated item has no correlation
    if samples.size == 0:
        return Estimate(value, nan, nan, n, config.confidence)
    low, high = np.quantile(samples, list(config.quantiles))
    return Estimate(value, float(low), float(high), n, config.confidence)


def spearman(x: object, y: object, config: BootstrapConfig | None = None) -> Estimate:
    """Spearman rank correlation (``scipy.stats.spearmanr``'s value) with a bootstrap interval."""
    a, b = _paired_arrays(x, y, what="spearman")
    return _correlation(a, b, config or BootstrapConfig(), ranks=True)


def pearson(x: object, y: object, config: BootstrapConfig | None = None) -> Estimate:
    """Pearson correlation with a bootstrap interval."""
    a, b = _paired_arrays(x, y, what="pearson")
    return _correlation(a, b, config or BootstrapConfig(), ranks=False)
