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


def test_arithmetic_figures_in_the_readme_are_the_committed_results():
    import pandas as pd

    readme = " ".join((ROOT / "README.md").read_text().split())
    study = ROOT / "results/emergence/toy-addition3"
    summary = json.loads((study / "summary.json").read_text())
    assert f"Verdict **{summary['verdict']}**: every metric's breakthroughness" in readme
    for metric, name in [("exact_match", "exact match"), ("per_token_probability", "per-token probability"),
                         ("target_log_likelihood", "log-likelihood")]:
        assert f"{name} {_estimate(summary, metric)}" in readme, metric
    # metrics.csv is not committed (results/emergence/.gitignore): rescore the committed outputs
    from scrying.emergence.outputs import read_outputs, score_outputs

    scores = score_outputs(read_outputs(study / "outputs.jsonl"))
    means = scores.groupby(["model", "metric"])["value"].mean().unstack()
    means.index = [int(m.rsplit("step-", 1)[1]) for m in means.index]
    em, p = means["exact_match"], means["per_token_probability"]
    assert (f"exact match {em[300]:.3f} at step 300, {em[375]:.3f} at step 375, {em[450]:.3f} at 450, "
            f"{em[525]:.3f} at 525, {em[1500]:.3f} at 1500") in readme
    assert f"({p[375 - 75]:.3f}, {p[375]:.3f}, {p[450]:.3f}, {p[525]:.3f})" in readme
    mechanism = pd.read_csv(study / "mechanism.csv")
    assert (f"largest induction score {mechanism.induction.min():.2f}–{mechanism.induction.max():.2f}, "
            f"previous-token {mechanism.previous_token.min():.2f}–{mechanism.previous_token.max():.2f}") in readme
    refs = pd.read_csv(study / "references.csv").set_index(["model", "metric"])
    gemma, smol = refs.loc["gemma-3-270m"], refs.loc["smollm2-135m"]
    em_g = gemma.loc["exact_match"]
    assert f"both score exact match {em_g['mean']:.3f} [{em_g.ci_low:.3f}, {em_g.ci_high:.3f}]" in readme
    assert smol.loc["exact_match", "mean"] == em_g["mean"]
    assert (f"per-token probability {gemma.loc['per_token_probability', 'mean']:.3f} and "
            f"{smol.loc['per_token_probability', 'mean']:.3f}") in readme
