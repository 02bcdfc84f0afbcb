"""The README's head-ablation figures are the committed tables (results/ablation/*.csv), formatted
here and looked up as written; the linked report exists."""

from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _head(row: pd.Series) -> str:
    return f"L{int(row['layer'])} H{int(row['head'])}"


def test_head_ablation_figures_in_the_readme_are_the_committed_tables():
    readme = " ".join((ROOT / "README.md").read_text().split())
    ioi = pd.read_csv(ROOT / "results" / "ablation" / "ioi_heads_gemma.csv").sort_values("effect")
    heads = pd.read_csv(ROOT / "results" / "ablation" / "gemma_induction_heads.csv")
    lowest, second = ioi.iloc[0], ioi.iloc[1]
    highest, runner = ioi.iloc[-1], ioi.iloc[-2]
    induction = heads.sort_values("induction", ascending=False).iloc[0]
    costly = heads.sort_values("effect", ascending=False).iloc[0]
    previous = heads.sort_values("previous_token", ascending=False).iloc[0]
    claims = [
        f"logit difference {ioi.clean_metric.iloc[0]:.2f}), mean-ablating {_head(lowest)} lowers logit(IO) − logit(S) by "
        f"{-lowest.effect:.2f} [{-lowest.ci_high:.2f}, {-lowest.ci_low:.2f}] and {_head(second)} by {-second.effect:.2f}",
        f"ablating {_head(highest)} raises it by {highest.effect:.2f} [{highest.ci_low:.2f}, {highest.ci_high:.2f}] and "
        f"{_head(runner)} by {runner.effect:.2f}",
        f"the strongest induction score is {_head(induction)} ({induction.induction:.2f})",
        f"costs most is {_head(costly)} (induction score {costly.induction:.2f}; loss +{costly.effect:.1f} nats "
        f"[{costly.ci_low:.1f}, {costly.ci_high:.1f}])",
        f"previous-token head is {_head(previous)} ({previous.previous_token:.2f})",
    ]
    missing = [c for c in claims if c not in readme]
    assert not missing, missing
    report = (ROOT / "results" / "ablation" / "ioi_heads_gemma.html").read_text()
    assert "Change in logit-diff when each head is mean-ablated" in report
