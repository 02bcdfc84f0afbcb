"""Attention-head ablation: sweeps, error bars, gradient importance, head detection, pruning.

Map: :mod:`.config` (what to ablate and measure), :mod:`.replace` (zero / mean / resample
values and the ``z`` hook), :mod:`.reads` (where the metric is read), :mod:`.sweep` (batched
sweep, the reference loop, the effect table), :mod:`.resume` (resumable sweeps), :mod:`.run` (the ``scrying ablate`` job),
:mod:`.gradient` (attribution patching, Michel et al. head-mask gradients), :mod:`.detect`
(previous-token / duplicate-token / induction heads), :mod:`.head_pruning` (pruning curve),
:mod:`.plots` (plotly figures). Shared layer: prompt sets (:mod:`scrying.prompt_sets`),
metrics (:mod:`scrying.metrics`), statistics (:mod:`scrying.stats`), journals
(:mod:`scrying.journal`), the model adapter (:mod:`scrying.models.adapter`).
"""

from scrying.ablation.config import AblationConfig
from scrying.ablation.detect import detect_heads, head_scores
from scrying.ablation.gradient import compare_with_ablation, gradient_importance
from scrying.ablation.head_pruning import importance_order, pruning_curve
from scrying.ablation.plots import effect_heatmap, pruning_figure
from scrying.ablation.replace import ablated, all_heads, check_heads
from scrying.ablation.sweep import SweepResult, effect_table, head_sweep, head_sweep_loop
from scrying.prompt_sets import (
    PromptRecord,
    PromptSet,
    ioi_records,
    prompt_set,
    read_prompt_file,
    repeated_tokens,
)
from scrying.stats import BootstrapConfig

__all__ = [
    "AblationConfig",
    "BootstrapConfig",
    "PromptRecord",
    "PromptSet",
    "SweepResult",
    "ablated",
    "all_heads",
    "check_heads",
    "compare_with_ablation",
    "detect_heads",
    "effect_table",
    "effect_heatmap",
    "gradient_importance",
    "head_scores",
    "head_sweep",
    "head_sweep_loop",
    "importance_order",
    "ioi_records",
    "prompt_set",
    "pruning_curve",
    "pruning_figure",
    "read_prompt_file",
    "repeated_tokens",
]
