"""The toy family scrying trains itself (preset ``tiny``): checkpoints on one compute axis, the
study's files, and the head detector's curves beside the metrics."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps

from scrying.cli.main import main
from scrying.emergence.toy_family import ARITHMETIC_PRESETS, PRESETS, family_items, toy_family
from scrying.toys import ArithmeticTask

# What the verdict's documentation says (scrying.emergence.verdict), written out again here.
LOWER_IS_BETTER = {"token_edit_distance", "brier_score"}
NONLINEAR = ("exact_match", "sampled_exact_match", "multiple_choice_grade")
DECISIVE = ("per_token_probability",)


def breakthroughness(means: np.ndarray, floor2: float) -> float:
    """BIG-bench's B of a curve (models by scale; higher is better), its denominator floored at
    ``floor2``, divided by ``n_models - 1`` (a straight ramp's B)."""
    step2 = np.median([(b - a) ** 2 for a, b in zip(means[:-1], means[1:], strict=True)])
    denominator = max(step2, floor2) ** 0.5
    if denominator == 0:
        return 0.0
    direction = np.sign(int(np.argmax(means)) - int(np.argmin(means)))
    return float(direction * (means.max() - means.min()) / denominator / (len(means) - 1))


def check_summary_against_the_scores(summary: dict, scores: pd.DataFrame, *, n_resamples: int, seed: int, threshold: float) -> None:
    """Every metric's breakthroughness, its bootstrap interval (the same seeded item resamples,
    each curve averaged and scored again here), its R^2 against log10(scale) (scipy), whether it
    jumps, and the verdict the documented rule gives for those jumps."""
    scales = scores.drop_duplicates("model").set_index("model")["scale"].sort_values()
    items = sorted(set(scores["item"]))
    index = torch.randint(len(items), (n_resamples, len(items)), generator=torch.Generator().manual_seed(seed)).numpy()
    jumps = {}
    for metric, reported in summary["metrics"].items():
        table = scores[scores.metric == metric].pivot(index="model", columns="item", values="value").loc[scales.index, items]
        values = table.to_numpy() * (-1.0 if metric in LOWER_IS_BETTER else 1.0)  # model item
        variance = values.var(1, ddof=1) / len(items)
        if metric in NONLINEAR:  # a proportion: at least binomial at the Jeffreys-adjusted rate
            rate = (values.sum(1) + 0.5) / (len(items) + 1)
            variance = np.maximum(variance, rate * (1 - rate) / len(items))
        floor2 = float(np.median(variance[:-1] + variance[1:]))
        b = breakthroughness(values.mean(1), floor2)
        resampled = [breakthroughness(values[:, rows].mean(1), floor2) for rows in index]
        low, high = np.quantile(resampled, [0.025, 0.975])
        assert reported["breakthroughness"] == pytest.approx(b, abs=1e-9), metric
        assert reported["ci"] == pytest.approx([low, high], abs=1e-9), metric
        curve = table.to_numpy().mean(1)
        r2 = sps.linregress(np.log10(scales.to_numpy()), curve).rvalue ** 2 if np.ptp(curve) > 0 else 0.0
        assert reported["linearity"] == pytest.approx(r2, abs=1e-9), metric
        jumps[metric] = True if low > threshold else False if high < threshold else None
        assert reported["jumps"] is jumps[metric], metric
    nonlinear = [jumps[m] for m in NONLINEAR if m in jumps]
    decisive = [jumps[m] for m in DECISIVE if m in jumps]
    prediction = summary["prediction"]
    if True in decisive:
        verdict = "glimmering"
    elif jumps[prediction["measured"]] is True:
        if prediction["smooth_reproduces"] is True:
            verdict = "mirage"
        elif prediction["smooth_reproduces"] is False and prediction["direct_reproduces"] and prediction["probability_smooth"] is False:
            verdict = "glimmering"
        else:
            verdict = "inconclusive"
    elif all(j is False for j in nonlinear + decisive):
        verdict = "none"
    else:
        verdict = "inconclusive"
    assert summary["verdict"] == verdict


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
    check_summary_against_the_scores(summary, pd.read_csv(out / "metrics.csv"), n_resamples=100, seed=0, threshold=2.0)
    mechanism = pd.read_csv(out / "mechanism.csv")
    assert len(mechanism) == len(family.members) and mechanism["induction"].between(0, 1).all()
    html = (out / "report.html").read_text()
    assert "mechanism: largest head scores" in html
    jumps = {True: "yes", False: "no", None: "undecided"}
    for m in summary["metrics"].values():  # the table says what the summary says, in words
        assert f"<td>{jumps[m['jumps']]}</td></tr>" in html
    assert main([*args[:-2], "--out-dir", str(tmp_path / "other"), "--task", "addition:12"]) == 2
    assert "addition:K or multiplication:K (K in 1..6)" in capsys.readouterr().err


def test_tiny_arithmetic_family_with_references(tmp_path, capsys):
    """The toys train on the study's task (2-digit sums); the study's items are operand pairs
    they never trained on; a reference that is one of the members scores exactly as that member
    does, and a reference whose model is missing is skipped and named."""
    cache, out = tmp_path / "cache", tmp_path / "study"
    member = cache / "toy-family" / "tiny-add2-w32-s0" / "checkpoints" / "step-000160"
    references = tmp_path / "refs.json"
    references.write_text(json.dumps([{"model": str(member), "scale": 1e20, "label": "last checkpoint again"},
                                      {"model": str(tmp_path / "absent.gguf"), "scale": 1e21}]))
    args = ["emergence", "--cache-dir", str(cache), "--family", "tiny", "--task", "addition:2", "--n-items", "30",
            "--n-bootstrap", "100", "--references", str(references), "--out-dir", str(out)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert f"reference {tmp_path / 'absent.gguf'} skipped" in captured.err
    assert "reference last checkpoint again: exact match" in captured.out
    family = toy_family(cache / "toy-family", "tiny", task="addition:2")
    assert isinstance(family.task, ArithmeticTask) and family.members[-1].model == str(member)
    assert len(family.members) == ARITHMETIC_PRESETS["tiny"]["steps"] // ARITHMETIC_PRESETS["tiny"]["checkpoint_every"]
    outputs = [json.loads(line) for line in (out / "outputs.jsonl").read_text().splitlines()]
    targets = {o["item"]: o["target"] for o in outputs if o["model"] == str(member)}
    items = family_items(family, "addition:2", 30, 0)
    assert len(targets) == 30 and {it.item for it in items} == set(targets)
    for it in items:
        a, b = map(int, it.prompt.removesuffix("=").split("+"))
        assert ArithmeticTask.held_out(a, b) and targets[it.item] == it.target == str(a + b)
    refs = pd.read_csv(out / "references.csv")
    scores = pd.read_csv(out / "metrics.csv")
    mine = scores[scores.model == str(member)].groupby("metric")["value"].mean()
    assert set(refs.model) == {str(member)} and len(refs) == len(mine)
    for row in refs.itertuples():
        assert row.mean == pytest.approx(mine[row.metric], abs=1e-12) and row.ci_low <= row.mean <= row.ci_high
    assert "Reference models" in (out / "report.html").read_text()


def test_shipped_pythia_families_resolve_to_hub_revisions():
    """The shipped hub families read as families: sizes by name, training steps as
    ``NAME@stepN`` revisions, scale 6ND increasing with size or step."""
    from pathlib import Path

    from scrying.emergence.run import packaged_family
    from scrying.emergence.study import read_family
    from scrying.models import SpecKind, resolve_spec

    steps = read_family(packaged_family(Path("pythia-410m-steps")))
    resolved = [resolve_spec(m.model) for m in steps]
    assert all(r.kind is SpecKind.HUB and r.location == "EleutherAI/pythia-410m" for r in resolved)
    numbers = [int(r.revision.removeprefix("step")) for r in resolved]
    assert numbers[-1] == 143000 and numbers == sorted(numbers)
    assert [m.scale for m in steps] == pytest.approx([6 * 405_334_016 * n * 2_097_152 for n in numbers])
    sizes = read_family(packaged_family(Path("pythia-sizes")))
    assert [m.scale for m in sizes] == sorted(m.scale for m in sizes) and resolve_spec(sizes[0].model).revision is None
    from scrying.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="'no-such-family' is neither a family file nor a known family"):
        packaged_family(Path("no-such-family"))  # named before any model loads (issue 20)


@pytest.mark.slow  # two trainings and studies of the tiny family: about 3 minutes alone, 7 under load
def test_tiny_family_over_seeds_gives_the_verdict_over_seeds_and_bands(tmp_path, capsys):
    """Two training seeds of the tiny arithmetic family: one study per seed in seed-N/ (its own
    verdict, checked against its scores as above), the verdict over seeds is the one they share
    (else inconclusive), and the bands run from the lowest to the highest seed's mean."""
    cache, out = tmp_path / "cache", tmp_path / "study"
    args = ["emergence", "--cache-dir", str(cache), "--family", "tiny", "--task", "addition:2", "--n-items", "30",
            "--n-bootstrap", "100", "--train-seeds", "0", "1", "--out-dir", str(out)]
    assert main(args) == 0
    assert "over 2 seeds:" in capsys.readouterr().out
    seeds = json.loads((out / "seeds.json").read_text())
    verdicts = {}
    curves = {}
    for seed in (0, 1):
        summary = json.loads((out / f"seed-{seed}" / "summary.json").read_text())
        scores = pd.read_csv(out / f"seed-{seed}" / "metrics.csv")
        check_summary_against_the_scores(summary, scores, n_resamples=100, seed=0, threshold=2.0)
        verdicts[seed] = summary["verdict"]
        assert seeds["seeds"][str(seed)]["verdict"] == summary["verdict"]
        curves[seed] = scores[scores.metric == "exact_match"].groupby("scale")["value"].mean()
        assert (cache / "toy-family" / f"tiny-add2-w32-s{seed}" / "model.safetensors").exists()
    assert seeds["verdict"] == (verdicts[0] if verdicts[0] == verdicts[1] else "inconclusive")
    assert curves[0].index.tolist() == curves[1].index.tolist()  # one scale axis for every seed
    bands = pd.read_csv(out / "bands.csv")
    em = bands[bands.metric == "exact_match"].set_index("scale").sort_index()
    both = pd.concat(curves, axis=1)
    assert em["low"].to_numpy() == pytest.approx(both.min(1).to_numpy(), abs=1e-12)
    assert em["high"].to_numpy() == pytest.approx(both.max(1).to_numpy(), abs=1e-12)
    assert em["mean"].to_numpy() == pytest.approx(both.mean(1).to_numpy(), abs=1e-12)
    page = (out / "report.html").read_text()
    assert "Verdict over seeds" in page and "seed-1/report.html" in page
