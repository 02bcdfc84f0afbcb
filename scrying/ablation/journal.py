"""A resumable record of a head sweep: one JSON line per finished head.

The first line holds the settings the sweep ran with (model, prompt file digest, metric,
method, positions, seed, number of prompts); every later line one head's per-prompt effects
(``{"layer": 3, "head": 1, "effects": [...]}``), appended and flushed as soon as the head is
done. A sweep restarted with the same settings reads the finished heads back and sweeps only
the rest (:func:`resume_sweep`); different settings are refused, so results are never mixed.
A torn last line (the process was killed while writing it) is dropped and redone.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from scrying.ablation.config import AblationConfig
from scrying.ablation.data import PromptSet
from scrying.ablation.replace import Head, all_heads, check_heads
from scrying.ablation.sweep import SweepResult, head_sweep
from scrying.axes import Float, Tensor
from scrying.errors import InvalidInputError

logger = logging.getLogger(__name__)


def model_fingerprint(model: Any) -> str:
    """A digest of the model's parameter shapes and a strided sample of every parameter's values,
    so that a model retrained or replaced at the same path is told apart (0.1 s for Gemma 3 270M)."""
    digest = hashlib.sha256()
    for name, param in model.named_parameters():
        flat = param.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 256)][:256].double().cpu()
        digest.update(f"{name}{tuple(param.shape)}".encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def sweep_settings(
    model_name: str, prompts_file: Path | str, config: AblationConfig, n_prompts: int, *, model: Any = None
) -> dict[str, Any]:
    """What must match for two runs' effects to belong to one table."""
    digest = hashlib.sha256(Path(prompts_file).read_bytes()).hexdigest()
    return {
        "model": model_name,
        "model_fingerprint": model_fingerprint(model) if model is not None else None,
        "prompts_sha256": digest,
        "metric": config.metric,
        "method": config.method,
        "positions": config.positions,
        "seed": config.seed,
        "n_prompts": n_prompts,
    }


class SweepJournal:
    """Append-only per-head effects at ``path`` for one set of ``settings``."""

    def __init__(self, path: Path | str, settings: dict[str, Any]):
        self.path = Path(path)
        self.settings = settings
        self.done: dict[Head, list[float]] = {}
        if self.path.exists() and self.path.read_text(encoding="utf-8").strip():
            self._read()
        else:  # new, or created by a run killed before it wrote the header
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write_lines([{"settings": settings}], mode="w")

    def _read(self) -> None:
        lines = self.path.read_text(encoding="utf-8").splitlines()
        try:
            header = json.loads(lines[0])["settings"] if lines else None
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise InvalidInputError(f"{self.path}: line 1 is not a sweep journal header") from err
        if header != self.settings:
            changed = sorted(k for k in set(header or {}) | set(self.settings) if (header or {}).get(k) != self.settings.get(k))
            raise InvalidInputError(
                f"{self.path} holds a sweep with other settings ({', '.join(changed)} differ); "
                "delete it or write to another --out"
            )
        kept = [lines[0]]
        for number, line in enumerate(lines[1:], start=2):
            try:
                row = json.loads(line)
                head, effects = (int(row["layer"]), int(row["head"])), [float(v) for v in row["effects"]]
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                if number == len(lines):  # torn by an interrupted write: redo that head
                    logger.warning("%s: dropping an incomplete last line", self.path)
                    break
                raise InvalidInputError(f"{self.path} line {number}: not a head record ({err})") from err
            if len(effects) != self.settings["n_prompts"]:
                raise InvalidInputError(
                    f"{self.path} line {number}: {len(effects)} effects, expected {self.settings['n_prompts']}"
                )
            self.done[head] = effects
            kept.append(line)
        if len(kept) != len(lines):
            self._write_lines([json.loads(line) for line in kept], mode="w")

    def _write_lines(self, rows: list[dict[str, Any]], *, mode: str) -> None:
        with self.path.open(mode, encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
            handle.flush()

    def append(self, head: Head, effects: Float[Tensor, " prompt"]) -> None:
        values = [float(v) for v in effects.double().tolist()]
        self._write_lines([{"layer": head[0], "head": head[1], "effects": values}], mode="a")
        self.done[head] = values


def resume_sweep(
    model: Any,
    prompts: PromptSet,
    config: AblationConfig,
    journal: SweepJournal,
    *,
    heads: list[Head] | None = None,
) -> SweepResult:
    """:func:`head_sweep` over the heads ``journal`` has not finished, saving each as it is done;
    the result holds the journal's earlier heads too."""
    heads = check_heads(model, all_heads(model) if heads is None else heads)
    todo = [h for h in heads if h not in journal.done]
    if len(todo) < len(heads):
        logger.warning("resuming: %d of %d heads already in %s", len(heads) - len(todo), len(heads), journal.path)
    result = head_sweep(model, prompts, config, heads=todo, on_head=journal.append)
    return with_heads(result, {h: journal.done[h] for h in heads}, order=heads)


def with_heads(result: SweepResult, effects: Mapping[Head, list[float]], *, order: list[Head]) -> SweepResult:
    """``result`` with the per-prompt effects of ``effects`` filled in, heads in ``order``."""
    table = result.effects.clone()
    for (layer, head), values in effects.items():
        table[layer, head] = torch.tensor(values, dtype=table.dtype)
    return SweepResult(table, result.clean, tuple(order), result.metric, result.method)
