"""The README's figures for the recipe's revival chunks (the full run's checkpoint resumed into
the `recipe` preset's 4 revival chunks) are its stored results
(results/transcoders/gemma-3-270m-recipe-revived/)."""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from scrying.transcoders.quality import quality_markdown
from scrying.transcoders.train_config import PRESETS
from tests.test_recipe_full_results import _json, _rho
from tests.test_recipe_results import _block, _flat, _readme, wide_report

ROOT = Path(__file__).resolve().parents[1]
REVIVED = ROOT / "results" / "transcoders" / "gemma-3-270m-recipe-revived"
FULL = ROOT / "results" / "transcoders" / "gemma-3-270m-recipe-full"


def test_revived_run_is_the_preset_resumed_from_the_full_run():
    """The stored config is the `recipe` preset as it stands but for ``revive_rare`` (added
    since: absent here, that is off); its first 31 chunks are the full run's (the same history),
    the last 4 record what they revived."""
    history = _json(REVIVED / "history.json")
    preset = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(PRESETS["recipe"]).items()}
    assert preset.pop("revive_rare") is True and "revive_rare" not in history["config"]
    assert history["config"] == preset and history["chunks_done"] == 35
    chunks, full = history["history"], _json(FULL / "history.json")["history"]
    assert chunks[:31] == full
    revived = [c["revived"] for c in chunks[31:]]
    assert [sum(r) for r in revived] == [6005, 2048, 1024, 773]
    assert [r[16] for r in revived] == [1698, 482, 236, 178]
    flat = _flat(_readme())
    assert ("Features revived per chunk (of 147,456; layer 16's of 8,192 in brackets): 6,005 (1,698), 2,048 (482), "
            "1,024 (236) and 773 (178)") in flat


def stored_report(readme: str, block: str, folder: Path, base: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The README's quality block ``block`` is ``folder``'s report; that report read the same
    32,512 held-out positions as ``base``'s (the same clean loss per layer). Both reports."""
    report, old = pd.read_csv(folder / "report.csv"), pd.read_csv(base / "report.csv")
    assert _block(readme, block) == quality_markdown(report)
    assert set(report.rows) == {32_512} and {round(c, 6) for c in report.ce_clean} == {round(c, 6) for c in old.ce_clean}
    return report, old


def test_revived_quality_is_its_stored_reports():
    readme = _readme()
    report, old = stored_report(readme, "recipe-revived-quality", REVIVED, FULL)
    flat = _flat(readme)
    gain = old.fvu - report.fvu
    assert (gain > 0).all() and report.fvu.mean() <= 0.15
    assert (f"the mean FVU, {report.fvu.mean():.3f}, still meets 0.15** and is lower than the full set's on every layer "
            f"(by {gain.min():.3f}-{gain.max():.3f})") in flat
    assert (f"is {report.ce_increase.min():+.3f} to {report.ce_increase.max():+.3f} nats, {report.ce_increase.mean():+.3f} on average "
            f"(the full set's: {old.ce_increase.mean():+.3f})") in flat
    wide, wide_old = wide_report(REVIVED), wide_report(FULL)
    assert set(wide.rows) == {130_048} and (wide.dead_fraction <= 0.10).all() and (wide_old.dead_fraction[15:] > 0.10).all()
    assert (f"at most {wide.dead_fraction.max() * 100:.1f}% of any layer's features never fire (layer {int(wide.dead_fraction.idxmax())}), "
            f"against {wide_old.dead_fraction.max() * 100:.1f}% for the full set, whose layers 15-17 missed it; the mean FVU there is "
            f"{wide.fvu.mean():.3f} (the full set's {wide_old.fvu.mean():.3f})") in flat
    assert report.layer[report.dead_fraction > 0.10].tolist() == [12, 13, 14, 15, 16, 17]
    late, late_old = report.dead_fraction[12:] * 100, old.dead_fraction[12:] * 100
    assert (late < late_old).all() and old.dead_fraction[0] > 0.10 >= report.dead_fraction[0]
    assert (f"12-17** ({late.min():.1f}-{late.max():.1f}%, from {late_old.min():.1f}-{late_old.max():.1f}%; layer 0 now passes at "
            f"{report.dead_fraction[0] * 100:.1f}%)") in flat
    rise = (wide.rare_fraction - wide_old.rare_fraction)[12:] * 100
    assert (rise > 0).all()
    assert (f"rose by {rise.min():.1f}-{rise.max():.1f} points at layers 12-17 (to {wide.rare_fraction[12:].min() * 100:.1f}-"
            f"{wide.rare_fraction[12:].max() * 100:.1f}%)") in flat


def test_revival_chunk_times_are_the_history():
    chunks = _json(REVIVED / "history.json")["history"][31:]
    alone = [c for c in chunks if c["harvest_cpu_s"] >= 1.9 * c["harvest_s"] and c["train_cpu_s"] >= 1.9 * c["train_s"]]
    assert [c["chunk"] for c in alone] == [32, 33, 34]  # the first revival chunk (31) shared the cores
    minutes = [(c["harvest_s"] + c["train_s"]) / 60 for c in alone]
    span = f"{min(minutes):.1f}-{max(minutes):.1f} min"
    flat = _flat(_readme())
    assert f"--revive-dead-only --out DIR # 31 chunks, then 4 revival chunks of {span} each on this machine alone" in flat
    assert f"the other three, alone, took {span} each" in flat
    assert f"; {span} each when they lifted the dead features alone)" in flat


def test_revived_graph_figures_are_its_stored_summary():
    from scrying.transcoders.graph_summary import stages_markdown
    from tests.test_recipe_results import _graph_blocks

    readme = _readme()
    names = ("dallas-texas", "ioi", "dallas-two-hop")
    summary, full = _json(REVIVED / "summary.json"), _json(FULL / "summary.json")
    session = _json(ROOT / "results" / "transcoders" / "gemma-3-270m-recipe-session" / "summary.json")
    (n_at, placed_at), (n_into, placed_into) = _graph_blocks(readme, summary, "recipe-revived")
    assert _block(readme, "recipe-revived-stages") == stages_markdown(summary)
    f = {n: _rho(summary, f"{n}-features") for n in names}
    m = {n: _rho(summary, f"{n}-neurons")["spearman"] for n in names}
    old = {n: _rho(full, f"{n}-features") for n in names}
    s = {n: _rho(session, f"{n}-features")["spearman"] for n in names}
    assert all(f[n]["n"] == 100 and f[n]["spearman"] < m[n] for n in names)
    assert all(m[n] == _rho(full, f"{n}-neurons")["spearman"] for n in names)  # "the neurons' stay at"
    assert all(f[n]["low"] < old[n]["high"] and old[n]["low"] < f[n]["high"] for n in names)  # "no more than 100 nodes resolve"
    flat = _flat(readme)
    gap = [f"{m[n] - f[n]['spearman']:.2f}" for n in names]
    assert f"still missed, by {gap[0]}, {gap[1]} and {gap[2]}.**" in flat
    t = f["dallas-two-hop"]
    assert t["includes_zero"]
    assert (f"Dallas {f['dallas-texas']['spearman']:.2f} (was {old['dallas-texas']['spearman']:.2f}), IOI {f['ioi']['spearman']:.2f} "
            f"(was {old['ioi']['spearman']:.2f}), the two-hop prompt {t['spearman']:.2f} [{t['low']:.2f}, {t['high']:.2f}] "
            f"(was {old['dallas-two-hop']['spearman']:.2f}), an interval that still includes 0") in flat
    assert (n_at, placed_at, n_into, placed_into) == (2, 1, 5, 4)
    assert f"keeps {n_at} features at 'Dallas', {placed_at} of them with a place" in flat
    assert f"{placed_into} of the {n_into} with the largest direct edge into ' Texas' have one" in flat
    d, i, h = (f[n]["spearman"] for n in names)
    assert d > s["dallas-texas"] and i > s["ioi"] and h < s["dallas-two-hop"]
    assert (f"better on Dallas ({d:.2f} against {s['dallas-texas']:.2f}) and IOI ({i:.2f} against {s['ioi']:.2f}) but worse on "
            f"the two-hop prompt ({h:.2f} against {s['dallas-two-hop']:.2f})") in flat
    for name in names:
        graph = _json(REVIVED / "graphs" / f"{name}-features.json")
        assert graph["scrying"]["metadata"]["validation"]["reports"]["frozen vs real, scale 0"]["spearman"] == f[name]["spearman"]


def revival_benchmark(path: Path) -> dict[str, tuple[float, float]]:
    """``benchmarks/transcoder_revival.py``'s stored output: each variant's held-out FVU and dead share."""
    text = path.read_text(encoding="utf-8")
    return {m[1]: (float(m[2]), float(m[3])) for m in re.finditer(r"layer 16 (\S+)\s+held-out FVU ([\d.]+), dead ([\d.]+)", text)}


def test_revival_benchmark_figures_are_its_stored_output():
    """The README's layer-16 comparison of revival variants is benchmarks/transcoder_revival.py's
    stored output (results/transcoders/revival/layer-16.txt)."""
    got = revival_benchmark(ROOT / "results" / "transcoders" / "revival" / "layer-16.txt")
    assert list(got) == ["as-trained", "more-steps", "aux-early", "aux-strong", "revive-2000", "revive-500", "lift-500", "resample"]
    pct = {k: f"{100 * v[1]:.1f}%" for k, v in got.items()}
    fvu = {k: f"{v[0]:.4f}" for k, v in got.items()}
    flat = _flat(_readme())
    assert (f"was {pct['as-trained']} as trained, {pct['more-steps']} after the steps alone, {pct['revive-500']} after reviving the "
            f"dead ones and {pct['lift-500']} after lifting the rare ones too (held-out FVU {fvu['as-trained']}, {fvu['more-steps']}, "
            f"{fvu['revive-500']} and {fvu['lift-500']}); AuxK counting features dead sooner or weighted 32x more left "
            f"{pct['aux-early']} and {pct['aux-strong']}, and Bricken et al.'s resampling {pct['resample']}") in flat
    doc = __import__("scrying.transcoders.revive", fromlist=["x"]).__doc__
    for variant, row in [("as-trained", "the set as trained (no step)"), ("lift-500", "``rare=True`` at 1/500"), ("resample", "Bricken")]:
        line = next(ln for ln in doc.splitlines() if ln.startswith(row))
        assert pct[variant] in line and fvu[variant] in line, (variant, line)


def test_revived_graphs_selecting_1000_features_are_their_stored_summary():
    """The README's figures for the revived set's graphs selecting 1,000 features
    (results/transcoders/gemma-3-270m-recipe-revived/features-1000/summary.json) against its
    200-feature graphs (summary.json beside it)."""
    from scrying.transcoders.graph_summary import stages_markdown, validation_markdown

    readme, flat = _readme(), _flat(_readme())
    names = ("dallas-texas", "ioi", "dallas-two-hop")
    wide, narrow = _json(REVIVED / "features-1000" / "summary.json"), _json(REVIVED / "summary.json")
    assert _block(readme, "recipe-revived-1000-validation") == validation_markdown(wide)
    assert _block(readme, "recipe-revived-1000-stages") == stages_markdown(wide)
    for n in names:  # the neuron graphs are the same graphs (200 neurons both times)
        assert wide[f"{n}-neurons"]["validation"] == narrow[f"{n}-neurons"]["validation"]

    def fig(summary: dict, graph: str, key: str, stage: bool = False) -> float:
        return summary[graph]["stages" if stage else "validation"][key]["spearman"]

    live = "graph vs + error nodes live"

    def three(summary: dict, basis: str) -> str:
        a, b, c = (f"{fig(summary, n + '-' + basis, live, True):.2f}" for n in names)
        return f"{a}, {b} and {c}"

    assert f"agree at {three(wide, 'features')} (were {three(narrow, 'features')}; neurons {three(wide, 'neurons')})" in flat
    gf = [fig(wide, f"{n}-features", "graph vs frozen") for n in names]
    gf_old = [fig(narrow, f"{n}-features", "graph vs frozen") for n in names]
    gf_neurons = [fig(wide, f"{n}-neurons", "graph vs frozen") for n in names]
    assert (f"at {min(gf):.2f}-{max(gf):.2f} (was {min(gf_old):.2f}-{max(gf_old):.2f}; neurons "
            f"{min(gf_neurons):.2f}-{max(gf_neurons):.2f})") in flat
    rho = {n: wide[f"{n}-features"]["validation"]["frozen vs real"] for n in names}
    old = {n: fig(narrow, f"{n}-features", "frozen vs real") for n in names}
    t = rho["dallas-two-hop"]
    assert not t["includes_zero"] and rho["ioi"]["includes_zero"] and not narrow["ioi-features"]["validation"]["frozen vs real"]["includes_zero"]
    assert (f"frozen-vs-real from {old['dallas-two-hop']:.2f} to {t['spearman']:.2f} [{t['low']:.2f}, {t['high']:.2f}], above 0, but not the "
            f"others (Dallas {old['dallas-texas']:.2f} to {rho['dallas-texas']['spearman']:.2f}, IOI {old['ioi']:.2f} to "
            f"{rho['ioi']['spearman']:.2f}, an interval that now includes 0") in flat
    for n in ("dallas-texas", "ioi"):  # "within what 100 nodes resolve"
        a, b = rho[n], narrow[f"{n}-features"]["validation"]["frozen vs real"]
        assert a["low"] < b["high"] and b["low"] < a["high"]
    gap = [f"{fig(wide, f'{n}-neurons', 'frozen vs real') - rho[n]['spearman']:.2f}" for n in names]
    assert f"still missed, by {gap[0]}, {gap[1]} and {gap[2]}**" in flat
    masks, real = "graph vs + features' masks live", "graph vs real"
    assert "(0.60 to 0.25 and 0.57 to 0.41 at the last two stages)" in flat
    assert [f"{fig(wide, f'{n}-features', k, True):.2f}" for n in names[1:] for k in (masks, real)] == ["0.60", "0.25", "0.57", "0.41"]
