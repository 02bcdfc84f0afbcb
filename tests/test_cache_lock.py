"""Two processes that both miss a cache entry build it once: the second waits on the entry's
lock and reads what the first published (make test runs its workers in parallel on one cache)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from scrying.cache_lock import entry_lock
from scrying.models import gguf
from scrying.toys import RepeatedSequenceTask, ToyModelConfig, TrainConfig
from scrying.toys import cache as toy_cache

TASK = RepeatedSequenceTask(n_content=8, half_len=4)
MODEL = ToyModelConfig(d_model=16, n_heads=2, d_mlp=32, n_ctx=16)
TRAIN = TrainConfig(steps=2, batch_size=4, warmup_steps=1, eval_every=2, eval_batch=4)


def _in_thread(call) -> tuple[threading.Thread, dict]:
    """``call()`` on a thread (an flock taken on a second descriptor blocks as another process's would)."""
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", call()), daemon=True)
    thread.start()
    return thread, box


def test_a_second_toy_build_waits_for_the_first_and_reads_it(tmp_path, monkeypatch):
    out = tmp_path / "toys" / toy_cache.toy_key(TASK, MODEL, TRAIN)
    trained = []
    real_train = toy_cache.train_toy
    monkeypatch.setattr(toy_cache, "train_toy", lambda *a, **k: trained.append(a[0]) or real_train(*a, **k))
    with entry_lock(out):  # "the first process", mid-build
        waiter, box = _in_thread(lambda: toy_cache.cached_toy(tmp_path, TASK, MODEL, TRAIN))
        waiter.join(timeout=3)
        assert waiter.is_alive() and trained == []  # waiting, not building beside it
        first = toy_cache._train_locked(out, TASK, MODEL, TRAIN)
    waiter.join(timeout=60)
    assert not waiter.is_alive()
    second = box["result"]
    assert len(trained) == 1  # the first build only
    assert second.out_dir == first.out_dir == out and second.seconds == 0.0  # read from the cache
    assert second.accuracy == pytest.approx(first.accuracy, rel=1e-12)  # through history.jsonl


def test_a_second_conversion_waits_for_the_first_and_reads_it(tmp_path, monkeypatch):
    digest = "ab" * 32
    converted = []

    def fake_convert(gguf_path: Path, out_dir: Path) -> None:
        converted.append(gguf_path)
        (out_dir / "model.safetensors").write_text("weights")

    monkeypatch.setattr(gguf, "_convert", fake_convert)
    source = tmp_path / "model.gguf"
    source.write_text("gguf")
    target = gguf.converted_dir(tmp_path, digest)
    with entry_lock(target):
        waiter, box = _in_thread(lambda: gguf.known_gguf_dir(digest, tmp_path, lambda: source))
        waiter.join(timeout=3)
        assert waiter.is_alive() and converted == []
        assert gguf._convert_locked(source, tmp_path, digest) == target
    waiter.join(timeout=60)
    assert not waiter.is_alive()
    assert box["result"] == target and converted == [source]  # converted once
    assert gguf.is_converted(tmp_path, digest) and (target / "model.safetensors").read_text() == "weights"
