"""What ``trace`` builds and how: one frozen config for the whole pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from scrying.attribution.feature_graph import FeatureGraphConfig
from scrying.attribution.influence import PruneConfig
from scrying.attribution.validation import ValidationConfig
from scrying.circuits.config import SelectionConfig
from scrying.errors import ConfigError
from scrying.prompts import check_text


@dataclass(frozen=True, kw_only=True)
class TraceConfig:
    """What to trace and how."""

    level: Literal["neurons", "components"] = "neurons"
    target: str | None = None  # default: the model's top-1 next token
    corrupt: str | None = None  # components level: corrupted prompt (default: the mean-input baseline)
    split_qkv: bool = False  # components level: score each head's q, k and v inputs separately
    features: FeatureGraphConfig = field(default_factory=FeatureGraphConfig)  # neurons level
    circuit: SelectionConfig = field(default_factory=lambda: SelectionConfig(top_edges=100))  # components level
    prune: PruneConfig = field(default_factory=PruneConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def __post_init__(self) -> None:
        if self.level not in ("neurons", "components"):
            raise ConfigError(f"TraceConfig.level must be 'neurons' or 'components', got {self.level!r}")
        if self.target is not None:
            check_text(self.target, what="TraceConfig.target")
        if self.corrupt is not None:
            check_text(self.corrupt, what="TraceConfig.corrupt (the corrupted prompt)")
        if self.corrupt is not None and self.level != "components":
            raise ConfigError("TraceConfig.corrupt applies to level 'components' only")
        if self.split_qkv and self.level != "components":
            raise ConfigError("TraceConfig.split_qkv applies to level 'components' only")
