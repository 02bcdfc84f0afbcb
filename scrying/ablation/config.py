"""Configuration of a head-ablation experiment (one frozen dataclass per operation)."""

from __future__ import annotations

from dataclasses import dataclass

from scrying.errors import ConfigError
from scrying.metrics import METRICS

METHODS = ("zero", "mean", "resample")
POSITIONS = ("all", "last", "mask")


@dataclass(frozen=True, kw_only=True)
class AblationConfig:
    """What to ablate, how, and what to measure.

    ``metric``: ``logit-diff`` (correct minus incorrect logit at the last position), ``logprob``
    (log-probability of the target), ``loss`` (next-token cross-entropy over the sequence) or
    ``kl`` (KL(clean || ablated) of the next-token distribution), as in :mod:`scrying.metrics`.
    ``method``: replace a head's ``z`` by ``zero``, its positional ``mean`` over reference prompts
    (the mean at each position; not EAP's ``mean-input`` baseline, a run on the mean input
    embedding), or a ``resample`` of it from another prompt. ``positions``: ablate at ``all`` positions, the ``last``, or the
    prompt set's own ``ablate_mask``. ``batch_size``: rows (ablations x prompts) per forward.
    """

    metric: str = "logit-diff"
    method: str = "mean"
    positions: str = "all"
    batch_size: int = 64
    read_chunk: int = 256
    seed: int = 0
    progress: bool = False

    def __post_init__(self) -> None:
        for name, allowed in (("metric", METRICS), ("method", METHODS), ("positions", POSITIONS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"AblationConfig.{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}"
                )
        if self.batch_size < 1:
            raise ConfigError(f"AblationConfig.batch_size must be >= 1, got {self.batch_size}")
        if self.read_chunk < 1:
            raise ConfigError(f"AblationConfig.read_chunk must be >= 1, got {self.read_chunk}")
