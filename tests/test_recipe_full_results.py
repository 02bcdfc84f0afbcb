"""The README's figures for the full recipe run (the `recipe` preset's 31 chunks) are its stored
results (results/transcoders/gemma-3-270m-recipe-full/)."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pandas as pd

from scrying.transcoders.quality import quality_markdown
from tests.test_recipe_results import _block, _flat, _graph_blocks, _readme, wide_report

ROOT = Path(__file__).resolve().parents[1]
FULL = ROOT / "results" / "transcoders" / "gemma-3-270m-recipe-full"
RAISED = ROOT / "results" / "transcoders" / "gemma-3-270m-recipe-16"
SESSION = ROOT / "results" / "transcoders" / "gemma-3-270m-recipe-session"
NAMES = ("dallas-texas", "ioi", "dallas-two-hop")


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _rho(summary: dict, graph: str) -> dict:
    return summary[graph]["validation"]["frozen vs real"]


def test_full_run_is_the_preset_and_its_log_and_clock_the_readme_says():
    from dataclasses import asdict

    from scrying.transcoders.train_config import PRESETS

    history = _json(FULL / "history.json")
    config, preset = history["config"], asdict(PRESETS["recipe"])
    assert history["chunks_done"] == 31 and config["total_tokens"] == 2_031_616
    preset = {k: list(v) if isinstance(v, tuple) else v for k, v in preset.items()}  # JSON stores tuples as lists
    assert {k for k in config if config[k] != preset.get(k)} == set()  # "the `recipe` preset's schedule unchanged" (revive_* added since: absent here)
    assert "revive_chunks" not in config
    raised = _json(RAISED / "history.json")["config"]
    assert {k for k in config.keys() | raised.keys() if config.get(k) != raised.get(k)} == {"total_tokens"}
    log = (FULL / "training-log.txt").read_text(encoding="utf-8")
    assert len(re.findall(r"chunk \d+/31:", log)) == 31
    assert re.findall(r"Resuming: (\d+) of 31 chunks already done", log) == ["4", "21"]  # "resumed twice"
    times = {k: datetime.fromisoformat(v) for k, v in _json(FULL / "run-times.json").items() if k != "note"}
    stops = [(times[f"restarted{s}"] - times[f"killed_after_checkpoint{s}"]).total_seconds() / 60 for s in ("", "_2")]
    flat = _flat(_readme())
    assert f"{times['started']:%H:%M}" == "11:52"
    assert (f"(11:52 to the set at {times['set_written']:%H:%M}, with two stops of {stops[0]:.0f} and {stops[1]:.0f} min "
            "from checkpoint to restart)") in flat
    chunks = history["history"]
    alone = [n for n, c in enumerate(chunks, 1)
             if c["harvest_cpu_s"] >= 1.9 * c["harvest_s"] and c["train_cpu_s"] >= 1.9 * c["train_s"]]
    assert alone == [7, 8, 11, *range(17, 32)]  # every other chunk shared the cores
    busy = len(chunks) - len(alone)
    assert f"other measurements ran beside {busy} of its chunks" in flat
    minutes = [(chunks[n - 1]["harvest_s"] + chunks[n - 1]["train_s"]) / 60 for n in alone]
    low, high = round(min(minutes), 1), round(max(minutes), 1)
    assert f"the {len(alone)} chunks that ran alone (both cores busy with it alone" in flat
    assert f"took {low}-{high} min each, the later ones slower" in flat
    steps = config["chunk_tokens"] // config["batch_size"]
    per_step = [chunks[n - 1]["train_s"] / steps for n in alone]
    early = per_step[:3]  # chunks 7, 8, 11
    assert f"(up to {max(per_step):.1f} s an Adam step against {min(early):.1f}-{max(early):.1f} s at chunks 7-11)" in flat
    report = (times["report_written"] - times["set_written"]).total_seconds() / 60
    adam = config["total_tokens"] // config["batch_size"]
    hours = f"{31 * low / 60:.1f}-{31 * high / 60:.1f} h"
    assert f"# its first 31 chunks, {adam} Adam steps: {low}-{high} min a chunk on this 2-core machine alone, then {report:.0f} min of report" in flat
    assert (f"on the finished run (the full recipe below): {low}-{high} min a chunk where nothing ran beside it, "
            f"so {hours} of training and {report:.0f} min of report, well under that estimate; it resumed twice") in flat
    assert (f"31 chunks of {low}-{high} min each where nothing ran beside them (measured on its {len(alone)} such chunks: "
            f"{hours} at that pace, then {report:.0f} min of report) and its 4 revival chunks of") in flat
    assert 31 * high / 60 + report / 60 > 3  # "or more"


def test_full_run_quality_is_its_stored_report():
    readme = _readme()
    report, old = pd.read_csv(FULL / "report.csv"), pd.read_csv(RAISED / "report.csv")
    assert _block(readme, "recipe-full-quality") == quality_markdown(report)
    assert list(report.layer) == list(range(18)) and set(report.rows) == {32_512}
    assert {round(c, 6) for c in report.ce_clean} == {
        round(c, 6) for c in old.ce_clean
    }  # the same held-out text
    flat = _flat(readme)
    mean = report.fvu.mean()
    assert (
        mean <= 0.15
        and f"the mean FVU, {mean:.3f} ({report.fvu.min():.3f}-{report.fvu.max():.3f} per layer), meets 0.15**"
        in flat
    )
    assert f"({(report.fvu <= 0.15).sum()} of the 18 layers reach it)" in flat
    assert (
        f"reaches mean held-out FVU {mean:.3f} against the target's 0.15, but neither the dead-feature target"
        in flat
    )
    gain = old.fvu - report.fvu
    assert (
        (gain > 0).all()
        and f"lower than the 16-chunk set's on every layer (by {gain.min():.2f}-{gain.max():.2f})"
        in flat
    )
    assert (report.ce_increase < old.ce_increase).all()
    assert (
        f"(+{report.ce_increase.min():.3f} to +{report.ce_increase.max():.3f} nats, +{report.ce_increase.mean():.3f} on average "
        f"against +{old.ce_increase.mean():.3f})"
    ) in flat
    over = report.dead_fraction > 0.10
    assert report.layer[over].tolist() == [0, 12, 13, 14, 15, 16, 17]
    late = report.dead_fraction[12:]
    assert (
        f"fails at layers 0 and 12-17** ({report.dead_fraction[0] * 100:.1f}%, and {late.min() * 100:.1f}-"
        f"{late.max() * 100:.1f}%)"
    ) in flat
    rise = report.dead_fraction - old.dead_fraction
    assert (rise > 0).all() and f"(by {rise.min() * 100:.1f}-{rise.max() * 100:.1f} points)" in flat
    last = _json(FULL / "history.json")["history"][-1]["dead_fraction"]
    assert f"at most {max(last):.1%} of any layer's features were dead at the end" in flat


def test_full_run_graph_figures_are_its_stored_summary():
    from scrying.transcoders.graph_summary import place_totals, stages_markdown

    readme = _readme()
    summary, raised, session = (_json(p / "summary.json") for p in (FULL, RAISED, SESSION))
    (n_at, placed_at), (n_into, placed_into) = _graph_blocks(readme, summary, "recipe-full")
    assert _block(readme, "recipe-full-stages") == stages_markdown(summary)
    assert all("graph vs + final norm live" in s["stages"] for s in summary.values())
    for name in NAMES:  # "the neuron graphs come out as above"
        assert summary[f"{name}-neurons"]["validation"] == raised[f"{name}-neurons"]["validation"]
    f = {n: _rho(summary, f"{n}-features") for n in NAMES}
    m = {n: _rho(summary, f"{n}-neurons")["spearman"] for n in NAMES}
    assert all(f[n]["n"] == 100 and f[n]["spearman"] < m[n] for n in NAMES)
    flat = _flat(readme)
    gap = [f"{m[n] - f[n]['spearman']:.2f}" for n in NAMES]
    assert f"still missed, by {gap[0]}, {gap[1]} and {gap[2]}.**" in flat
    d, i, t = f["dallas-texas"], f["ioi"], f["dallas-two-hop"]
    assert not d["includes_zero"] and t["includes_zero"]
    assert (
        f"Dallas {d['spearman']:.2f} [{d['low']:.2f}, {d['high']:.2f}] against {m['dallas-texas']:.2f} (its lower bound now above 0)"
        in flat
    )
    assert f"IOI {i['spearman']:.2f} against {m['ioi']:.2f}" in flat
    assert (
        f"two-hop prompt {t['spearman']:.2f} [{t['low']:.2f}, {t['high']:.2f}], an interval that includes 0, against {m['dallas-two-hop']:.2f}"
        in flat
    )
    was = {n: _rho(raised, f"{n}-features")["spearman"] for n in NAMES}
    assert (
        d["spearman"] > was["dallas-texas"]
        and i["spearman"] > was["ioi"]
        and t["spearman"] < was["dallas-two-hop"]
    )
    assert (
        f"it rose on Dallas ({was['dallas-texas']:.2f} to {d['spearman']:.2f}) and IOI ({was['ioi']:.2f} to {i['spearman']:.2f}) "
        f"and fell on the two-hop prompt ({was['dallas-two-hop']:.2f} to {t['spearman']:.2f})"
    ) in flat
    assert (
        f"(by {d['spearman'] - was['dallas-texas']:.2f} and {was['dallas-two-hop'] - t['spearman']:.2f})"
    ) in flat
    two_hop = summary["dallas-two-hop-features"]
    chain = [two_hop["validation"]["graph vs frozen"]["spearman"], *(v["spearman"] for v in two_hop["stages"].values())]
    drops = [a - b for a, b in zip(chain, chain[1:], strict=False)]
    assert drops[0] == max(drops) and drops[-1] == max(drops[1:])  # "after the first step ..., the last step ... costs most"
    assert f"after the first step ({chain[0]:.2f} to {chain[1]:.2f} once every active feature is live)" in flat
    assert f"costs most ({chain[-2]:.2f} to {chain[-1]:.2f})" in flat
    for name in NAMES:  # "every old interval overlaps the new one"
        new, old = f[name], _rho(raised, f"{name}-features")
        assert new["low"] < old["high"] and old["low"] < new["high"]
    assert (n_at, placed_at, n_into, placed_into) == (4, 2, 5, 4)
    old_at = raised["dallas-texas-features"]["at_token"]["features"]
    assert (
        f"{placed_at} of the {n_at} most influential features at 'Dallas' (the pruned graph keeps {n_at} there)"
        in flat
    )
    assert len(old_at) == 4 and all(
        r["with_place"] * 2 >= r["contexts_shown"] > 0 for r in old_at
    )  # "against 4 of 4"
    into = summary["dallas-texas-features"]["into_target"]
    unplaced = [r for r in into if r["with_place"] * 2 < r["contexts_shown"]]
    assert [(r["layer"], r["feature"], r["with_place"]) for r in unplaced] == [(12, 1968, 0)]
    assert (
        "L12 #1968's, whose top context is \",527 people. Ayorou,\"; its label promotes ' Alabama'"
        in flat
    )
    assert (
        unplaced[0]["contexts"][0].strip().startswith(",527 people. Ayorou,")
        and "+Alabama" in unplaced[0]["label"]
    )
    assert (
        f"and {placed_into} of the {n_into} with the largest direct edge into ' Texas' do" in flat
    )
    assert (
        not any("Texas" in r["label"] for r in into)
        and "' Texas' no longer shows among promoted tokens" in flat
    )
    s = {n: _rho(session, f"{n}-features")["spearman"] for n in NAMES}
    assert (
        f"better on Dallas ({d['spearman']:.2f} against {s['dallas-texas']:.2f}) and IOI ({i['spearman']:.2f} against "
        f"{s['ioi']:.2f}) but far worse on the two-hop prompt ({t['spearman']:.2f} against {s['dallas-two-hop']:.2f})"
    ) in flat
    assert (
        d["spearman"] > s["dallas-texas"]
        and i["spearman"] > s["ioi"]
        and t["spearman"] < s["dallas-two-hop"]
    )
    assert (pd.read_csv(SESSION / "report.csv").dead_fraction <= 0.10).all()  # "the dead-feature target that set meets"
    n_s, placed_s = place_totals(session["dallas-texas-features"]["at_token"]["features"])
    assert placed_at / n_at < placed_s / n_s and "and it shows fewer places at 'Dallas'" in flat  # 2 of 4 against theirs
    raised_into = raised["dallas-texas-features"]["into_target"]
    assert any("+Texas" in r["label"] for r in raised_into)  # "no longer": the 16-chunk set's did


def test_full_run_stored_graphs_are_the_ones_its_summary_describes():
    summary = _json(FULL / "summary.json")
    for name in NAMES:
        graph = _json(FULL / "graphs" / f"{name}-features.json")
        reports = graph["scrying"]["metadata"]["validation"]["reports"]
        assert (
            reports["frozen vs real, scale 0"]["spearman"]
            == _rho(summary, f"{name}-features")["spearman"]
        )


def test_full_run_report_on_four_times_the_heldout_text():
    wide, old = wide_report(FULL), wide_report(RAISED)
    narrow = pd.read_csv(FULL / "report.csv")
    assert list(wide.layer) == list(range(18)) and set(wide.rows) == {130_048}
    assert (
        wide.dead_fraction <= narrow.dead_fraction
    ).all()  # more text: fewer features never fire
    dead = wide.dead_fraction * 100
    assert wide.layer[wide.dead_fraction > 0.10].tolist() == [15, 16, 17] and old.layer[
        old.dead_fraction > 0.10
    ].tolist() == [17]
    flat = _flat(_readme())
    assert (
        f"the share never firing is {dead[:15].min():.1f}-{dead[:15].max():.1f}% at layers 0-14 but {dead[15]:.1f}%, "
        f"{dead[16]:.1f}% and {dead[17]:.1f}% at layers 15-17"
    ) in flat
    assert (
        f"and the mean FVU {wide.fvu.mean():.3f}: on this count the dead-feature target is missed by {dead.max() - 10:.1f} points at layer {dead.idxmax()}"
        in flat
    )
    late, late_old = dead[12:], old.dead_fraction[12:] * 100
    assert (late > late_old).all() and (late / late_old).between(1.5, 2.6).all()  # "about twice"
    assert f"share is about twice the 16-chunk set's ({late.min():.1f}-{late.max():.1f}% against {late_old.min():.1f}-{late_old.max():.1f}%;" in flat
    late_window = [c["dead_fraction"][12:] for c in _json(FULL / "history.json")["history"]]
    peak = max(max(row) for row in late_window)
    peak_layer = 12 + max(range(6), key=lambda j: max(row[j] for row in late_window))
    assert max(late_window[-1]) < peak  # "fell back"
    assert (f"the dead share at those layers rose to {peak:.1%} (layer {peak_layer}) and fell back to "
            f"{min(late_window[-1]) * 100:.1f}-{max(late_window[-1]) * 100:.1f}% by the last chunk") in flat


def test_full_run_frozen_quantities_are_the_stored_benchmark_output():
    from tests.test_frozen_quantities_results import PROMPTS, _cell, _row, _stored

    path = ROOT / "results" / "transcoders" / "frozen-quantities" / "recipe-full.txt"
    lines = path.read_text(encoding="utf-8").strip().splitlines()
    assert lines[0] == "# benchmarks/frozen_quantities.py --transcoders gemma-3-270m-recipe-full --nodes 100"
    table = _stored(path)
    held = "every norm and pattern (MLPs real)"
    features = [_row(table, p, "features", held) for p in PROMPTS]
    neurons = [_row(table, p, "neurons", held) for p in PROMPTS]
    flat = _flat(_readme())
    f, n = (", ".join(_cell(r) for r in rows[:2]) + " and " + _cell(rows[2]) for rows in (features, neurons))
    assert f"agree with their real ablations at {f} on Dallas, IOI and the two-hop prompt, the neurons at {n}:" in flat
    assert all(a.spearman >= b.spearman and a.low < b.high for a, b in zip(features, neurons, strict=True))  # "at least as well, overlapping"
    assert lines[-1].startswith("# ") and f"on this set, {lines[-1].removeprefix('# ')}," in flat
