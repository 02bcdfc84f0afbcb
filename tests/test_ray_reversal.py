"""``scrying reversal --pairs ... --ray``: pairs scored in chunks on Ray workers give the
in-process results file, and a killed probe resumes with only the missing pairs."""

from __future__ import annotations

import pytest
import torch

from scrying.cli.main import main
from tests.test_reversal_cli import _pair_lines, _write
from tests.test_reversal_scoring import tiny_dir  # noqa: F401 (fixture)

ray = pytest.importorskip("ray")


# A cluster per module and a model load per worker: minutes; the trace file keeps the default run's Ray checks.
pytestmark = pytest.mark.slow


def test_a_probe_on_ray_equals_the_in_process_probe_and_resumes(cluster, tmp_path, tiny_dir, capsys):  # noqa: F811
    pairs = _write(tmp_path / "pairs.jsonl", _pair_lines())
    args = ["reversal", "--pairs", str(pairs), "--model", str(tiny_dir), "--distractors", "2", "--n-bootstrap", "50"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker: the same floats
    try:
        assert main([*args, "--out", str(tmp_path / "here.jsonl")]) == 0
    finally:
        torch.set_num_threads(threads)
    ray_args = [*args, f"--ray={cluster}", "--ray-workers", "1"]
    assert main([*args, f"--ray={cluster}", "--out", str(tmp_path / "ray.jsonl")]) == 0
    here = (tmp_path / "here.jsonl").read_text().splitlines()
    assert (tmp_path / "ray.jsonl").read_text().splitlines() == here
    assert (tmp_path / "ray.summary.md").read_text() == (tmp_path / "here.summary.md").read_text()
    (tmp_path / "part.jsonl").write_text("\n".join(here[:3]) + "\n")  # killed after two pairs
    assert main([*ray_args, "--out", str(tmp_path / "part.jsonl")]) == 0
    assert (tmp_path / "part.jsonl").read_text().splitlines() == here
    assert "1 chunks" in capsys.readouterr().out  # the three missing pairs: one chunk
    other = [x if x != "2" else "3" for x in ray_args]  # --distractors 3
    assert main([*other, "--out", str(tmp_path / "part.jsonl")]) == 2
    assert "distractors differ" in capsys.readouterr().err
