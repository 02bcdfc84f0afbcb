"""The parts of :mod:`scrying.batch` that need no cluster: the options, the checks made before
any worker starts, and that nothing imports ray without ``--ray``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scrying.batch import RayConfig, open_pool
from scrying.batch.pool import check_fingerprint
from scrying.errors import ConfigError, InvalidInputError, ModelMismatchError
from scrying.journal import Journal, check_settings_before_load

ROOT = Path(__file__).resolve().parents[1]


def test_without_ray_nothing_imports_ray():
    """The CLI, an in-process batch and the Ray pool's module never import ray by themselves
    (it is an optional extra)."""
    code = ("import sys, scrying.cli.main, scrying.attribution.batch, scrying.batch, scrying.batch.ray_pool; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"workers": 0}, "RayConfig.workers must be a positive integer or None, got 0"),
        ({"cpus": -1}, "RayConfig.cpus must be a number >= 0, got -1"),
        ({"cpus": 0}, "RayConfig.cpus and RayConfig.gpus are both 0"),
        ({"memory_gb": 0}, "RayConfig.memory_gb must be a positive number of GiB or None, got 0"),
        ({"address": " "}, "RayConfig.address must be 'auto', HOST:PORT or ray://HOST:PORT"),
        ({"max_restarts": -1}, "RayConfig.max_restarts must be an integer >= 0, got -1"),
    ],
)
def test_ray_config_names_the_field(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        RayConfig(**kwargs)


def test_torch_threads_follow_the_cpus():
    assert RayConfig(cpus=4).torch_threads == 4 and RayConfig(cpus=0.5, gpus=1).torch_threads == 1
    assert RayConfig(cpus=4, threads=2).torch_threads == 2


def test_a_worker_with_other_weights_is_refused():
    check_fingerprint("node-1:7", "m", "abc", "abc")
    with pytest.raises(ModelMismatchError, match="worker node-1:7 loaded m with weights fingerprint abd; the batch's "
                       "journal expects abc"):
        check_fingerprint("node-1:7", "m", "abd", "abc")


def test_other_settings_are_refused_before_the_weights_are_known(tmp_path):
    """Everything but the fingerprint is compared from the header alone; the fingerprint is the
    journal's own check once the workers report it."""
    path = tmp_path / "index.jsonl"
    settings = {"model": "m", "model_fingerprint": "abc", "max_features": 20}
    Journal(path, settings, key=lambda r: r["id"]).append({"id": "a"})
    check_settings_before_load(path, {"model": "m", "max_features": 20})  # fingerprint not yet known: fine
    check_settings_before_load(tmp_path / "absent.jsonl", {"model": "m"})  # no journal yet: fine
    with pytest.raises(InvalidInputError, match=r"holds a trace batch with other settings \(max_features differ\)"):
        check_settings_before_load(path, {"model": "m", "max_features": 10}, what="trace batch")
    with pytest.raises(InvalidInputError, match=r"\(model_fingerprint differ\)"):
        Journal(path, {**settings, "model_fingerprint": "abd"}, key=lambda r: r["id"])
    path.write_text("not json\n")
    with pytest.raises(InvalidInputError, match="line 1 is not a journal header"):
        check_settings_before_load(path, {"model": "m"})


class Squares:
    """A Work without a model: item n gives n * n."""

    model = "squares"

    def load(self) -> int:
        return 0

    def fingerprint(self, state: int) -> str:
        return "none"

    def run(self, state: int, payload: int) -> int:
        return payload * payload


def test_the_in_process_pool_streams_in_order_and_counts():
    with open_pool(Squares()) as pool:
        assert pool.identity == {"model": "squares", "model_fingerprint": "none"}
        out = list(pool.results([(f"k{n}", n) for n in range(5)], progress=False))
    assert out == [(f"k{n}", n * n) for n in range(5)]
    assert pool.stats.items == 5 and list(pool.stats.workers) == ["in-process"]


def test_ray_options_without_ray_are_refused(toy_dir, tmp_path, capsys):
    from scrying.cli.main import main

    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "t1 t2 t3"}) + "\n")
    assert main(["trace", "--prompts", str(prompts), "--model", str(toy_dir), "--ray-workers", "2"]) == 2
    assert "--ray-workers configure the Ray workers; give --ray [ADDRESS] too" in capsys.readouterr().err
    assert main(["trace", "t1 t2 t3", "--model", str(toy_dir), "--ray=auto"]) == 2
    assert "--ray is for batch mode (--prompts FILE.jsonl)" in capsys.readouterr().err
    assert main(["reversal", "--experiment", "toy", "--out-dir", str(tmp_path / "x"), "--ray"]) == 2
    assert "--ray is for --pairs" in capsys.readouterr().err
