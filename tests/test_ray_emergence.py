"""``scrying emergence --ray``: a family's members scored on Ray workers give the in-process
study's files, and a killed study resumes with only the members not yet scored."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from scrying.batch import RayConfig
from scrying.cli.main import main
from scrying.emergence.item_scoring import ScoringConfig
from scrying.emergence.run import StudyRunConfig, run_study
from scrying.emergence.verdict import VerdictConfig
from scrying.stats import BootstrapConfig

ray = pytest.importorskip("ray")

# A cluster per module and a model load per worker: minutes; the trace file keeps the default run's Ray checks.
pytestmark = pytest.mark.slow


ITEMS = [("t1 t5 t2 t1 t5", " t2"), ("t3 t9 t4 t3 t9", " t4"), ("t8 t2 t6 t8 t2", " t6"),
         ("t7 t4 t1 t7 t4", " t1"), ("t6 t3 t8 t6 t3", " t8"), ("t2 t7 t9 t2 t7", " t9")]


def test_a_family_on_ray_equals_the_in_process_study_and_resumes(cluster, toy_dir, tmp_path, capsys):
    shutil.copytree(toy_dir, tmp_path / "bigger")  # a second member: the same weights at another path
    family = tmp_path / "family.json"
    family.write_text(json.dumps([{"model": str(toy_dir), "scale": 1e6}, {"model": str(tmp_path / "bigger"), "scale": 1e7}]))
    task = tmp_path / "task.jsonl"
    task.write_text("".join(json.dumps({"prompt": p, "target": t, "item": f"i{i}"}) + "\n" for i, (p, t) in enumerate(ITEMS)))

    def config(out: str) -> StudyRunConfig:
        return StudyRunConfig(out_dir=tmp_path / out, family=family, task=str(task), scoring=ScoringConfig(progress=False),
                              verdict=VerdictConfig(bootstrap=BootstrapConfig(n_resamples=50)))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker: the same floats
    try:
        run_study(config("here"))
    finally:
        torch.set_num_threads(threads)
    run_study(config("ray"), ray=RayConfig(workers=2))
    for name in ("journal.jsonl", "outputs.jsonl", "metrics.csv", "summary.json"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "here" / name).read_bytes(), name
    journal = tmp_path / "ray" / "journal.jsonl"
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(lines[:2]) + "\n")  # killed after the first member
    assert main(["emergence", "--family", str(family), "--task", str(task), "--n-bootstrap", "50",
                 "--out-dir", str(tmp_path / "ray"), f"--ray={cluster}", "--ray-workers", "2"]) == 0
    assert journal.read_text().splitlines() == lines
    assert (tmp_path / "ray" / "outputs.jsonl").read_bytes() == (tmp_path / "here" / "outputs.jsonl").read_bytes()
