"""The README's account of which frozen quantity parts the local replacement model from the real
one is the stored output of ``benchmarks/frozen_quantities.py``
(results/transcoders/frozen-quantities/)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
STORED = ROOT / "results" / "transcoders" / "frozen-quantities" / "recipe-16.txt"
COLUMNS = ("nothing (the real gradient)", "final norm", "every norm and pattern (the replacement model)",
           "every norm and pattern but the final norm")


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def _flat(text: str) -> str:
    return " ".join(text.split())


def _block(name: str) -> str:
    return _readme().split(f"<!-- {name} -->")[1].split(f"<!-- /{name} -->")[0].strip()


def _stored() -> pd.DataFrame:
    return pd.read_csv(STORED, sep="\t", comment="#")


def frozen_quantities_table(table: pd.DataFrame) -> str:
    """The README block: per prompt and basis, Spearman with nothing held and with the columns'
    quantities held."""
    lines = ["| prompt | basis | " + " | ".join(f"held: {c}" if i else c for i, c in enumerate(COLUMNS)) + " |",
             "|---" * (len(COLUMNS) + 2) + "|"]
    for (prompt, basis), rows in table.groupby(["prompt", "basis"], sort=False):
        rho = dict(zip(rows.held, rows.spearman, strict=True))
        lines.append(f"| {prompt} | {basis} | " + " | ".join(f"{rho[c]:.2f}" for c in COLUMNS) + " |")
    return "\n".join(lines)


def test_frozen_quantities_table_is_the_stored_benchmark_output():
    table = _stored()
    assert "--transcoders gemma-3-270m-recipe-16 --nodes 100" in STORED.read_text(encoding="utf-8").splitlines()[0]
    assert len(table) == 3 * 2 * 12 and set(table.basis) == {"features", "neurons"}
    assert _block("frozen-quantities") == frozen_quantities_table(table)


def test_frozen_quantities_figures_the_readme_names():
    table = _stored()
    rho = {(p[:6], b, h): s for p, b, h, s in table.itertuples(index=False)}
    flat = _flat(_readme())
    real = [s for (_, _, h), s in rho.items() if h == COLUMNS[0]]
    assert f"The real gradient predicts them at {min(real):.2f}-{max(real):.2f}" in flat
    d = {b: rho["Dallas", b, "final norm"] for b in ("features", "neurons")}
    single = table[~table.held.str.startswith(("every", "nothing"))]
    dallas = single[single.prompt.str.startswith("Dallas")]
    assert (dallas.groupby("basis").spearman.idxmin().map(table.held) == "final norm").all()  # the worst single quantity on Dallas
    assert f"holding the final norm's scale alone takes that to {d['features']:.2f} (features) and {d['neurons']:.2f} (neurons)" in flat
    frozen = {(p, b): s for (p, b, h), s in rho.items() if h == COLUMNS[2]}
    assert (f"({frozen['Dallas', 'features']:.2f} against {frozen['Dallas', 'neurons']:.2f} on Dallas, "
            f"{frozen['When M', 'features']:.2f} against {frozen['When M', 'neurons']:.2f} on IOI, "
            f"{frozen['Fact: ', 'features']:.2f} against {frozen['Fact: ', 'neurons']:.2f} on the two-hop prompt)") in flat
    assert frozen["When M", "features"] > frozen["When M", "neurons"] and frozen["Fact: ", "features"] > frozen["Fact: ", "neurons"]
    worst = single.loc[single.groupby(["prompt", "basis"], sort=False).spearman.idxmin()]
    assert (worst[worst.basis == "neurons"].held == "final norm").all()  # "for neurons on every prompt"
    assert worst[worst.basis == "features"].held.tolist() == ["final norm", "final norm", "pre-MLP norms"]  # Dallas, IOI, two-hop
    assert (f"(on the two-hop prompt the pre-MLP norms cost features more: {rho['Fact: ', 'features', 'pre-MLP norms']:.2f} "
            f"against {rho['Fact: ', 'features', 'final norm']:.2f})") in flat
    live = {(p, b): s for (p, b, h), s in rho.items() if h == COLUMNS[3]}
    assert (f"help features only on Dallas ({frozen['Dallas', 'features']:.2f} to {live['Dallas', 'features']:.2f}; "
            f"IOI {frozen['When M', 'features']:.2f} to {live['When M', 'features']:.2f}, two-hop "
            f"{frozen['Fact: ', 'features']:.2f} to {live['Fact: ', 'features']:.2f})") in flat
    assert all(live[p, "neurons"] > frozen[p, "neurons"] for p in ("Dallas", "When M", "Fact: "))
    lifted = ", ".join(f"{frozen[p, 'neurons']:.2f} to {live[p, 'neurons']:.2f}" for p in ("Dallas", "When M", "Fact: "))
    assert f"while it lifts neurons on every prompt ({lifted})" in flat


def test_final_norm_step_of_the_raised_peak_graphs():
    import json

    summary = json.loads((ROOT / "results" / "transcoders" / "gemma-3-270m-recipe-16" / "summary.json").read_text(encoding="utf-8"))

    def stage(name: str) -> dict[str, float]:
        return {k.removeprefix("graph vs + "): v["spearman"] for k, v in summary[name]["stages"].items()}

    steps = {}
    for name in summary:
        s = stage(name)
        steps[name] = s["attention patterns live"] - s["final norm live"]
    assert all(step > 0 for step in steps.values())  # "lowers agreement on every graph, for both bases"
    feats = [v for k, v in steps.items() if k.endswith("-features")]
    neurons = [v for k, v in steps.items() if k.endswith("-neurons")]
    d, n = stage("dallas-texas-features"), stage("dallas-texas-neurons")
    flat = _flat(_readme())
    assert (f"on Dallas features {d['attention patterns live']:.2f} to {d['final norm live']:.2f} and neurons "
            f"{n['attention patterns live']:.2f} to {n['final norm live']:.2f}; in all, features lose "
            f"{min(feats):.2f}-{max(feats):.2f} there and neurons {min(neurons):.2f}-{max(neurons):.2f}") in flat
    back = {}
    for name in ("ioi-features", "ioi-neurons", "dallas-two-hop-features", "dallas-two-hop-neurons"):  # "win it back"
        s = stage(name)
        assert s["final norm live"] < s["norm scales live"]
        back[name] = s["norm scales live"] > s["attention patterns live"]
    assert set(back.values()) == {True, False}  # "in part or more than in full"
