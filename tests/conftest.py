"""Shared fixtures: a toy model trained on repeated sequences, and the default model.

Everything is seeded and offline. The default model's first load converts the packaged GGUF
(about a minute); later loads read the cache in ~/.cache/scrying (or $SCRYING_CACHE_DIR).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from scrying.models import LoadConfig, default_cache_dir, load_model
from scrying.toys import RepeatedSequenceTask, ToyModelConfig, TrainConfig, cached_toy

# the machine's 2 cores, shared among pytest-xdist's workers where ``make test`` starts them
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))

TOY_TASK = RepeatedSequenceTask(n_content=64, half_len=20)


def cache_config() -> LoadConfig:
    return LoadConfig(cache_dir=Path(os.environ.get("SCRYING_CACHE_DIR") or default_cache_dir()))


@pytest.fixture(scope="session")
def toy_dir() -> Path:
    """A 2-layer Llama-style toy trained on random-period repeats: a previous-token head in
    layer 0 feeds induction heads in layer 1 (seeded; ~20 s on an idle machine, then cached by
    its settings' digest: :func:`scrying.toys.cached_toy`)."""
    result = cached_toy(cache_config().cache_dir, TOY_TASK, ToyModelConfig(), TrainConfig(steps=300, eval_every=100, seed=0))
    assert result.accuracy > 0.9, result.history
    return result.out_dir


@pytest.fixture(scope="session")
def toy_model(toy_dir: Path):
    return load_model(str(toy_dir))


@pytest.fixture(scope="session")
def gemma():
    """The default model (Gemma 3 270M from the packaged GGUF)."""
    return load_model("gemma-3-270m", cache_config())


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster for a test module (about 5 s to start), stopped after it; its address."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
