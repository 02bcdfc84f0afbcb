"""The toy family scrying trains itself (preset ``tiny``): checkpoints on one compute axis, the
study's files, and the head detector's curves beside the metrics."""

from __future__ import annotations

import json

import pandas as pd

from scrying.cli.main import main
from scrying.emergence.toy_family import PRESETS, toy_family


def test_tiny_toy_family_study(tmp_path, capsys):
    cache, out = tmp_path / "cache", tmp_path / "study"
    args = ["emergence", "--cache-dir", str(cache), "--family", "tiny", "--task", "induction:6", "--n-items", "30",
            "--n-bootstrap", "100", "--out-dir", str(out)]
    assert main(args) == 0
    family = toy_family(cache / "toy-family", "tiny")  # cached: the same checkpoints, not retrained
    spec = PRESETS["tiny"]
    assert len(family.members) == spec["steps"] // spec["checkpoint_every"]
    scales = [m.scale for m in family.members]
    assert scales == sorted(scales) and scales[1] == 2 * scales[0]  # 6 N D: linear in the step
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] in ("mirage", "glimmering", "none", "inconclusive")
    mechanism = pd.read_csv(out / "mechanism.csv")
    assert len(mechanism) == len(family.members) and mechanism["induction"].between(0, 1).all()
    assert "mechanism: largest head scores" in (out / "report.html").read_text()
    assert main([*args[:-2], "--out-dir", str(tmp_path / "other"), "--task", "addition:2"]) == 2
    assert "use --task induction" in capsys.readouterr().err
