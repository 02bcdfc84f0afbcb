"""Configuration of the component-level circuit operations (one frozen dataclass each)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from scrying.errors import ConfigError

Method = Literal["eap", "eap-ig"]
Baseline = Literal["corrupt", "zero", "mean-input"]


@dataclass(frozen=True, kw_only=True)
class EAPConfig:
    """How to score edges with EAP / EAP-IG.

    ``method``: ``"eap"`` (Syed et al. 2023: one gradient at the clean input) or ``"eap-ig"``
    (Hanna et al. 2024: the gradient averaged over ``ig_steps`` points on the straight line from
    the corrupt to the clean embeddings, at ``k / ig_steps`` for ``k = 0 .. ig_steps - 1``).
    ``baseline``: what the corrupted node outputs are: those of the corrupt prompt
    (``"corrupt"``); those of a run whose input embeddings are the clean embeddings' mean over
    every prompt and position (``"mean-input"``: a real run, so EAP-IG's interpolation, which
    starts at that input, and the corrupted outputs agree; not head ablation's positional
    ``mean``, which replaces one head's output by its mean at each position); or zero
    (``"zero"``: every node's output zeroed, while EAP-IG's interpolation starts from a zero
    input, whose downstream outputs are not zero: use it for EAP rather than EAP-IG). ``chunk``: rows (prompt x IG step) per forward pass; each row is replicated
    once per attention head, so a forward holds ``chunk * n_heads`` sequences (three times that
    with ``split_qkv``). ``split_qkv``: score edges into each head's query, key and value inputs
    separately (receivers ``a{l}.h{h}<q>``, ``<k>``, ``<v>``, as in Hanna et al.'s repository).
    """

    method: Method = "eap-ig"
    ig_steps: int = 5
    baseline: Baseline = "corrupt"
    chunk: int = 8
    split_qkv: bool = False
    progress: bool = False

    def __post_init__(self) -> None:
        if self.method not in ("eap", "eap-ig"):
            raise ConfigError(f"EAPConfig.method must be 'eap' or 'eap-ig', got {self.method!r}")
        if self.ig_steps < 1:
            raise ConfigError(f"EAPConfig.ig_steps must be >= 1, got {self.ig_steps}")
        if self.baseline not in ("corrupt", "zero", "mean-input"):
            raise ConfigError(
                f"EAPConfig.baseline must be 'corrupt', 'zero' or 'mean-input', got {self.baseline!r}"
            )
        if self.chunk < 1:
            raise ConfigError(f"EAPConfig.chunk must be >= 1, got {self.chunk}")


@dataclass(frozen=True, kw_only=True)
class PatchConfig:
    """How to run exact patching: ``chunk`` patch variants per forward pass."""

    chunk: int = 8
    progress: bool = False

    def __post_init__(self) -> None:
        if self.chunk < 1:
            raise ConfigError(f"PatchConfig.chunk must be >= 1, got {self.chunk}")


@dataclass(frozen=True, kw_only=True)
class FaithfulnessConfig:
    """Which circuit sizes to evaluate: ``n_points`` values of k (edges kept), log-spaced
    from ``min_edges`` to all edges, plus any explicit ``ks``."""

    n_points: int = 12
    min_edges: int = 1
    ks: tuple[int, ...] = ()
    chunk: int = 8
    progress: bool = False

    def __post_init__(self) -> None:
        if self.n_points < 1 and not self.ks:
            raise ConfigError(f"FaithfulnessConfig.n_points must be >= 1, got {self.n_points}")
        if self.min_edges < 0:
            raise ConfigError(f"FaithfulnessConfig.min_edges must be >= 0, got {self.min_edges}")
        if any(k < 0 for k in self.ks):
            raise ConfigError(f"FaithfulnessConfig.ks must be >= 0, got {self.ks}")
        if self.chunk < 1:
            raise ConfigError(f"FaithfulnessConfig.chunk must be >= 1, got {self.chunk}")


@dataclass(frozen=True, kw_only=True)
class SelectionConfig:
    """Which edges a circuit keeps before dead-node pruning (:mod:`scrying.circuits.selection`):
    the ``top_edges`` edges by ``|score|``, or every edge with ``|score| >= min_abs_score``.
    Exactly one of the two is set. (A count of edges and an absolute score: not the cumulative
    fractions ``node_threshold`` / ``edge_threshold`` of feature-graph pruning,
    :class:`~scrying.attribution.influence.PruneConfig`.)"""

    top_edges: int | None = None
    min_abs_score: float | None = None

    def __post_init__(self) -> None:
        if (self.top_edges is None) == (self.min_abs_score is None):
            raise ConfigError(
                "SelectionConfig needs exactly one of top_edges and min_abs_score, "
                f"got top_edges={self.top_edges!r}, min_abs_score={self.min_abs_score!r}"
            )
        if self.top_edges is not None and (isinstance(self.top_edges, bool) or self.top_edges < 0):
            raise ConfigError(f"SelectionConfig.top_edges must be an integer >= 0, got {self.top_edges!r}")
        if self.min_abs_score is not None and not (0.0 <= self.min_abs_score < float("inf")):
            raise ConfigError(f"SelectionConfig.min_abs_score must be finite and >= 0, got {self.min_abs_score!r}")
