"""The README's figures for the recipe as the preset stands (the full run's checkpoint resumed
into 4 revival chunks that lift rare features too, ``revive_rare``) are its stored results
(results/transcoders/gemma-3-270m-recipe-lifted/)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from scrying.transcoders.train_config import PRESETS
from tests.test_recipe_full_results import NAMES, _json, _rho
from tests.test_recipe_results import _block, _flat, _readme
from tests.test_recipe_revived_results import revival_benchmark, stored_report

ROOT = Path(__file__).resolve().parents[1]
LIFTED = ROOT / "results" / "transcoders" / "gemma-3-270m-recipe-lifted"
REVIVED = ROOT / "results" / "transcoders" / "gemma-3-270m-recipe-revived"
FULL = ROOT / "results" / "transcoders" / "gemma-3-270m-recipe-full"


def test_lifted_run_is_the_preset_resumed_from_the_full_run():
    """The stored config is the `recipe` preset as it stands; its first 31 chunks are the full
    run's, the last 4 record the features they lifted; the times the README gives are the
    chunks that ran alone."""
    history = _json(LIFTED / "history.json")
    preset = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(PRESETS["recipe"]).items()}
    assert history["config"] == preset and preset["revive_rare"] is True and history["chunks_done"] == 35
    chunks = history["history"]
    assert chunks[:31] == _json(FULL / "history.json")["history"]
    lifted = [c["revived"] for c in chunks[31:]]
    flat = _flat(_readme())
    assert ("Features lifted per chunk (of 147,456; layer 16's of 8,192 in brackets): "
            + ", ".join(f"{sum(r):,} ({r[16]:,})" for r in lifted[:3]) + f" and {sum(lifted[3]):,} ({lifted[3][16]:,})") in flat
    assert all(sum(r) > 0.4 * 147_456 for r in lifted)  # "nearly as many every chunk"
    alone = [c for c in chunks[31:] if c["harvest_cpu_s"] >= 1.9 * c["harvest_s"] and c["train_cpu_s"] >= 1.9 * c["train_s"]]
    assert [c["chunk"] for c in alone] == [33, 34]
    minutes = [(c["harvest_s"] + c["train_s"]) / 60 for c in alone]
    assert f"the last two, alone, took {minutes[0]:.1f} and {minutes[1]:.1f} min" in flat
    span = f"{min(minutes):.1f}-{max(minutes):.1f} min"
    assert f"--preset recipe --out DIR # 31 chunks, then 4 revival chunks of {span} each on this machine alone" in flat
    assert f"4 revival chunks of {span} each (measured on the 2 that ran alone), a whole 3-hour work session here or more" in flat
    assert f"The 4 revival chunks the preset ends with since add {span} each (the recipe with rare features lifted, below;" in flat
    times = _json(LIFTED / "run-times.json")
    assert (times["started"], times["set_written"][11:16], times["report_written"][11:16]) == ("2026-12-07T22:19:09", "23:00", "23:15")
    assert "(22:19:09 to the set at 23:00, its report at 23:15;" in flat


def test_lifted_quality_is_its_stored_report():
    readme = _readme()
    report, revived = stored_report(readme, "recipe-lifted-quality", LIFTED, REVIVED)
    flat = _flat(readme)
    assert (report.dead_fraction <= 0.10).all()
    worst = int(report.dead_fraction.idxmax())
    late = revived.dead_fraction[12:] * 100
    assert (f"at most {report.dead_fraction.max() * 100:.1f}% of a layer's features never fire (layer {worst})**, against "
            f"{revived.dead_fraction.min() * 100:.1f}-{revived.dead_fraction.max() * 100:.1f}% for the revived set and "
            f"{late.min():.1f}-{late.max():.1f}% at its layers 12-17") in flat
    cost = report.fvu - revived.fvu
    assert report.fvu.mean() <= 0.15 and (cost >= 0).all()
    assert f"the mean FVU, {report.fvu.mean():.3f}, meets 0.15** ({cost.min():.3f}-{cost.max():.3f} above the revived set's on each layer)" in flat
    assert (f"the spliced-in loss increase is {report.ce_increase.min():+.3f} to {report.ce_increase.max():+.3f} nats, "
            f"{report.ce_increase.mean():+.3f} on average") in flat
    rise = (report.rare_fraction - revived.rare_fraction) * 100
    assert (rise > 0).all()
    early, later = report.rare_fraction[:12] * 100, report.rare_fraction[12:] * 100
    assert (f"rose, by {rise.min():.1f}-{rise.max():.1f} points, to {early.min():.1f}-{early.max():.1f}% at layers 0-11 and "
            f"{later.min():.1f}-{later.max():.1f}% at layers 12-17") in flat


def test_lifted_graph_figures_are_its_stored_summary():
    from scrying.transcoders.graph_summary import stages_markdown
    from tests.test_recipe_results import _graph_blocks

    readme, flat = _readme(), _flat(_readme())
    summary, revived = _json(LIFTED / "summary.json"), _json(REVIVED / "summary.json")
    (n_at, placed_at), (n_into, placed_into) = _graph_blocks(readme, summary, "recipe-lifted")
    assert _block(readme, "recipe-lifted-stages") == stages_markdown(summary)
    f = {n: _rho(summary, f"{n}-features") for n in NAMES}
    m = {n: _rho(summary, f"{n}-neurons")["spearman"] for n in NAMES}
    old = {n: _rho(revived, f"{n}-features") for n in NAMES}
    assert all(f[n]["n"] == 100 and f[n]["spearman"] < m[n] for n in NAMES)
    assert all(f[n]["low"] < old[n]["high"] and old[n]["low"] < f[n]["high"] for n in NAMES)  # "no prompt moved by more than 100 nodes resolve"
    gap = [f"{m[n] - f[n]['spearman']:.2f}" for n in NAMES]
    assert f"still missed, by {gap[0]}, {gap[1]} and {gap[2]}**" in flat
    d, i, t = f["dallas-texas"], f["ioi"], f["dallas-two-hop"]
    assert t["includes_zero"] and not d["includes_zero"] and not i["includes_zero"]
    assert (f"Dallas {d['spearman']:.2f} [{d['low']:.2f}, {d['high']:.2f}] (the revived set's {old['dallas-texas']['spearman']:.2f}), IOI "
            f"{i['spearman']:.2f} ({old['ioi']['spearman']:.2f}), the two-hop prompt {t['spearman']:.2f} [{t['low']:.2f}, {t['high']:.2f}] "
            f"({old['dallas-two-hop']['spearman']:.2f}), an interval that includes 0") in flat
    assert (n_at, placed_at, n_into, placed_into) == (2, 1, 5, 3)
    assert f"keeps {n_at} features at 'Dallas', {placed_at} of them with a place" in flat
    assert f"{placed_into} of the {n_into} with the largest direct edge into ' Texas' have one" in flat
    into = [(r["layer"], r["feature"]) for r in summary["dallas-texas-features"]["into_target"]]
    at = [r["node_id"].split("_")[2] for r in summary["dallas-texas-features"]["into_target"] if (r["layer"], r["feature"]) == (12, 1968)]
    tokens = _json(LIFTED / "graphs" / "dallas-texas-features.json")["metadata"]["prompt_tokens"]
    assert into.count((12, 1968)) == 2 and f"(L12 #1968 appears twice, at {tokens[int(at[0])]!r} @{at[0]} and {tokens[int(at[1])]!r} @{at[1]};" in flat
    for n in NAMES:  # the stored graphs are the summary's
        graph = _json(LIFTED / "graphs" / f"{n}-features.json")
        assert graph["scrying"]["metadata"]["max_feature_nodes"] == 200


def test_lifted_graphs_selecting_1000_features_are_their_stored_summary():
    from scrying.transcoders.graph_summary import validation_markdown

    readme, flat = _readme(), _flat(_readme())
    wide, narrow = _json(LIFTED / "features-1000" / "summary.json"), _json(LIFTED / "summary.json")
    assert _block(readme, "recipe-lifted-1000-validation") == validation_markdown(wide)
    gf = [wide[f"{n}-features"]["validation"]["graph vs frozen"]["spearman"] for n in NAMES]
    gf_old = [narrow[f"{n}-features"]["validation"]["graph vs frozen"]["spearman"] for n in NAMES]
    assert f"agrees with its frozen model at {min(gf):.2f}-{max(gf):.2f} ({min(gf_old):.2f}-{max(gf_old):.2f} at 200)" in flat
    f = {n: _rho(wide, f"{n}-features") for n in NAMES}
    t = f["dallas-two-hop"]
    assert not t["includes_zero"] and f["ioi"]["includes_zero"]
    assert t["spearman"] > _rho(narrow, "dallas-two-hop-features")["spearman"]
    assert all(f[n]["spearman"] < _rho(narrow, f"{n}-features")["spearman"] for n in ("dallas-texas", "ioi"))  # "do not rise"
    assert (f"rises to {t['spearman']:.2f} [{t['low']:.2f}, {t['high']:.2f}], above 0, while Dallas ({f['dallas-texas']['spearman']:.2f}) "
            f"and IOI ({f['ioi']['spearman']:.2f}, an interval that includes 0) do not rise") in flat
    gap = [f"{_rho(wide, f'{n}-neurons')['spearman'] - f[n]['spearman']:.2f}" for n in NAMES]
    assert f"the target is missed there by {gap[0]}, {gap[1]} and {gap[2]}:" in flat
    slow, fast = _json(LIFTED / "features-1000" / "timings.json"), _json(LIFTED / "timings.json")
    a = [f"{slow[f'trace_{n}-features_s']:.1f}" for n in NAMES]
    b = [f"{fast[f'trace_{n}-features_s']:.1f}" for n in NAMES]
    assert f"took {a[0]}, {a[1]} and {a[2]} s against {b[0]}, {b[1]} and {b[2]} s at 200 features" in flat
    assert max(fast[f"trace_{n}-features_s"] for n in NAMES) < 20 < slow["trace_ioi-features_s"]


def test_the_gallery_choice_is_stated_with_both_sets_figures():
    """The gallery shows the shipped set's graphs; the README compares them with the one-session
    set's, the gallery's before."""
    for n in NAMES:
        assert (ROOT / "graphs" / "gallery" / f"{n}-features.json").read_bytes() == (LIFTED / "graphs" / f"{n}-features.json").read_bytes()
    lifted = _json(LIFTED / "summary.json")
    session = _json(ROOT / "results" / "transcoders" / "gemma-3-270m-recipe-session" / "summary.json")
    a = {n: _rho(lifted, f"{n}-features")["spearman"] for n in NAMES}
    b = {n: _rho(session, f"{n}-features")["spearman"] for n in NAMES}
    assert a["dallas-texas"] > b["dallas-texas"] and a["ioi"] > b["ioi"] and a["dallas-two-hop"] < b["dallas-two-hop"]
    assert (f"better on Dallas ({a['dallas-texas']:.2f} against {b['dallas-texas']:.2f}) and IOI ({a['ioi']:.2f} against "
            f"{b['ioi']:.2f}) but worse on the two-hop prompt ({a['dallas-two-hop']:.2f} against {b['dallas-two-hop']:.2f}), and "
            "neither set meets the graph target") in _flat(_readme())


def test_lifted_report_on_four_times_the_heldout_text():
    from tests.test_recipe_results import wide_report

    wide, old = wide_report(LIFTED), wide_report(REVIVED)
    assert set(wide.rows) == {130_048} and (wide.dead_fraction <= 0.10).all()
    fall = (old.rare_fraction - wide.rare_fraction) * 100
    assert (fall > 0).all()
    assert (f"at most {wide.dead_fraction.max() * 100:.1f}% of a layer's features never fire (layer {int(wide.dead_fraction.idxmax())}; "
            f"the revived set's {old.dead_fraction.max() * 100:.1f}%), the mean FVU is {wide.fvu.mean():.3f} (the revived set's "
            f"{old.fvu.mean():.3f}), and the rare share *fell* on every layer, by {fall.min():.1f}-{fall.max():.1f} points, to "
            f"{wide.rare_fraction.min() * 100:.1f}-{wide.rare_fraction.max() * 100:.1f}%") in _flat(_readme())


def test_lifted_features_stay_alive_over_more_steps():
    """The README's check that lifted features mostly stay alive is the benchmark's stored output."""
    got = revival_benchmark(ROOT / "results" / "transcoders" / "revival" / "layer-16-lifted.txt")
    (fvu0, dead0), (fvu1, dead1) = got["as-trained"], got["more-steps"]
    assert dead1 - dead0 < 0.01  # "most stay"
    assert (f"took the share dead on the 32,512 held-out positions from {dead0 * 100:.1f}% to {dead1 * 100:.1f}% and the FVU from "
            f"{fvu0:.4f} to {fvu1:.4f}: most stay") in _flat(_readme())
    fresh = revival_benchmark(ROOT / "results" / "transcoders" / "revival" / "layer-16-lifted-fresh.txt")
    (f0, d0), (f1, d1) = fresh["as-trained"], fresh["more-steps"]
    assert (f0, d0) == (fvu0, dead0) and d1 - d0 < 0.01  # the same set, and most stay on text it never saw
    assert "--skip-chunks 35" in (ROOT / "results" / "transcoders" / "revival" / "layer-16-lifted-fresh.txt").read_text()
    assert (f"64 steps took it from {d0 * 100:.1f}% to {d1 * 100:.1f}% and the FVU from {f0:.4f} to {f1:.4f}: the same") in _flat(_readme())


def test_every_gallery_feature_node_has_a_card():
    """"The gallery's transcoder pages (the shipped recipe set) carry a card on every feature node"."""
    assert "pages (the shipped recipe set) carry a card on every feature node" in _flat(_readme())
    for n in NAMES:
        graph = _json(ROOT / "graphs" / "gallery" / f"{n}-features.json")["scrying"]
        features = [x["node_id"] for x in graph["nodes"] if x["kind"] == "feature"]
        assert features and set(features) <= set(graph["metadata"]["cards"]), n


def test_which_unfreezing_closes_the_gap_is_the_stored_summary():
    """The table ranking each partly unfrozen model against the real one, and every figure of the
    paragraph reading it, come from the shipped set's summaries (200 and 1,000 features)."""
    from scrying.transcoders.graph_summary import stages_vs_real_markdown

    readme, flat = _readme(), _flat(_readme())
    summary, wide = _json(LIFTED / "summary.json"), _json(LIFTED / "features-1000" / "summary.json")
    assert _block(readme, "recipe-lifted-stages-vs-real") == stages_vs_real_markdown(summary)

    def at(source: dict, name: str, basis: str, stage: str) -> float:
        return source[f"{name}-{basis}"]["stages_vs_real"][stage]["spearman"]

    def three(values: list[str]) -> str:
        return f"{values[0]}, {values[1]} and {values[2]}"

    neuron_steps = []
    for n in NAMES:
        stages = list(summary[f"{n}-neurons"]["stages_vs_real"])
        steps = [at(summary, n, "neurons", b) - at(summary, n, "neurons", a) for a, b in zip(stages, stages[1:], strict=False)]
        assert max(steps) == steps[stages.index("+ final norm live") - 1]  # "the largest single step on every prompt"
        neuron_steps.append(steps[stages.index("+ final norm live") - 1])
    assert f"the largest single step on every prompt is the final norm ({three([f'{s:+.2f}' for s in neuron_steps])})" in flat
    neurons = [at(summary, n, "neurons", "+ norm scales live") for n in NAMES]
    features = [at(summary, n, "features", "+ norm scales live") for n in NAMES]
    assert f"ranks the nodes as the real one does at {min(neurons):.2f}-{max(neurons):.2f}" in flat
    assert all(f < m for f, m in zip(features, neurons, strict=True))
    assert (f"pattern live the neurons' model ranks the nodes as the real one does at {min(neurons):.2f}-{max(neurons):.2f} and the "
            f"features' at {min(features):.2f}-{max(features):.2f}") in flat  # the section's summary
    assert (f"reaches only {min(features):.2f}-{max(features):.2f}, short of the neurons' by "
            f"{three([f'{m - f:.2f}' for f, m in zip(features, neurons, strict=True)])}") in flat
    errors = [at(summary, n, "features", "+ error nodes live") - at(summary, n, "features", "frozen") for n in NAMES]
    assert f"(error nodes live) moves the features' model by {three([f'{e:+.2f}' for e in errors])}" in flat
    masks = [at(summary, n, "features", "+ features' masks live") for n in NAMES]
    assert all(m < f for m, f in zip(masks, features, strict=True))  # "away from the real model on every prompt"
    assert "on every prompt (" + ", ".join(f"{f:.2f} → {m:.2f}" for f, m in zip(features, masks, strict=True)) + ")" in flat
    wide_features = [at(wide, n, "features", "+ norm scales live") for n in NAMES]
    assert f"changes little: {min(wide_features):.2f}-{max(wide_features):.2f} with every norm and pattern live" in flat
    for n in NAMES:  # the first model is the frozen one the headline "frozen vs real" compares
        for basis in ("features", "neurons"):
            first = summary[f"{n}-{basis}"]["stages_vs_real"]["frozen"]["spearman"]
            assert abs(first - summary[f"{n}-{basis}"]["validation"]["frozen vs real"]["spearman"]) < 1e-12


def test_rare_feature_readability_is_its_stored_sample():
    """The table is summary.md, itself recomputed here from features.json; the paragraph's means
    and the contexts it quotes are the sampled features'."""
    import importlib.util
    import json

    rare = ROOT / "results" / "transcoders" / "rare-features"
    readme, flat = _readme(), _flat(_readme())
    assert _block(readme, "rare-features") == (rare / "summary.md").read_text(encoding="utf-8").strip()
    stored = json.loads((rare / "features.json").read_text(encoding="utf-8"))
    spec = importlib.util.spec_from_file_location("rare_features_regenerate", rare / "regenerate.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    # the table from the stored sample (no model)
    assert script.summary_markdown(stored) == (rare / "summary.md").read_text(encoding="utf-8")

    def mean(layer: int, group: str) -> float:
        scores = [r["agreement"] for r in stored["features"] if (r["layer"], r["group"]) == (layer, group)]
        assert len(scores) == 12
        return sum(scores) / len(scores)

    lifted, rare_, common = ([f"{mean(ly, g):.2f}" for ly in (6, 12)] for g in ("lifted", "rare", "common"))
    assert (f"least consistent at both layers ({lifted[0]} and {lifted[1]}, against {rare_[0]} and {rare_[1]} for rare features "
            f"that fire about as often, and {common[0]} and {common[1]} for common ones)") in flat
    assert all(mean(ly, "lifted") < mean(ly, "rare") < mean(ly, "common") for ly in (6, 12))
    feature = {(r["layer"], r["feature"]): r for r in stored["features"]}
    assert len(feature) == len(stored["features"])  # no feature drawn into two groups
    few = {g: sum(len(r["contexts"]) < 10 for r in stored["features"] if r["group"] == g) for g in ("lifted", "rare", "common")}
    assert few["common"] == 0
    assert f"({few['lifted']} of the 24 lifted features sampled, {few['rare']} of the 24 rare ones)" in flat

    def at_tokens(layer: int, index: int) -> list[str]:
        return [c.split("[[", 1)[1].split("]]", 1)[0] for c in feature[(layer, index)]["contexts"]]

    assert feature[(12, 1835)]["group"] == "lifted" and all(
        any(w in c for c in feature[(12, 1835)]["contexts"]) for w in ("has[[ strengthened]]", "so[[othed]]", "has[[ guided]]"))
    assert feature[(12, 1759)]["group"] == "lifted" and at_tokens(12, 1759)[:4] == [" Bonaparte", " pill", " Bell", " doctor"]
    assert feature[(12, 1001)]["group"] == "common" and {" his", " her"} <= set(at_tokens(12, 1001))
    assert feature[(12, 3073)]["group"] == "common" and all(c.split("[[")[0][-1] in ",:;" for c in feature[(12, 3073)]["contexts"])
    assert set(at_tokens(12, 3073)) == {" and"} and set(at_tokens(12, 1001)) == {" his", " her"}
