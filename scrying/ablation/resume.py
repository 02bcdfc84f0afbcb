"""Resumable head sweeps: one :class:`~scrying.journal.Journal` record per finished head.

The journal's settings (:func:`sweep_settings`) are the model's identity, the prompt file's
digest and the sweep's metric, method, positions, seed and number of prompts; each record is
``{"layer": 3, "head": 1, "effects": [...]}`` (per-prompt effects). :func:`resume_sweep` sweeps
only the heads the journal has not finished, saving each as soon as it is done.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from scrying.ablation.config import AblationConfig
from scrying.ablation.replace import Head, all_heads, check_heads
from scrying.ablation.sweep import SweepResult, head_sweep
from scrying.axes import Float, Model, Tensor
from scrying.journal import Journal, Record, file_digest, model_identity
from scrying.prompt_sets import PromptSet

logger = logging.getLogger(__name__)


def sweep_settings(
    model_name: str, prompts_file: Path | str, config: AblationConfig, n_prompts: int, *, model: Model | None = None
) -> dict[str, Any]:
    """What must match for two runs' effects to belong to one table."""
    return {
        **model_identity(model_name, model),
        "prompts_sha256": file_digest(prompts_file),
        "metric": config.metric,
        "method": config.method,
        "positions": config.positions,
        "seed": config.seed,
        "n_prompts": n_prompts,
    }


def sweep_journal(path: Path | str, settings: dict[str, Any]) -> Journal:
    """The journal of a head sweep: records keyed by ``(layer, head)``, each with one effect
    per prompt."""

    def check(record: Record) -> None:
        effects = [float(v) for v in record["effects"]]
        if len(effects) != settings["n_prompts"]:
            raise ValueError(f"{len(effects)} effects, expected {settings['n_prompts']}")

    return Journal(path, settings, key=lambda r: (int(r["layer"]), int(r["head"])), check=check, what="sweep")


def resume_sweep(
    model: Model,
    prompts: PromptSet,
    config: AblationConfig,
    journal: Journal,
    *,
    heads: list[Head] | None = None,
) -> SweepResult:
    """:func:`head_sweep` over the heads ``journal`` has not finished, saving each as it is done;
    the result holds the journal's earlier heads too."""
    heads = check_heads(model, all_heads(model) if heads is None else heads)
    todo = [h for h in heads if h not in journal.done]
    journal.resume_note(len(heads), "heads")

    def save(head: Head, effects: Float[Tensor, " prompt"]) -> None:
        journal.append({"layer": head[0], "head": head[1], "effects": [float(v) for v in effects.double().tolist()]})

    result = head_sweep(model, prompts, config, heads=todo, on_head=save)
    return with_heads(result, {h: journal.done[h]["effects"] for h in heads}, order=heads)


def with_heads(result: SweepResult, effects: Mapping[Head, list[float]], *, order: list[Head]) -> SweepResult:
    """``result`` with the per-prompt effects of ``effects`` filled in, heads in ``order``."""
    table = result.effects.clone()
    for (layer, head), values in effects.items():
        table[layer, head] = torch.tensor(values, dtype=table.dtype)
    return SweepResult(table, result.clean, tuple(order), result.metric, result.method)
