"""A head sweep sharded by layer over the workers of a :mod:`scrying.batch` pool (``scrying
ablate --ray``).

Phases of :func:`sharded_sweep`:

1. **Load**: every worker loads the model once and tokenizes the prompts (:class:`AblationWork`);
   a first item, with no heads, brings back the clean metric and the model's shape.
2. **Sweep**: one item per layer with heads the journal has not finished; a worker sweeps that
   layer's heads with :func:`~scrying.ablation.sweep.head_sweep`, which batches a layer's heads
   exactly as the in-process sweep does (so the effects are the same floats where the torch
   thread count is the same). The driver appends each head's per-prompt effects to the journal
   (:mod:`~scrying.ablation.resume`'s records, settings and file) in layer order.
3. **Table**: the journal's and the new heads' effects in one
   :class:`~scrying.ablation.sweep.SweepResult`, heads layer-major.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from scrying.ablation.config import AblationConfig
from scrying.ablation.replace import Head
from scrying.ablation.resume import sweep_journal, sweep_settings
from scrying.ablation.sweep import SweepResult, head_sweep
from scrying.axes import Model
from scrying.batch import PoolStats, RayConfig, log_throughput, open_pool
from scrying.journal import model_fingerprint
from scrying.models import LoadConfig, load_model
from scrying.prompt_sets import PromptRecord, PromptSet, prompt_set


@dataclass(frozen=True)
class LayerEffects:
    """A worker's answer: the clean metric per prompt, the swept heads' per-prompt effects and
    the model's ``(n_layers, n_heads)``."""

    clean: torch.Tensor
    effects: dict[Head, torch.Tensor]
    shape: tuple[int, int]


@dataclass(frozen=True)
class AblationWork:
    """The work of one sweep, sent to every worker: the model, the prompt file's records and
    the sweep's settings (no progress bar on a worker: the driver has one). An item's payload
    is the heads of one layer."""

    model: str
    load_config: LoadConfig
    records: tuple[PromptRecord, ...]
    config: AblationConfig

    def load(self) -> tuple[Model, PromptSet]:
        model = load_model(self.model, self.load_config)
        return model, prompt_set(model, list(self.records))

    def fingerprint(self, state: tuple[Model, PromptSet]) -> str:
        return model_fingerprint(state[0])

    def run(self, state: tuple[Model, PromptSet], heads: tuple[Head, ...]) -> LayerEffects:
        model, prompts = state
        result = head_sweep(model, prompts, self.config, heads=list(heads))
        return LayerEffects(result.clean, {h: result.effects[h[0], h[1]].clone() for h in heads},
                            (model.cfg.n_layers, model.cfg.n_heads))


def sharded_sweep(
    model: str,
    prompts_file: Path,
    records: list[PromptRecord],
    config: AblationConfig,
    journal_path: Path | None,
    load: LoadConfig,
    ray: RayConfig,
) -> tuple[SweepResult, PoolStats]:
    """Every head's effects, swept by layer on the Ray cluster ``ray`` (see the module
    docstring); with ``journal_path``, resumable as the in-process sweep is."""
    work = AblationWork(model, load, tuple(records), replace(config, progress=False))
    with open_pool(work, ray) as pool:
        _, first = next(iter(pool.results([("clean", ())], progress=False)))
        n_layers, n_heads = first.shape
        heads = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
        effects = torch.full((n_layers, n_heads, len(records)), math.nan)
        journal = None
        if journal_path is not None:
            settings = sweep_settings(model, prompts_file, config, len(records))
            settings["model_fingerprint"] = pool.identity["model_fingerprint"]
            journal = sweep_journal(journal_path, settings)
            journal.resume_note(len(heads), "heads")
            for (layer, head), record in journal.done.items():
                effects[layer, head] = torch.tensor(record["effects"], dtype=effects.dtype)
        done = set(journal.done) if journal is not None else set()
        items = [(layer, tuple((layer, h) for h in range(n_heads) if (layer, h) not in done)) for layer in range(n_layers)]
        items = [(layer, todo) for layer, todo in items if todo]
        for _, part in pool.results(items, progress=config.progress, desc="ablation sweep"):
            for (layer, head), values in part.effects.items():
                if journal is not None:
                    journal.append({"layer": layer, "head": head, "effects": [float(v) for v in values.double().tolist()]})
                    values = torch.tensor(journal.done[(layer, head)]["effects"], dtype=effects.dtype)
                effects[layer, head] = values
        log_throughput(pool.stats, "layers")
    return SweepResult(effects, first.clean, tuple(heads), config.metric, config.method), pool.stats
