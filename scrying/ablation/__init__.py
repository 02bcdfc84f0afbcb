"""Attention-head ablation: sweeps, error bars, gradient importance, head detection, pruning.

Map: :mod:`.config` (what to ablate and measure), :mod:`.data` (prompt sets and files),
:mod:`.forward` (resume at a layer, stop before the unembedding), :mod:`.replace` (zero / mean /
resample values and the ``z`` hook), :mod:`.metrics` (logit-diff, logprob, loss, KL),
:mod:`.sweep` (batched sweep and the reference loop), :mod:`.journal` (resumable sweeps), :mod:`.stats` (bootstrap intervals),
:mod:`.gradient` (attribution patching, Michel et al. head-mask gradients), :mod:`.detect`
(previous-token / duplicate-token / induction heads), :mod:`.pruning` (pruning curve),
:mod:`.plots` (plotly figures).
"""

from scrying.ablation.config import AblationConfig, BootstrapConfig
from scrying.ablation.data import (
    PromptRecord,
    PromptSet,
    ioi_records,
    prompt_set,
    read_prompt_file,
    repeated_tokens,
)
from scrying.ablation.detect import detect_heads, head_scores
from scrying.ablation.gradient import compare_with_ablation, gradient_importance
from scrying.ablation.plots import effect_heatmap, pruning_figure
from scrying.ablation.pruning import importance_order, pruning_curve
from scrying.ablation.replace import ablated, all_heads, check_heads
from scrying.ablation.sweep import SweepResult, head_sweep, head_sweep_loop

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
