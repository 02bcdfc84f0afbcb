"""Typed reversal records, the one per-prompt seed, the experiments' configs and the shared
training loop: the stored results read back byte for byte; the stored distractors are redrawn by
the seed rule; every bad config field is named on its own; the loop does the arithmetic of SGD
with clipping and a schedule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scrying.errors import ConfigError, InvalidInputError
from scrying.reversal.causal_tracing import CausalTraceConfig, noise_draws
from scrying.reversal.experiment import ExperimentConfig
from scrying.reversal.finetune import FinetuneConfig
from scrying.reversal.pair_scoring import ReversalConfig, distractors, relation_distractors
from scrying.reversal.pairs import Pair, prompt_generator
from scrying.reversal.probe import probe_settings, read_pair_files, subset
from scrying.reversal.records import PairRecord, read_results
from scrying.reversal.relations import packaged_relation_files
from scrying.toys.train import train_steps

RESULTS = Path(__file__).resolve().parents[1] / "results" / "reversal"
STORED = [RESULTS / "results.jsonl", *sorted(RESULTS.glob("*/records-*.jsonl"))]


@pytest.mark.parametrize("path", STORED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_stored_records_read_and_write_back_byte_for_byte(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    body = lines[1:] if path.name == "results.jsonl" else lines  # the probe's file starts with its settings
    assert len(body) >= 20
    for line in body:
        record = PairRecord.from_json(json.loads(line))
        assert json.dumps(record.to_json()) == line
        for side in (record.forward, record.reverse):
            assert side.n_candidates == len(side.distractors) + side.n_right
            assert side.n_right == len(side.right_answers) + 1


def _line() -> dict:
    return json.loads((RESULTS / "results.jsonl").read_text(encoding="utf-8").splitlines()[1])


@pytest.mark.parametrize(
    ("where", "value", "needle"),
    [
        (("forward", "rank"), "1", "record, forward: 'rank' must be int, got '1'"),
        (("reverse", "rank"), True, "record, reverse: 'rank' must be int, got True"),
        (("reverse", "exact"), 1, "record, reverse: 'exact' must be bool, got 1"),
        (("forward", "logprob"), None, "record, forward: 'logprob' must be float, got None"),
        (("index",), "0", "record: 'index' must be int, got '0'"),
        (("forward", "distractors"), "Rome", "'distractors' must be a list of strings"),
    ],
)
def test_a_bad_field_is_named(where, value, needle):
    obj = _line()
    part = obj
    for key in where[:-1]:
        part = part[key]
    part[where[-1]] = value
    with pytest.raises(InvalidInputError) as err:
        PairRecord.from_json(obj)
    assert needle in str(err.value)


@pytest.mark.parametrize("key", ["index", "relation", "forward"])
def test_a_missing_field_is_named(key):
    obj = _line()
    del obj[key]
    with pytest.raises(InvalidInputError, match=f"record: missing '{key}'"):
        PairRecord.from_json(obj)


def test_a_bad_line_in_a_results_file_names_the_file_and_line(tmp_path):
    lines = (RESULTS / "results.jsonl").read_text(encoding="utf-8").splitlines()[:4]
    bad = json.loads(lines[2])
    bad["forward"]["n_candidates"] = 2.5
    (tmp_path / "r.jsonl").write_text("\n".join([*lines[:2], json.dumps(bad), lines[3]]) + "\n")
    with pytest.raises(InvalidInputError, match=r"r\.jsonl line 3, forward: 'n_candidates' must be int, got 2\.5"):
        read_results(tmp_path / "r.jsonl")


def test_stored_distractors_are_redrawn_by_the_one_seed_rule():
    """Every distractor list of the stored Gemma probe is what :func:`distractors` draws today
    from the shipped relations: the per-prompt key and its hashing are unchanged."""
    header = json.loads((RESULTS / "results.jsonl").read_text(encoding="utf-8").splitlines()[0])["settings"]
    files = packaged_relation_files()
    config = ReversalConfig(distractors=header["distractors"], seed=header["seed"], fit=header.get("fit", False))
    if probe_settings("x", files, config)["pairs_sha256"] != header["pairs_sha256"]:
        pytest.skip("the shipped relations changed since results/reversal was stored")
    pairs = read_pair_files(files)
    records = read_results(RESULTS / "results.jsonl")
    assert [r.index for r in records] == subset(pairs, header.get("every", 1))  # every pair, or the documented subset
    ks = relation_distractors(pairs, config).k
    for record in records:
        for direction in ("forward", "reverse"):
            drawn = [d.strip() for d in distractors(pairs, record.index, direction, config, ks[record.relation])]
            assert list(record.direction(direction).distractors) == drawn


def test_noise_draws_are_pinned_to_the_seed_rule():
    """Causal tracing's noise for a prompt, pinned to the values the stored Gemma trace was drawn
    with (a change to the key or its hash would silently change results/reversal)."""
    pair = Pair("Paris", "France", "capital_of", "{a} is the capital of", "The capital of {b} is")
    config = CausalTraceConfig(seed=0, noise=1.0)
    pinned = {"forward": [1.8584664219936482, -0.840952481518557, -1.2551784693016523],
              "reverse": [-1.014072565777126, -1.4847217827926262, 0.5490683798190932]}
    for direction, values in pinned.items():
        assert noise_draws((1, 1, 3), 1.0, config, pair, direction).flatten().tolist() == pytest.approx(values, abs=1e-15)
    same = torch.randn(3, generator=prompt_generator(0, pair, "forward"), dtype=torch.float64)
    assert same.tolist() == pytest.approx(pinned["forward"], abs=1e-15)


@pytest.mark.parametrize("cls", [ExperimentConfig, FinetuneConfig])
@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("n_test", 0, "n_test must be a positive integer, got 0"),
        ("n_support", 0, "n_support must be a positive integer, got 0"),
        ("steps", 0, "steps must be a positive integer, got 0"),
        ("steps", True, "steps must be a positive integer, got True"),
        ("batch_size", -1, "batch_size must be a positive integer, got -1"),
        ("distractors", 0, "distractors must be a positive integer, got 0"),
        ("lr", 0.0, "lr must be a positive number, got 0.0"),
        ("lr", float("nan"), "lr must be a positive number, got nan"),
        ("n_test", 5, "n_test (5) must exceed"),
    ],
)
def test_each_bad_experiment_field_is_named_on_its_own(cls, field, value, needle):
    with pytest.raises(ConfigError) as err:
        cls(**{field: value})
    assert str(err.value).startswith(f"{cls.__name__}.{field}") and needle in str(err.value)


def test_the_shared_training_loop_is_sgd_with_clipping_and_a_schedule():
    """Minimising (w - 3)^2 from w = 0 with SGD (lr 0.25): unclipped, w_t = 3 (1 - 0.5^t); with
    gradients clipped to norm 1 and the rate halved after each step, w moves by exactly
    0.25 * 0.5^(t-1) per step while |gradient| > 1. Losses are read before each step."""
    def run(clip: float | None, halve: bool) -> tuple[torch.Tensor, list[float], list[tuple[int, float]]]:
        w = torch.nn.Parameter(torch.zeros(()))
        model = torch.nn.Module()
        model.w = w
        optimizer = torch.optim.SGD([w], lr=0.25)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5**s) if halve else None
        seen: list[tuple[int, float]] = []
        losses = train_steps(model, lambda step: (w - 3) ** 2, optimizer, steps=4, schedule=schedule, clip_norm=clip,
                             after_step=lambda step, loss: seen.append((step, loss)))
        return w.detach(), losses, seen

    w, losses, seen = run(None, False)
    assert float(w) == pytest.approx(3 * (1 - 0.5**4))
    assert losses == pytest.approx([(3 * 0.5**t) ** 2 for t in range(4)])
    assert seen == [(t + 1, loss) for t, loss in enumerate(losses)]
    w, _, _ = run(1.0, True)
    assert float(w) == pytest.approx(sum(0.25 * 0.5**t for t in range(4)))
