"""``scrying ablate --ray``: the head sweep sharded by layer over Ray workers writes the table and
journal of the in-process run, and resumes from the journal with only the missing heads."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from scrying.ablation import AblationConfig
from scrying.ablation.run import AblationJob, run_ablation
from scrying.batch import RayConfig
from scrying.cli.main import main
from scrying.errors import InvalidInputError
from scrying.stats import BootstrapConfig

ray = pytest.importorskip("ray")

# A cluster per module and a model load per worker: minutes; the trace file keeps the default run's Ray checks.
pytestmark = pytest.mark.slow


LINES = [
    {"prompt": "t1 t5 t2 t7 t1 t5 t2", "correct": " t7", "incorrect": " t5"},
    {"prompt": "t3 t9 t4 t6 t3 t9 t4", "correct": " t6", "incorrect": " t9"},
    {"prompt": "t8 t2 t6 t1 t8 t2 t6", "correct": " t1", "incorrect": " t2"},
]


def job(toy_dir, prompts, out, **ablation) -> AblationJob:
    return AblationJob(prompts=prompts, model=str(toy_dir), out=out, bootstrap=BootstrapConfig(n_resamples=50),
                       ablation=AblationConfig(progress=False, **ablation))


def test_a_ray_sweep_equals_the_in_process_sweep_and_resumes(cluster, toy_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(x) + "\n" for x in LINES))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker (RayConfig.cpus = 1): the same floats
    try:
        here = run_ablation(job(toy_dir, prompts, tmp_path / "here" / "t.csv"))
    finally:
        torch.set_num_threads(threads)
    there = run_ablation(job(toy_dir, prompts, tmp_path / "ray" / "t.csv"), ray=RayConfig(workers=2))
    pd.testing.assert_frame_equal(there.table, here.table)
    journal = lambda d: (tmp_path / d / "t.effects.jsonl").read_text().splitlines()  # noqa: E731
    assert journal("ray") == journal("here")  # same header (fingerprint included), same records, same order
    assert sum(w.items for w in there.stats.workers.values()) == 1 + 2  # the clean item, then one per layer
    # interrupted after layer 0's heads: only layer 1 is submitted again
    lines = journal("ray")
    (tmp_path / "ray" / "t.effects.jsonl").write_text("\n".join(lines[:5]) + "\n")
    again = run_ablation(job(toy_dir, prompts, tmp_path / "ray" / "t.csv"), ray=RayConfig(workers=1))
    assert sum(w.items for w in again.stats.workers.values()) == 1 + 1
    assert journal("ray") == lines
    pd.testing.assert_frame_equal(again.table, here.table)
    with pytest.raises(InvalidInputError, match=r"other settings \(method differ\)"):
        run_ablation(job(toy_dir, prompts, tmp_path / "ray" / "t.csv", method="zero"), ray=RayConfig(workers=1))
    code = main(["ablate", "--prompts", str(prompts), "--model", str(toy_dir), "--out", str(tmp_path / "cli" / "t.csv"),
                 "--n-bootstrap", "50", f"--ray={cluster}", "--ray-workers", "1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "throughput:" in out and "over 1 worker(s)" in out
