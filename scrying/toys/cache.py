"""Toy models trained once and reused: a cache keyed by a digest of everything that decides the
weights (task, architecture, training settings and the trainer's format version).

A cached toy lives in ``CACHE/toys/<task>-<digest>``; it is complete when its
``scrying-toy.json`` holds the same settings. Training writes to a temporary sibling folder that
is renamed into place when done, so a run killed mid-training leaves no half-written toy behind.
The test suite's toy fixtures use this, so a second test run on one machine trains nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from scrying.cache_lock import entry_lock
from scrying.toys.tasks import ArithmeticTask, RepeatedSequenceTask
from scrying.toys.train import ToyModelConfig, TrainConfig, TrainResult, train_toy

#: Bumped when the trainer changes what the same settings produce.
TRAINER_VERSION = 1


def toy_key(task: RepeatedSequenceTask | ArithmeticTask, model_cfg: ToyModelConfig, train_cfg: TrainConfig) -> str:
    """The cache folder's name for these settings."""
    settings = {"task": asdict(task), "model": asdict(model_cfg), "train": asdict(train_cfg), "trainer": TRAINER_VERSION}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return f"{type(task).__name__}-{digest}"


def cached_toy(
    cache_dir: str | Path,
    task: RepeatedSequenceTask | ArithmeticTask,
    model_cfg: ToyModelConfig,
    train_cfg: TrainConfig,
) -> TrainResult:
    """The toy of these settings from ``cache_dir``, trained there first if it is not yet."""
    out = Path(cache_dir) / "toys" / toy_key(task, model_cfg, train_cfg)
    meta = {"task": asdict(task), "model": asdict(model_cfg), "train": asdict(train_cfg)}
    if (cached := _cached(out, meta)) is not None:
        return cached
    with entry_lock(out):  # another process may be training it
        if (cached := _cached(out, meta)) is not None:
            return cached
        return _train_locked(out, task, model_cfg, train_cfg)


def _cached(out: Path, meta: dict) -> TrainResult | None:
    saved = out / "scrying-toy.json"
    if not (saved.is_file() and json.loads(saved.read_text()) == meta):
        return None
    history = pd.read_json(out / "history.jsonl", lines=True)
    checkpoints = tuple(sorted((out / "checkpoints").glob("step-*")))
    return TrainResult(out, float(history.accuracy.iloc[-1]), history, checkpoints, 0.0)


def _train_locked(out: Path, task: RepeatedSequenceTask | ArithmeticTask, model_cfg: ToyModelConfig, train_cfg: TrainConfig) -> TrainResult:
    """Train into ``<out>.partial``, then publish it by one rename (the entry's lock held)."""
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    trained = train_toy(partial, task, model_cfg, train_cfg)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    checkpoints = tuple(out / p.relative_to(partial) for p in trained.checkpoints)
    return TrainResult(out, trained.accuracy, trained.history, checkpoints, trained.seconds)
