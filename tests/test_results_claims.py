"""README sentences that quote committed results are generated from them: each figure below is
formatted from results/ and must appear in the README as written."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _estimate(summary: dict, metric: str) -> str:
    m = summary["metrics"][metric]
    return f"{m['breakthroughness']:.2f} [{m['ci'][0]:.2f}, {m['ci'][1]:.2f}]"


def test_emergence_figures_in_the_readme_are_the_committed_results():
    readme = " ".join((ROOT / "README.md").read_text().split())  # line breaks are spaces
    over_training = json.loads((ROOT / "results/emergence/toy-induction/summary.json").read_text())
    over_size = json.loads((ROOT / "results/emergence/toy-widths-induction/summary.json").read_text())
    assert f"Verdict **{over_training['verdict']}**" in readme
    assert f"verdict **{over_size['verdict']}**" in readme
    for metric in ("exact_match", "per_token_probability", "target_log_likelihood"):
        text = _estimate(over_training, metric)
        assert text.split(" [")[0] in readme and text in readme, (metric, text)
    for metric in ("per_token_probability", "target_log_likelihood"):
        assert _estimate(over_size, metric) in readme, metric
    models = {m["model"].rsplit("step-", 1)[-1].lstrip("0"): m for m in over_training["models"]}
    assert f"0.335 [{models['300']['ci_low']:.2f}, {models['300']['ci_high']:.2f}] at step 300" in readme
    assert f"{models['300']['exact_match']:.3f}" == "0.335" and f"{models['325']['exact_match']:.3f}" == "0.935"
