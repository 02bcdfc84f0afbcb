"""``scrying emergence`` is :func:`scrying.emergence.run.run_study`: the same files from the
command and from the library, and every option checked by the config or before the work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scrying.cli.main import main
from scrying.emergence.run import StudyRunConfig, run_study
from scrying.emergence.verdict import VerdictConfig
from scrying.errors import ConfigError
from scrying.stats import BootstrapConfig


def _outputs(path: Path) -> Path:
    """Two models on six items: the larger gets more right, with higher target probabilities."""
    lines = []
    for scale, right in ((1e6, 2), (1e7, 5)):
        for i in range(6):
            target = f" t{i}"
            lines.append({"model": f"m{scale:g}", "scale": scale, "item": f"i{i}", "target": target,
                          "output": target if i < right else " t9", "target_logprobs": [-0.1 * (6 - i) / (1 + scale / 1e6)]})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_the_command_runs_the_library_function(tmp_path, capsys):
    outputs = _outputs(tmp_path / "outputs.jsonl")
    assert main(["emergence", "--outputs", str(outputs), "--n-bootstrap", "50", "--threshold", "1.5",
                 "--out-dir", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out
    config = StudyRunConfig(out_dir=tmp_path / "lib", outputs=outputs,
                            verdict=VerdictConfig(threshold=1.5, bootstrap=BootstrapConfig(n_resamples=50)))
    result = run_study(config)
    for name in ("outputs.jsonl", "metrics.csv", "summary.json"):
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "lib" / name).read_bytes(), name
    assert json.loads((tmp_path / "lib" / "summary.json").read_text())["verdict"] == result.summary.verdict
    assert f"verdict: {result.summary.verdict} (6 items, 2 models)" in printed
    assert result.out_dir == tmp_path / "lib" and result.references is None and result.skipped_references == []


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({}, "give either --outputs OUTPUTS.jsonl or --family FAMILY.json --task TASK"),
        ({"outputs": Path("o.jsonl"), "family": Path("f.json"), "task": "addition:2"}, "give either --outputs"),
        ({"family": Path("f.json")}, "--family needs --task"),
        ({"outputs": Path("o.jsonl"), "n_items": 0}, "StudyRunConfig.n_items must be a positive integer, got 0"),
    ],
)
def test_study_config_names_the_field(tmp_path, kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        StudyRunConfig(out_dir=tmp_path, **kwargs)
