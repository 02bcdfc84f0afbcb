"""``scrying ablate --out``: per-prompt effects saved head by head; an interrupted run resumes
with the same numbers, without redoing finished heads, and never mixes settings."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from scrying.ablation import AblationConfig, head_sweep, prompt_set, read_prompt_file
from scrying.ablation.resume import resume_sweep, sweep_journal, sweep_settings
from scrying.cli.main import main
from scrying.errors import InvalidInputError

LINES = [
    {"prompt": "t1 t5 t2 t7 t1 t5 t2", "correct": " t7", "incorrect": " t5"},
    {"prompt": "t3 t9 t4 t6 t3 t9 t4", "correct": " t6", "incorrect": " t9"},
    {"prompt": "t8 t2 t6 t1 t8 t2 t6", "correct": " t1", "incorrect": " t2"},
]


@pytest.fixture
def prompts_file(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in LINES))
    return path


def _cli(toy_dir, prompts_file, out, *extra):
    return main(["ablate", "--prompts", str(prompts_file), "--model", str(toy_dir), "--out", str(out), "--n-bootstrap", "50", *extra])


def test_cli_resumes_from_the_journal(toy_dir, prompts_file, tmp_path, capsys):
    out = tmp_path / "res" / "table.csv"
    assert _cli(toy_dir, prompts_file, out) == 0
    journal = tmp_path / "res" / "table.effects.jsonl"
    assert "per-prompt effects in" in capsys.readouterr().out
    full = pd.read_csv(out)
    lines = journal.read_text().splitlines()
    assert len(lines) == 1 + len(full) and json.loads(lines[0])["settings"]["n_prompts"] == 3

    # Interrupted after two heads, the third line torn mid-write; one finished head marked so
    # that a rerun which recomputed it would be caught.
    marked = json.loads(lines[1])
    marked["effects"] = [123.0, 123.0, 123.0]
    journal.write_text("\n".join([lines[0], json.dumps(marked), lines[2], lines[3][:10]]))
    out.unlink()
    assert _cli(toy_dir, prompts_file, out) == 0
    again = pd.read_csv(out)
    key = (again["layer"] == marked["layer"]) & (again["head"] == marked["head"])
    assert float(again.loc[key, "effect"].iloc[0]) == 123.0  # read back, not recomputed
    rest = ~key
    pd.testing.assert_frame_equal(again[rest].reset_index(drop=True), full[rest].reset_index(drop=True))
    assert len(journal.read_text().splitlines()) == len(lines)


def test_other_settings_are_refused(toy_dir, prompts_file, tmp_path, capsys):
    out = tmp_path / "table.csv"
    assert _cli(toy_dir, prompts_file, out) == 0
    assert _cli(toy_dir, prompts_file, out, "--method", "zero") == 2
    err = capsys.readouterr().err
    assert "table.effects.jsonl holds a sweep with other settings (method differ)" in err


def test_resume_sweep_equals_one_sweep(toy_model, prompts_file, tmp_path):
    config = AblationConfig(method="resample", batch_size=4)
    prompts = prompt_set(toy_model, read_prompt_file(prompts_file, need_answers=True))
    settings = sweep_settings("toy", prompts_file, config, prompts.n_prompts)
    heads = [(0, 0), (0, 1), (1, 0), (1, 1)]
    first = resume_sweep(toy_model, prompts, config, sweep_journal(tmp_path / "j.jsonl", settings), heads=heads[:2])
    both = resume_sweep(toy_model, prompts, config, sweep_journal(tmp_path / "j.jsonl", settings), heads=heads)
    whole = head_sweep(toy_model, prompts, config, heads=heads)
    assert torch.equal(both.effects.nan_to_num(), whole.effects.nan_to_num())
    assert torch.equal(first.effects[0].nan_to_num(), whole.effects[0].nan_to_num()) and both.heads == tuple(heads)


def test_corrupt_journal_line_is_named(tmp_path):
    path = tmp_path / "j.jsonl"
    settings = {"n_prompts": 2}
    path.write_text(json.dumps({"settings": settings}) + "\n" + "garbage\n" + json.dumps({"layer": 0, "head": 0, "effects": [1, 2]}) + "\n")
    with pytest.raises(InvalidInputError, match="j.jsonl line 2: not a sweep record"):
        sweep_journal(path, settings)


def test_a_changed_model_at_the_same_path_is_refused(toy_model, prompts_file, tmp_path):
    config = AblationConfig()
    before = sweep_settings("same/path", prompts_file, config, 3, model=toy_model)
    sweep_journal(tmp_path / "j.jsonl", before).append({"layer": 0, "head": 0, "effects": [0.0, 0.0, 0.0]})
    param = next(toy_model.parameters())
    saved = param.detach().clone()
    with torch.no_grad():
        param.add_(1e-3)
        try:
            after = sweep_settings("same/path", prompts_file, config, 3, model=toy_model)
        finally:
            param.copy_(saved)
    assert sweep_settings("same/path", prompts_file, config, 3, model=toy_model) == before
    with pytest.raises(InvalidInputError, match="model_fingerprint differ"):
        sweep_journal(tmp_path / "j.jsonl", after)
