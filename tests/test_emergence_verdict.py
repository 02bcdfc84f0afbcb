"""Emergence metrics on hand-computed examples, and verdicts on constructed outputs with known
answers (scrying.emergence.metrics, outputs, verdict)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from scrying.emergence import metrics as m
from scrying.emergence.outputs import OutputRecord, read_outputs, score_outputs, write_outputs
from scrying.emergence.verdict import VerdictConfig, emergence, noise_floor
from scrying.errors import ConfigError, InvalidInputError
from scrying.stats import BootstrapConfig

TARGET = "1234567890"  # ten tokens: p^10 makes a ramp in p a sharp curve


def test_metrics_by_hand():
    assert m.exact_match(" 12 ", "12") == 1.0 and m.exact_match("13", "12") == 0.0
    assert m.token_edit_distance([1, 2, 3], [1, 3]) == 1.0  # one deletion
    assert m.token_edit_distance("kitten", "sitting") == 3.0  # two substitutions, one insertion
    choices = {"A": math.log(0.5), "B": math.log(0.3), "C": math.log(0.2)}
    assert m.multiple_choice_grade(choices, "A") == 1.0 and m.multiple_choice_grade(choices, "B") == 0.0
    # (0.5 - 0)^2 + (0.3 - 1)^2 + (0.2 - 0)^2 = 0.25 + 0.49 + 0.04
    assert m.brier_score(choices, "B") == pytest.approx(0.78)
    logprobs = [math.log(0.5), math.log(0.8)]
    assert m.per_token_probability(logprobs) == pytest.approx(math.sqrt(0.4))
    assert m.target_log_likelihood(logprobs) == pytest.approx(math.log(0.4))
    assert m.predicted_accuracy(logprobs) == pytest.approx(0.4)  # p^L = (sqrt 0.4)^2
    with pytest.raises(InvalidInputError, match="do not include the target"):
        m.brier_score(choices, "D")
    with pytest.raises(InvalidInputError, match="target_logprobs is empty"):
        m.per_token_probability([])


def family(p_of_scale, *, n_models: int = 8, n_items: int = 300, seed: int = 0) -> list[OutputRecord]:
    """Each model answers each item token by token; token i is right with probability p (the
    per-token probability at that scale); the output is exact only if every token is right."""
    rng = np.random.default_rng(seed)
    records = []
    for k, scale in enumerate(np.logspace(6, 9, n_models)):
        p = p_of_scale(k / (n_models - 1))
        for item in range(n_items):
            per_token = np.clip(p + 0.02 * rng.standard_normal(len(TARGET)), 1e-4, 1.0)
            right = rng.random(len(TARGET)) < per_token
            output = "".join(c if ok else "x" for c, ok in zip(TARGET, right, strict=True))
            records.append(OutputRecord(f"m{k}", float(scale), str(item), TARGET, output, tuple(np.log(per_token).tolist())))
    return records


CONFIG = VerdictConfig(bootstrap=BootstrapConfig(n_resamples=300))


def test_smooth_per_token_probability_is_a_mirage():
    summary = emergence(score_outputs(family(lambda t: 0.3 + 0.69 * t)), CONFIG)
    assert summary.metrics["exact_match"].jumps is True
    assert summary.metrics["per_token_probability"].jumps is False
    assert summary.metrics["per_token_probability"].breakthroughness == pytest.approx(1.0, abs=0.2)  # a ramp
    assert summary.verdict == "mirage"
    # Schaeffer's eq. 1 holds by construction: p^L predicts the measured exact match
    assert summary.models["within"].mean() >= 0.75


def test_a_per_token_jump_is_glimmering():
    summary = emergence(score_outputs(family(lambda t: 0.3 if t < 0.5 else 0.97)), CONFIG)
    assert summary.metrics["per_token_probability"].jumps is True
    assert summary.verdict == "glimmering"


def test_flat_noise_is_none_or_inconclusive():
    summary = emergence(score_outputs(family(lambda t: 0.3)), CONFIG)
    assert summary.verdict in ("none", "inconclusive")
    assert summary.metrics["exact_match"].jumps is not True


def test_resolution_counts_items_needed():
    """Per model, the items needed to see an exact match with 95% probability at the predicted
    accuracy ``a`` (the mean over items of ``p^L``, recomputed here from the records' log
    probabilities): the smallest ``n`` with ``1 - (1 - a)^n >= 0.95``, found by counting up.
    Constructed accuracies: exactly 0.05 (59 items needed, the study's count: enough, just),
    a mixture of 0.2 and 0.01, one a thousand times smaller, a sure one, and one that underflows
    to 0 (no number of items is enough)."""
    n_items = 59
    per_item = {  # model -> the (token) probabilities of each item's target
        "a05": [(0.25, 0.2)] * n_items,
        "mixed": [(0.5, 0.4)] * 30 + [(0.1, 0.1)] * 29,
        "rare": [(0.01, 0.1)] * n_items,
        "sure": [(1.0, 1.0)] * n_items,
        "never": [(1e-200, 1e-200)] * n_items,
    }
    records = [
        OutputRecord(model, 10.0 ** (6 + k), str(item), "12", "12" if item % 3 == 0 else "1x",
                     tuple(math.log(p) for p in probabilities))
        for k, (model, items) in enumerate(per_item.items())
        for item, probabilities in enumerate(items)
    ]
    models = emergence(score_outputs(records), CONFIG).models.set_index("model")
    for model, items in per_item.items():
        a = float(np.mean([np.exp(np.log(np.array(p)).sum()) for p in items]))
        row = models.loc[model]
        assert row.predicted_accuracy == pytest.approx(a, rel=1e-12, abs=0), model
        if a == 0:
            assert pd.isna(row.items_needed) and not row.enough_items  # None in a numeric column
            continue
        n = 1
        while 1 - (1 - a) ** n < 0.95:
            n += 1
        assert row.items_needed == n and bool(row.enough_items) == (n <= n_items), (model, a, row.items_needed, n)
    assert models.loc["a05"].items_needed == n_items and models.loc["a05"].enough_items  # the boundary
    assert models.loc["sure"].items_needed == 1 and not models.loc["rare"].enough_items


def test_outputs_round_trip_and_bad_lines_are_named(tmp_path):
    records = family(lambda t: 0.5, n_models=2, n_items=3)
    path = write_outputs(records, tmp_path / "outputs.jsonl")
    assert read_outputs(path) == records
    lines = path.read_text().splitlines()
    bad = json.loads(lines[1])
    bad["choices"] = {"A": -1.0}
    path.write_text("\n".join([lines[0], json.dumps(bad)] + lines[2:]) + "\n")
    with pytest.raises(InvalidInputError, match=r"outputs.jsonl line 2: 'choices' \['A'\] do not include the target"):
        read_outputs(path)
    path.write_text(lines[0] + "\n{oops\n")
    with pytest.raises(InvalidInputError, match="outputs.jsonl line 2: not valid JSON"):
        read_outputs(path)
    path.write_text("\n".join(lines[:3]) + "\n")  # one model only
    with pytest.raises(InvalidInputError, match="at least 2 models"):
        read_outputs(path)
    same = [json.loads(line) for line in lines]
    for row in same:
        row["scale"] = 1e6
    path.write_text("".join(json.dumps(r) + "\n" for r in same))
    with pytest.raises(InvalidInputError, match="have the same scale"):
        read_outputs(path)


def test_cli_writes_the_study_and_names_bad_input(tmp_path, capsys):
    from scrying.cli.main import main

    outputs = write_outputs(family(lambda t: 0.3 + 0.69 * t, n_items=120), tmp_path / "in.jsonl")
    out = tmp_path / "study"
    assert main(["emergence", "--outputs", str(outputs), "--out-dir", str(out), "--n-bootstrap", "200"]) == 0
    assert "verdict: mirage" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "mirage" and set(summary["metrics"]["exact_match"]) >= {"breakthroughness", "ci"}
    metrics = (out / "metrics.csv").read_text().splitlines()
    assert metrics[0] == "model,label,scale,item,metric,value,n_tokens,n_samples" and len(metrics) == 1 + 8 * 120 * 5
    assert read_outputs(out / "outputs.jsonl") == read_outputs(outputs)  # rescorable
    page = (out / "report.html").read_text()
    assert "Verdict: mirage" in page and "<script src=" not in page  # plotly inlined: opens offline
    bad = tmp_path / "bad.jsonl"
    bad.write_text(outputs.read_text().splitlines()[0] + "\n")
    assert main(["emergence", "--outputs", str(bad), "--out-dir", str(out)]) == 2
    assert "at least 2 models" in capsys.readouterr().err


def test_family_study_on_tiny_models_resumes_and_refuses_other_settings(tmp_path, capsys):
    """Two tiny models scored on a task file; the rerun reads the journal (no model is scored
    again), other settings are refused, and the records equal direct batched scoring."""
    from scrying.cli.main import main
    from scrying.emergence.item_scoring import ScoringConfig, score_items
    from scrying.emergence.study import Member, records_of
    from scrying.emergence.tasks import read_task_file
    from scrying.models import load_model
    from tests.tiny_models import tiny

    small, large = tiny("llama", tmp_path / "a"), tiny("gemma3", tmp_path / "b")
    del small, large
    family = tmp_path / "family.json"
    family.write_text(json.dumps([{"model": str(tmp_path / "a" / "llama"), "scale": 1e3, "label": "small"},
                                  {"model": str(tmp_path / "b" / "gemma3"), "scale": 2e3, "label": "large"}]))
    task = tmp_path / "task.jsonl"
    task.write_text("".join(json.dumps({"prompt": p, "target": t}) + "\n" for p, t in
                            [("t1 t5 t2", " t7"), ("t3 t9 t4 t6 t3", " t9 t4"), ("t8", " t2 t6 t1")]))
    out = tmp_path / "study"
    args = ["emergence", "--family", str(family), "--task", str(task), "--out-dir", str(out), "--n-bootstrap", "50"]
    assert main(args) == 0
    records = read_outputs(out / "outputs.jsonl")
    assert len(records) == 6 and {r.label for r in records} == {"small", "large"}
    model = load_model(str(tmp_path / "b" / "gemma3"))  # as the command loads it
    direct = records_of(Member(str(tmp_path / "b" / "gemma3"), 2e3, "large"), score_items(model, read_task_file(task), ScoringConfig()))
    assert [r for r in records if r.label == "large"] == direct
    journal = (out / "journal.jsonl").read_text()
    assert main(args) == 0 and (out / "journal.jsonl").read_text() == journal  # resumed: nothing rescored
    assert main([*args, "--max-new-tokens", "1"]) == 2
    assert "holds a study with other settings (max_new_tokens differ)" in capsys.readouterr().err


def test_items_needed_at_the_edges_and_summary_json_is_strict():
    """A predicted accuracy too small for a float count has no item count (not an overflow), and
    the summary JSON writes a missing count as null, never NaN."""
    import json
    import math

    from scrying.emergence.verdict import _items_needed, _json_row

    assert _items_needed(1e-320) is None and _items_needed(0.0) is None and _items_needed(1.0) == 1
    a = 0.05
    assert _items_needed(a) == next(n for n in range(1, 1000) if (1 - a) ** n <= 0.05)
    row = _json_row({"items_needed": math.nan, "model": "m"})
    assert row["items_needed"] is None and json.dumps(row, allow_nan=False)
    assert _json_row({"items_needed": 59.0})["items_needed"] == 59


# ---- constructed ground truth for the verdict rule (issue 24) -------------------------------


def tokens_family(p_of_scale, *, n_tokens: int = 12, n_models: int = 8, n_items: int = 200, seed: int = 0,
                  split: int = 1, samples: int = 0, jitter: float = 0.02) -> list[OutputRecord]:
    """As :func:`family`, with ``n_tokens`` target tokens whose ids are written (so per-token
    accuracy exists). Token ``j`` of an item has probability ``p_j`` (``p`` of the scale plus
    jitter) and is right with that probability, independently: the exact match of the output is
    Bernoulli(prod p_j), Schaeffer's eq. 1 by construction. ``split=2`` re-tokenizes every target
    token into two tokens of probability ``sqrt(p_j)`` each (the same sequence probability, the
    same exact match in distribution); ``samples`` adds that many sampled outputs per item."""
    rng = np.random.default_rng(seed)
    length = n_tokens * split
    target = "".join(str(i % 10) for i in range(length))
    ids = tuple(range(length))
    records = []
    for k, scale in enumerate(np.logspace(6, 9, n_models)):
        p = p_of_scale(k / (n_models - 1))
        for item in range(n_items):
            per_token = np.clip(p + jitter * rng.standard_normal(n_tokens), 1e-4, 1.0)
            per_token = np.repeat(per_token ** (1 / split), split)

            right = rng.random(length) < per_token
            output = "".join(c if ok else "x" for c, ok in zip(target, right, strict=True))
            drawn = None
            if samples:
                draws = [rng.random(length) < per_token for _ in range(samples)]
                drawn = tuple("".join(c if ok else "x" for c, ok in zip(target, d, strict=True)) for d in draws)
            records.append(OutputRecord(
                f"m{k}", float(scale), str(item), target, output, tuple(np.log(per_token).tolist()),
                target_tokens=ids, output_tokens=tuple(t if ok else 99 for t, ok in zip(ids, right, strict=True)),
                samples=drawn,
            ))
    return records


def _ramp(t: float) -> float:
    """The textbook mirage's per-token probability: a straight ramp 0.2 -> 0.99 in log scale."""
    return 0.2 + 0.79 * t


def test_textbook_mirage_twelve_tokens():
    """Per-token probability a straight ramp 0.2 -> 0.99 over 8 scales, 12 target tokens: exact
    match 0, 0, 0, 0, 0.01, 0.04, 0.2, 0.87 (p^12: 0, 0, 0, 0.001, 0.006, 0.039, 0.21, 0.89).
    Exact match is 0 at most scales, so its own noise floor decides: the jump is counted (the old
    floor of 0 scored it 0: verdict none); the smooth fit of per-token accuracy, raised to 12,
    reproduces it: a mirage."""
    summary = emergence(score_outputs(tokens_family(_ramp)), CONFIG)
    em = summary.metrics["exact_match"]
    em_curve = summary.curves[summary.curves.metric == "exact_match"]["mean"].to_numpy()
    assert (em_curve[:4] == 0).all() and em_curve[-1] > 0.8  # the textbook shape, as constructed
    assert em.jumps is True and em.ci[0] > 2.0
    assert summary.metrics["per_token_probability"].jumps is False
    assert summary.metrics["per_token_probability"].breakthroughness == pytest.approx(1.0, abs=0.1)
    prediction = summary.prediction
    assert prediction.mode == "greedy" and prediction.smooth_reproduces is True and prediction.degree == 2
    expected = np.array([_ramp(k / 7) ** 12 for k in range(8)])  # Schaeffer's p^L, written out
    assert np.abs(prediction.table["smooth"].to_numpy() - expected).max() < 0.06
    assert summary.verdict == "mirage"
    assert "the jump is in the metric, not the model" in summary.finding and "between m5 and m7" in summary.finding


def test_textbook_mirage_as_the_issue_writes_it():
    """The issue's figures exactly: 100 items, every target token of probability p (a ramp
    0.2 -> 0.99), 12 tokens, exact match 0, 0, 0, 0, 0, 0.04, 0.19, 0.84. Exact match is exactly
    0 at five of eight scales, so the median squared change and the sample-variance floor are
    both 0: only a floor from the rate's own sampling error counts the jump. No token ids: the
    prediction is p^12 (the outputs play samples)."""
    exact = [0, 0, 0, 0, 0, 4, 19, 84]
    records = [
        OutputRecord(f"m{k}", 10.0 ** (6 + k), str(item), "123456789012", "123456789012" if item < exact[k] else "x",
                     (math.log(_ramp(k / 7)),) * 12)
        for k in range(8) for item in range(100)
    ]
    summary = emergence(score_outputs(records), CONFIG)
    assert summary.metrics["exact_match"].jumps is True
    assert summary.metrics["per_token_probability"].jumps is False
    assert summary.prediction.mode == "greedy-vs-p" and summary.prediction.smooth_reproduces is True
    assert summary.prediction.table["smooth"].to_numpy() == pytest.approx([_ramp(k / 7) ** 12 for k in range(8)], abs=1e-9)
    assert summary.verdict == "mirage"


def test_sampled_mode_compares_p_to_the_power_l_with_sampled_exact_match():
    """With outputs sampled per item, the measured curve is sampled exact match (the fraction of
    samples that are exact) and the prediction is p^L, the probability of sampling the target."""
    records = tokens_family(_ramp, n_items=100, samples=4)
    scores = score_outputs(records)
    sampled = scores[scores.metric == "sampled_exact_match"]
    assert set(sampled["n_samples"]) == {4} and set(sampled["value"]) <= {0, 0.25, 0.5, 0.75, 1.0}
    summary = emergence(scores, CONFIG)
    prediction = summary.prediction
    assert prediction.mode == "sampled" and prediction.measured == "sampled_exact_match"
    assert prediction.continuous == "per_token_probability"
    p = scores[scores.metric == "per_token_probability"].groupby("model")["value"].mean()
    assert prediction.table.set_index("model")["direct"].to_numpy() == pytest.approx(
        (p.loc[prediction.table["model"]].to_numpy()) ** 12, abs=1e-12)  # equal L: mean of p^L = p^L
    assert prediction.smooth_reproduces is True and summary.verdict == "mirage"


def test_a_true_step_is_glimmering_and_exact_match_jump_is_counted():
    """Per-token probability steps from 0.3 to 0.99 halfway (8 scales, and 4): exact match steps
    from 0 to 0.89; its own jump is counted (not scored 0 for sitting at 0), per-token probability
    jumps, and no smooth fit reproduces the step: glimmering."""
    for n_models in (8, 4):
        summary = emergence(score_outputs(tokens_family(lambda t: 0.3 if t < 0.5 else 0.99, n_models=n_models)), CONFIG)
        assert summary.metrics["exact_match"].jumps is True, n_models
        assert summary.metrics["per_token_probability"].jumps is True, n_models
        assert summary.prediction.smooth_reproduces is False and summary.prediction.direct_reproduces is True
        assert summary.verdict == "glimmering", n_models
        assert "the jump is in the model, not the metric" in summary.finding


def test_smooth_low_ramp_is_none_though_its_log_is_steep():
    """Per-token probability a straight ramp 0.005 -> 0.5: exact match of 12 tokens is 0
    throughout (0.5^12 = 0.0002). Log-likelihood, the log of the ramp, is steep at its start and
    its breakthroughness says "jump"; it re-expresses the same quantity and decides nothing."""
    summary = emergence(score_outputs(tokens_family(lambda t: 0.005 + 0.495 * t)), CONFIG)
    assert summary.metrics["target_log_likelihood"].breakthroughness > 2.0  # the log's concave start
    assert summary.metrics["per_token_probability"].jumps is False
    assert summary.metrics["exact_match"].jumps is False
    assert summary.verdict == "none"
    assert summary.to_json()["metrics"]["target_log_likelihood"]["decides"] is False


def test_monotone_re_expression_gives_the_same_verdict():
    """The same sequence probabilities over 12 tokens of probability p or 24 tokens of
    probability sqrt(p): per-token probability is re-expressed monotonically, the question is
    the same, and so is the verdict, for the textbook mirage, the step and the low ramp."""
    for p_of_scale, verdict in [(_ramp, "mirage"), (lambda t: 0.3 if t < 0.5 else 0.99, "glimmering"),
                                (lambda t: 0.005 + 0.495 * t, "none")]:
        once = emergence(score_outputs(tokens_family(p_of_scale)), CONFIG)
        split = emergence(score_outputs(tokens_family(p_of_scale, split=2, seed=1)), CONFIG)
        assert once.verdict == split.verdict == verdict
        # the same question: the measured exact match agrees within sampling noise, L doubled
        assert np.abs(split.prediction.table["measured"] - once.prediction.table["measured"]).max() < 0.1
        assert set(score_outputs(tokens_family(p_of_scale, split=2, n_models=2, n_items=2))["n_tokens"]) == {24}


def test_flat_and_noisy_families_do_not_jump():
    """Flat: per-token probability 0.5 at every scale, one token (exact match ~0.5 with sampling
    noise). Noisy: per-token probability wobbling 0.4-0.6 from scale to scale, 2 tokens, 50
    items. Neither has a jump: verdict none."""
    flat = emergence(score_outputs(tokens_family(lambda t: 0.5, n_tokens=1)), CONFIG)
    noisy = emergence(score_outputs(tokens_family(lambda t: 0.5 + 0.1 * np.sin(37 * t), n_tokens=2, n_items=50)), CONFIG)
    for summary in (flat, noisy):
        assert summary.metrics["exact_match"].jumps is False
        assert summary.verdict == "none"
        assert summary.finding.startswith("No metric jumps")


def test_noise_floor_is_binomial_at_the_adjusted_rate():
    """A proportion at 0 successes of 200 has variance floor r(1-r)/200 with r = 0.5/201, not 0;
    a continuous metric's floor is its sample variance over items / n."""
    zeros = np.zeros((3, 200))
    r = 0.5 / 201
    assert noise_floor(zeros, proportion=True) == pytest.approx(2 * r * (1 - r) / 200)
    assert noise_floor(zeros, proportion=False) == 0.0
    with_samples = np.zeros((3, 200))
    r4 = 0.5 / 801
    assert noise_floor(with_samples, proportion=True, samples_per_item=4) == pytest.approx(2 * r4 * (1 - r4) / 800)
    values = np.random.default_rng(0).random((3, 50))
    v = values.var(1, ddof=1) / 50
    assert noise_floor(values, proportion=False) == pytest.approx(float(np.median(v[:-1] + v[1:])))


def test_verdict_config_names_its_fields():
    with pytest.raises(ConfigError, match="VerdictConfig.tolerance must be in"):
        VerdictConfig(tolerance=1.5)
    with pytest.raises(ConfigError, match="VerdictConfig.threshold must be > 1"):
        VerdictConfig(threshold=1.0)
