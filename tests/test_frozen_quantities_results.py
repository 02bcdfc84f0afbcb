"""The README's account of which frozen quantity parts the local replacement model from the real
one is the stored output of ``benchmarks/frozen_quantities.py``
(results/transcoders/frozen-quantities/), and the final-norm step of the raised-peak set's graphs
is their stored summary."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.test_recipe_results import _block as _readme_block
from tests.test_recipe_results import _flat, _readme

ROOT = Path(__file__).resolve().parents[1]
STORED = ROOT / "results" / "transcoders" / "frozen-quantities" / "recipe-16.txt"
COLUMNS = ("nothing (the real gradient)", "final norm", "every norm and pattern (MLPs real)",
           "every norm and pattern but the final norm (MLPs real)")
PROMPTS = {"Dallas": "Dallas is a city in the state of", "IOI": "When Mary and John went to the store, John gave a drink to",
           "two-hop": "Fact: the capital of the state containing Dallas is"}


def _stored(path: Path = STORED) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", comment="#")


def _cell(row: pd.Series) -> str:
    return f"{row.spearman:.2f} [{row.low:.2f}, {row.high:.2f}]"


def _row(table: pd.DataFrame, prompt: str, basis: str, held: str) -> pd.Series:
    found = table[(table.prompt == PROMPTS[prompt]) & (table.basis == basis) & (table.held == held)]
    assert len(found) == 1, (prompt, basis, held)
    return found.iloc[0]


def frozen_quantities_table(table: pd.DataFrame) -> str:
    """The README block: per prompt and basis, Spearman [95% interval] with nothing held and with
    the columns' quantities held."""
    lines = ["| prompt | basis | " + " | ".join(f"held: {c}" if i else c for i, c in enumerate(COLUMNS)) + " |",
             "|---" * (len(COLUMNS) + 2) + "|"]
    for (prompt, basis), rows in table.groupby(["prompt", "basis"], sort=False):
        by = {r.held: r for _, r in rows.iterrows()}
        lines.append(f"| {prompt} | {basis} | " + " | ".join(_cell(by[c]) for c in COLUMNS) + " |")
    return "\n".join(lines)


def test_frozen_quantities_table_is_the_stored_benchmark_output():
    table = _stored()
    assert "--transcoders gemma-3-270m-recipe-16 --nodes 100" in STORED.read_text(encoding="utf-8").splitlines()[0]
    assert len(table) == 3 * 2 * 12 and set(table.basis) == {"features", "neurons"} and set(table.prompt) == set(PROMPTS.values())
    assert ((table.low <= table.spearman) & (table.spearman <= table.high)).all()
    assert _readme_block(_readme(), "frozen-quantities") == frozen_quantities_table(table)


def test_frozen_quantities_figures_the_readme_names():
    table = _stored()
    flat = _flat(_readme())
    real = table[table.held == COLUMNS[0]].spearman
    assert f"The real gradient predicts them at {real.min():.2f}-{real.max():.2f}" in flat
    f, n = _row(table, "Dallas", "features", "final norm"), _row(table, "Dallas", "neurons", "final norm")
    assert f"holding the final norm's scale alone takes that to {_cell(f)} (features) and {_cell(n)} (neurons)" in flat
    single = table[~table.held.str.startswith(("every", "nothing"))]
    order = {key: rows.sort_values("spearman") for key, rows in single.groupby(["prompt", "basis"], sort=False)}
    dallas = [order[PROMPTS["Dallas"], b] for b in ("features", "neurons")]
    assert all(list(o.held[:2]) == ["final norm", "attention patterns"] for o in dallas)
    assert (f"the next lowest single quantity there, attention patterns, keeps {dallas[0].spearman.iloc[1]:.2f} and "
            f"{dallas[1].spearman.iloc[1]:.2f}") in flat
    assert all(order[PROMPTS[p], "neurons"].held.iloc[0] == "final norm" for p in PROMPTS)  # "for neurons on every prompt"
    assert order[PROMPTS["IOI"], "features"].held.iloc[0] == "final norm"
    mlp, fin = _row(table, "two-hop", "features", "pre-MLP norms"), _row(table, "two-hop", "features", "final norm")
    assert mlp.spearman < fin.spearman and mlp.high > fin.low  # the lowest, but not distinguishable
    assert f"on the two-hop prompt the pre-MLP norms ({_cell(mlp)}) and the final norm ({_cell(fin)}) cannot be told apart" in flat
    held = {(p, b): _row(table, p, b, COLUMNS[2]) for p in PROMPTS for b in ("features", "neurons")}
    assert all(held[p, "features"].low < held[p, "neurons"].high and held[p, "neurons"].low < held[p, "features"].high for p in PROMPTS)
    said = ", ".join(f"{_cell(held[p, 'features'])} against {_cell(held[p, 'neurons'])} on {name}"
                     for p, name in (("Dallas", "Dallas"), ("IOI", "IOI"), ("two-hop", "the two-hop prompt")))
    assert f"({said}: the intervals overlap on every prompt)" in flat
    live = {(p, b): _row(table, p, b, COLUMNS[3]).spearman for p in PROMPTS for b in ("features", "neurons")}
    frozen = {k: v.spearman for k, v in held.items()}
    assert (f"help features only on Dallas ({frozen['Dallas', 'features']:.2f} to {live['Dallas', 'features']:.2f}; "
            f"IOI {frozen['IOI', 'features']:.2f} to {live['IOI', 'features']:.2f}, two-hop "
            f"{frozen['two-hop', 'features']:.2f} to {live['two-hop', 'features']:.2f})") in flat
    assert all(live[p, "neurons"] > frozen[p, "neurons"] for p in PROMPTS)
    lifted = ", ".join(f"{frozen[p, 'neurons']:.2f} to {live[p, 'neurons']:.2f}" for p in PROMPTS)
    assert f"while it lifts neurons on every prompt ({lifted})" in flat


def test_final_norm_step_of_the_raised_peak_graphs():
    summary = json.loads((ROOT / "results" / "transcoders" / "gemma-3-270m-recipe-16" / "summary.json").read_text(encoding="utf-8"))

    def stage(name: str) -> dict[str, dict]:
        return {k.removeprefix("graph vs + "): v for k, v in summary[name]["stages"].items()}

    steps, within = {}, 0
    for name in summary:
        s = stage(name)
        before, after = s["attention patterns live"], s["final norm live"]
        steps[name] = before["spearman"] - after["spearman"]
        within += after["high"] > before["spearman"]  # the step smaller than the interval reaches
    assert all(step > 0 for step in steps.values())  # "lowers agreement on every graph, for both bases"
    feats = [v for k, v in steps.items() if k.endswith("-features")]
    neurons = [v for k, v in steps.items() if k.endswith("-neurons")]
    d = {k: v["spearman"] for k, v in stage("dallas-texas-features").items()}
    n = {k: v["spearman"] for k, v in stage("dallas-texas-neurons").items()}
    flat = _flat(_readme())
    assert (f"on Dallas features {d['attention patterns live']:.2f} to {d['final norm live']:.2f} and neurons "
            f"{n['attention patterns live']:.2f} to {n['final norm live']:.2f}; in all, features lose "
            f"{min(feats):.2f}-{max(feats):.2f} there and neurons {min(neurons):.2f}-{max(neurons):.2f}") in flat
    assert f"though on {within} of the six the step is within the new stage's 95% interval" in flat
    back = {}
    for name in ("ioi-features", "ioi-neurons", "dallas-two-hop-features", "dallas-two-hop-neurons"):  # "win it back"
        s = {k: v["spearman"] for k, v in stage(name).items()}
        assert s["final norm live"] < s["norm scales live"]
        back[name] = s["norm scales live"] > s["attention patterns live"]
    assert set(back.values()) == {True, False}  # "in part or more than in full"
