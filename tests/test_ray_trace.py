"""``scrying trace --prompts`` on a Ray cluster: the records of the in-process run, each once,
through a killed worker and a killed driver (:mod:`scrying.batch`, :mod:`scrying.attribution.batch`).

One local Ray cluster (2 CPUs) serves the module; a driver run as a subprocess joins it by its
address. The slow test starts a two-node cluster with ``ray start``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from scrying.attribution.batch import TraceBatchConfig, run_trace_batch
from scrying.attribution.feature_graph import FeatureGraphConfig
from scrying.attribution.trace import TraceConfig
from scrying.attribution.validation import ValidationConfig
from scrying.batch import RayConfig
from scrying.errors import ClusterError, InvalidInputError

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

ROOT = Path(__file__).resolve().parents[1]
CONFIG = TraceConfig(features=FeatureGraphConfig(max_feature_nodes=20), validation=ValidationConfig(top_k=3))


def write_prompts(path: Path, n: int, seed: int = 0) -> Path:
    """``n`` repeated random sequences of the toy's tokens (an induction prompt each)."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        half = [f"t{rng.randrange(1, 30)}" for _ in range(3)]
        lines.append(json.dumps({"id": f"p{i}", "prompt": " ".join(half + half)}))
    path.write_text("\n".join(lines) + "\n")
    return path


def records(out: Path) -> list[dict]:
    """The index's records without their timing (the only field that differs between runs)."""
    lines = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()[1:]]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in lines]


def graphs(out: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}


def batch(prompts: Path, out: Path, model: Path) -> TraceBatchConfig:
    return TraceBatchConfig(prompts=prompts, model=str(model), out_dir=out, trace=CONFIG, progress=False)


@pytest.fixture(scope="module")
def reference(toy_dir, tmp_path_factory):
    """The in-process run of 6 prompts: the records every Ray run must reproduce. One torch
    thread, as each worker has (``RayConfig.cpus = 1``): a float32 matmul's sums depend on the
    thread count (at 1e-7 relative), the batches formed do not."""
    folder = tmp_path_factory.mktemp("reference")
    prompts = write_prompts(folder / "p.jsonl", 6)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = run_trace_batch(batch(prompts, folder / "out", toy_dir))
    finally:
        torch.set_num_threads(threads)
    assert result.n_new == 6 and list(result.stats.workers) == ["in-process"]
    return prompts, folder / "out"


def test_a_ray_run_equals_the_in_process_run(cluster, toy_dir, reference, tmp_path):
    """Same index records, same graphs (the same floats: each prompt is one trace, batched the
    same way on a worker as here), in the same order, from two workers."""
    prompts, expected = reference
    result = run_trace_batch(batch(prompts, tmp_path / "out", toy_dir), ray=RayConfig(workers=2))
    assert result.n_new == 6 and len(result.stats.workers) == 2
    assert sum(w.items for w in result.stats.workers.values()) == 6
    assert all(w.load_seconds > 0 for w in result.stats.workers.values())
    header = lambda out: (out / "index.jsonl").read_text().splitlines()[0]  # noqa: E731
    assert header(tmp_path / "out") == header(expected)  # same model fingerprint, same settings
    assert records(tmp_path / "out") == records(expected)
    assert graphs(tmp_path / "out") == graphs(expected)


def _worker_pids() -> list[int]:
    """This test process's own Ray actors holding a model (descendants of this process)."""
    return [p.pid for p in psutil.Process().children(recursive=True)
            if any("BatchWorker" in part for part in _cmdline(p))]


def _cmdline(process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) - 1 if path.exists() else 0


def test_a_worker_killed_mid_run_is_restarted_and_nothing_is_lost_or_doubled(cluster, toy_dir, reference, tmp_path):
    """SIGKILL one worker's process once the first record is written: Ray restarts it (the model
    reloads, a third worker process), reruns the items it held, and the index holds every prompt
    once, equal to the in-process run's."""
    prompts, expected = reference
    out = tmp_path / "out"
    killed: list[int] = []

    def kill_one() -> None:
        deadline = time.time() + 120
        while time.time() < deadline and _lines(out / "index.jsonl") < 1:
            time.sleep(0.01)
        pids = _worker_pids()
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    killer = threading.Thread(target=kill_one)
    killer.start()
    result = run_trace_batch(batch(prompts, out, toy_dir), ray=RayConfig(workers=2, in_flight=2))
    killer.join()
    assert killed, "no worker process was found to kill"
    assert result.n_new == 6
    assert len(result.stats.workers) == 3  # the killed process, its restart, the other worker
    assert [r["id"] for r in records(out)] == [f"p{i}" for i in range(6)]
    assert records(out) == records(expected)


@pytest.mark.slow  # a driver subprocess started twice: ~45 s
def test_a_killed_driver_resumes_with_only_the_missing_prompts(cluster, toy_dir, reference, tmp_path):
    """A driver process (the CLI, joined to the cluster) killed after 2 records: the rerun
    submits only the missing prompts, keeps the first lines as they were, and every prompt is
    in the index once, equal to the in-process run's; a rerun with other settings is refused,
    before any worker loads the model."""
    prompts, expected = reference
    out = tmp_path / "out"
    args = [sys.executable, "-m", "scrying.cli.main", "trace", "--prompts", str(prompts), "--out-dir", str(out),
            "--model", str(toy_dir), "--max-features", "20", "--validate-top", "3", "--ray-workers", "1",
            f"--ray={cluster}"]
    driver = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 180
        while time.time() < deadline and _lines(out / "index.jsonl") < 2 and driver.poll() is None:
            time.sleep(0.005)
        os.kill(driver.pid, signal.SIGKILL)
    finally:
        driver.wait(timeout=60)
    done = _lines(out / "index.jsonl")
    assert 2 <= done < 6, driver.stderr.read().decode()[-2000:] if driver.stderr else done
    before = (out / "index.jsonl").read_text().splitlines()[: done + 1]
    result = run_trace_batch(batch(prompts, out, toy_dir), ray=RayConfig(workers=1))
    assert result.n_new == 6 - done  # only the missing prompts were submitted
    assert sum(w.items for w in result.stats.workers.values()) == 6 - done
    assert (out / "index.jsonl").read_text().splitlines()[: done + 1] == before
    assert [r["id"] for r in records(out)] == [f"p{i}" for i in range(6)]
    assert records(out) == records(expected)
    other = TraceBatchConfig(prompts=prompts, model=str(toy_dir), out_dir=out, progress=False,
                             trace=TraceConfig(features=FeatureGraphConfig(max_feature_nodes=10)))
    started = time.perf_counter()
    with pytest.raises(InvalidInputError, match=r"other settings \(max_features, validate_top differ\)"):
        run_trace_batch(other, ray=RayConfig(workers=1))
    assert time.perf_counter() - started < 2  # refused from the header alone, no worker started


def test_a_bad_line_on_a_worker_is_named_and_the_lines_before_it_kept(cluster, toy_dir, tmp_path):
    """An item's own error comes back as scrying raised it on the worker (not retried, no Ray
    traceback in its message); the records before it are written."""
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"id": "ok", "prompt": "t1 t5 t2 t1 t5 t2"}) + "\n"
                       + json.dumps({"id": "bad", "prompt": "t3 t9 t4 t3", "target": "t1 t2"}) + "\n")
    with pytest.raises(InvalidInputError) as caught:
        run_trace_batch(batch(prompts, tmp_path / "out", toy_dir), ray=RayConfig(workers=1))
    assert str(caught.value).startswith("p.jsonl line 2: target token 't1 t2' is 2 tokens")
    assert [r["id"] for r in records(tmp_path / "out")] == ["ok"]


def test_more_workers_than_the_cluster_fits_are_refused_before_any_model_loads(cluster, toy_dir, tmp_path):
    prompts = write_prompts(tmp_path / "p.jsonl", 1)
    with pytest.raises(ClusterError, match=r"3 worker\(s\) of 1 CPU each do not fit the Ray cluster's 2 CPU"):
        run_trace_batch(batch(prompts, tmp_path / "out", toy_dir), ray=RayConfig(workers=3))
    assert not (tmp_path / "out").exists()


def _ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


@pytest.mark.slow
def test_two_nodes_on_this_machine(toy_dir, reference, tmp_path):
    """``ray start --head`` and a second ``ray start --address`` (one CPU each): the CLI, joined
    by address, spreads two workers over the two nodes and writes the in-process records."""
    prompts, expected = reference
    port = 6400 + os.getpid() % 500
    temp = Path("/tmp") / f"scrying-ray-{os.getpid()}"
    # token authentication as a local Ray instance has it, for the second node and the driver too
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "token"}
    node = ["--num-cpus=1", "--disable-usage-stats", "--node-ip-address=127.0.0.1"]
    try:
        subprocess.run([_ray_cli(), "start", "--head", f"--port={port}", "--include-dashboard=false",
                        f"--temp-dir={temp}", *node], check=True, env=env, capture_output=True)
        subprocess.run([_ray_cli(), "start", f"--address=127.0.0.1:{port}", *node], check=True, env=env,
                       capture_output=True)
        assert ray_nodes(port, env) == 2
        out = tmp_path / "out"
        run = subprocess.run(
            [sys.executable, "-m", "scrying.cli.main", "trace", "--prompts", str(prompts), "--out-dir", str(out),
             "--model", str(toy_dir), "--max-features", "20", "--validate-top", "3", f"--ray=127.0.0.1:{port}"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        assert "over 2 worker(s)" in run.stdout
        assert records(out) == records(expected)
    finally:
        # the two nodes' processes (named by this cluster's temp folder or port) and their
        # children, by id; never `ray stop`, which stops every cluster on the machine
        ours = [p for p in psutil.process_iter()
                if any(str(temp) in part or f":{port}" in part for part in _cmdline(p))]
        for process in ours + [c for p in ours for c in _children(p)]:
            try:
                os.kill(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _children(process) -> list:
    try:
        return process.children(recursive=True)
    except psutil.Error:
        return []


def ray_nodes(port: int, env: dict) -> int:
    code = (f"import ray; ray.init(address='127.0.0.1:{port}', log_to_driver=False); "
            "print(sum(n['Alive'] for n in ray.nodes()))")  # a driver of its own: this process has the module's cluster
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    return int(out.stdout.strip().splitlines()[-1])
