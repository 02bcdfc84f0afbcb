"""The verdict over seeds (:func:`scrying.emergence.seeds.over_seeds`) on constructed studies: the
shared verdict when seeds agree; when they disagree, a finding that says where each seed's exact
match rises and in how many the smooth prediction reproduces it (the mirage test)."""

from __future__ import annotations

import pandas as pd
import pytest

from scrying.emergence.prediction import Prediction
from scrying.emergence.seeds import over_seeds
from scrying.emergence.verdict import EmergenceSummary

LABELS = [f"step {75 * (i + 1)}" for i in range(6)]


def _study(verdict: str, em: list[float], p: list[float], smooth_reproduces: bool | None) -> EmergenceSummary:
    rows = []
    for metric, ys in (("exact_match", em), ("per_token_probability", p)):
        for i, y in enumerate(ys):
            rows.append({"metric": metric, "model": LABELS[i], "label": LABELS[i], "scale": float(i + 1), "mean": y,
                         "ci_low": y, "ci_high": y, "n_items": 100})
    prediction = Prediction("greedy", "exact_match", "per_token_accuracy", 2, smooth_reproduces, None, None, pd.DataFrame())
    return EmergenceSummary(verdict=verdict, rule="", metrics={}, curves=pd.DataFrame(rows), models=pd.DataFrame(),
                            n_items=100, prediction=prediction, finding=f"a {verdict} sentence")


RISE = [0.0, 0.0, 0.1, 0.5, 0.9, 1.0]
LATE = [0.0, 0.0, 0.0, 0.05, 0.5, 0.95]
RAMP = [0.2, 0.35, 0.5, 0.65, 0.8, 0.95]


def test_agreeing_seeds_share_their_verdict():
    summary = over_seeds({0: _study("glimmering", RISE, RAMP, False), 1: _study("glimmering", LATE, RAMP, False)})
    assert summary.verdict == "glimmering"
    assert summary.finding == "All 2 seeds: glimmering. Seed 0: a glimmering sentence"


@pytest.mark.parametrize(("reproduced", "tail"), [((False, False, False), "in 0 of 3 seeds (no seed shows a mirage)"),
                                                   ((True, False, None), "in 1 of 2 seeds;")])
def test_disagreeing_seeds_say_what_they_share(reproduced, tail):
    studies = {0: _study("none", RISE, RAMP, reproduced[0]), 1: _study("inconclusive", LATE, RAMP, reproduced[1]),
               2: _study("inconclusive", [0.0] * 6, [0.3] * 6, reproduced[2])}
    summary = over_seeds(studies)
    assert summary.verdict == "inconclusive"
    assert summary.finding.startswith("The seeds disagree (2 inconclusive, 1 none). Exact match rises (seed 0: step 225 "
                                      "to step 375; seed 1: step 300 to step 450; seed 2: no rise), per-token probability "
                                      "rises with it in 2 of 3 seeds, and a smooth fit of the per-token metric")
    assert tail in summary.finding
    assert summary.finding.endswith("whether the rise is sudden enough to count as a jump differs by seed.")


def test_readme_states_the_committed_three_seed_run():
    """The README's three-seed paragraph is the committed seeds.json and bands.csv."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = root / "results" / "emergence" / "toy-addition3-seeds"
    readme = " ".join((root / "README.md").read_text().split())
    seeds = json.loads((out / "seeds.json").read_text())
    bands = pd.read_csv(out / "bands.csv").set_index(["metric", "label"])["mean"]
    assert f"verdict **{seeds['verdict']}**" in readme
    assert seeds["finding"].split(". ", 1)[1] in readme
    em = ", ".join(f"{bands['exact_match', f'w64 step {s}']:.3f} (step {s})" for s in (300, 600, 1500))
    p = ", ".join(f"{bands['per_token_probability', f'w64 step {s}']:.3f}" for s in (300, 600, 1500))
    assert f"exact match goes {em} and per-token probability {p}" in readme
    for seed in ("0", "1", "2"):
        summary = json.loads((out / f"seed-{seed}" / "summary.json").read_text())
        assert seeds["seeds"][seed]["verdict"] == summary["verdict"]
