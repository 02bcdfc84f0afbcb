"""The README's figures for the transcoder recipe are its stored results: the first run's
snapshot report (results/transcoders/gemma-3-270m-recipe-v1-chunk5/), the validation cost
(results/transcoders/validation-cost/) and the comparison with circuit-tracer on a
recipe-shaped set (results/transcoders/vs_circuit_tracer/dallas-recipe-v1-chunk5.txt), and the
three runs' sets after 5 chunks side by side (results/transcoders/five-chunks/), and the recipe run's set
after 12 (results/transcoders/twelve-chunks/)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from scrying.transcoders.quality import quality_markdown

ROOT = Path(__file__).resolve().parents[1]
V1 = ROOT / "results" / "transcoders" / "gemma-3-270m-recipe-v1-chunk5"
COST = ROOT / "results" / "transcoders" / "validation-cost"


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_first_run_quality_table_is_its_stored_report():
    readme = _readme()
    block = readme.split("<!-- recipe-v1-quality -->")[1].split("<!-- /recipe-v1-quality -->")[0].strip()
    report = pd.read_csv(V1 / "report.csv")
    assert block == quality_markdown(report)
    snap = json.loads((V1 / "snapshot.json").read_text())
    assert (snap["chunks_done"], snap["n_chunks"], snap["steps_done"], snap["tokens_done"]) == (5, 31, 160, 327_680)
    flat = _flat(readme)
    assert f"after 5 chunks ({snap['tokens_done']:,} tokens, {snap['steps_done']} Adam steps" in flat
    dead = dict(zip(report.layer, report.dead_fraction, strict=True))
    late = [dead[ly] for ly in range(13, 17)]
    assert f"had {dead[4]:.0%}, {_range(dead[3], dead[10])} and {_range(*late)} of their features dead" in flat


def _range(*values: float) -> str:
    return f"{min(values) * 100:.0f}-{max(values) * 100:.0f}%"


def _cost(name: str) -> dict:
    text = (COST / name).read_text(encoding="utf-8")
    assert "median of 3 runs" in text, name
    out: dict = {}
    for key, pattern in {"with": r"trace with validation\s+([\d.]+)", "without": r"trace without validation\s+([\d.]+)",
                         "real": r"unfrozen \['basis', [^\]]*\], 3 scale\(s\)\s+([\d.]+)",
                         "masks": r"unfrozen \['errors', 'masks', [^\]]*\], 1 scale\(s\)\s+([\d.]+)"}.items():
        found = re.search(pattern, text)
        assert found, (name, key)
        out[key] = float(found.group(1))
    out["runs"] = [float(v) for v in re.search(r"every run \(wall s\)\s+([\d. ]+)\n", text).group(1).split()]
    frozen = [float(v) for v in re.findall(r"unfrozen nothing, \d scale\(s\)\s+([\d.]+)", text)]
    between = [float(v) for v in re.findall(r"unfrozen \['errors'(?:, 'final_norm')?(?:, 'norms')?(?:, 'patterns')?\], 1 scale\(s\)\s+([\d.]+)", text)]
    # frozen: 3 where the linearity check failed and every scale was measured; between: 4 since
    # the final-norm stage
    assert len(frozen) in (2, 3) and len(between) == (4 if "'final_norm'" in text else 3), name
    out["frozen"], out["between"], out["stages"] = sum(frozen), sum(between), len(between)
    return out


#: The README's validation-cost rows: label, stored benchmark output.
COST_ROWS = (("random, `default` shape (4,096 x TopK-32)", "15-tokens-default-shape.txt"),
             ("random, recipe shape (8,192 x TopK-64)", "15-tokens-recipe-shape.txt"),
             ("recipe v1 after 5 chunks (trained, 8,192 x TopK-64)", "15-tokens-recipe-v1-chunk5.txt"),
             ("recipe in one session (the gallery's until 2026-12-08; 2026-12-07)", "15-tokens-recipe-session.txt"),
             ("the same, validation with its final-norm stage (2026-12-07)", "15-tokens-recipe-session-final-norm.txt"),
             ("recipe as shipped, rare features lifted (the gallery's set; 2026-12-08)", "15-tokens-recipe-lifted.txt"))


def cost_table() -> str:
    """The validation-cost table, from the stored outputs."""
    lines = ["| transcoder set | trace with validation (median) | its runs | without | real model (300 passes) | "
             "masks live (100) | frozen model | the stages between (100 rows each) |",
             "|---|---|---|---|---|---|---|---|"]
    for label, name in COST_ROWS:
        c = _cost(name)
        lines.append(f"| {label} | **{c['with']:.1f} s** | {', '.join(f'{r:.1f}' for r in c['runs'])} s | {c['without']:.1f} s | "
                     f"{c['real']:.1f} s | {c['masks']:.1f} s | {c['frozen']:.1f} s | {c['between']:.1f} s ({c['stages']}) |")
    return "\n".join(lines)


def test_validation_cost_table_is_the_stored_benchmark_output():
    readme = _readme()
    assert _block(readme, "validation-cost") == cost_table()
    recipe = _cost("15-tokens-recipe-shape.txt")
    runs = ", ".join(f"{r:.1f} s" for r in recipe["runs"])
    assert f"(median {recipe['with']:.1f} s, its runs {runs})" in _flat(readme)
    assert _cost("15-tokens-default-shape.txt")["with"] <= 20.0 and _cost("15-tokens-recipe-v1-chunk5.txt")["with"] <= 20.0
    session = _cost("15-tokens-recipe-session.txt")
    assert session["with"] <= 20.0 and f"one-session set took {session['with']:.1f} s" in _flat(readme)
    shipped = _cost("15-tokens-recipe-lifted.txt")
    frozen = [float(v) for v in re.findall(r"unfrozen nothing, \d scale\(s\)\s+([\d.]+)", (COST / "15-tokens-recipe-lifted.txt").read_text(encoding="utf-8"))]
    assert shipped["with"] <= 20.0 and len(frozen) == 3  # the linearity check failed: every scale measured
    assert (f"The shipped set, the gallery's, took {shipped['with']:.1f} s (2026-12-08, idle machine): its frozen model departed "
            f"from linearity by 1.04e-4 of the largest change, just over the 1e-4 tolerance, so every scale was measured "
            f"({frozen[-1]:.1f} s more)") in _flat(readme)
    staged = _cost("15-tokens-recipe-session-final-norm.txt")
    assert staged["with"] <= 20.0 and staged["stages"] == session["stages"] + 1
    stage = float(re.search(r"unfrozen \['errors', 'final_norm', 'patterns'\], 1 scale\(s\)\s+([\d.]+)",
                            (COST / "15-tokens-recipe-session-final-norm.txt").read_text(encoding="utf-8")).group(1))
    assert (f"With the final-norm stage the same trace took {staged['with']:.1f} s (the training job paused while it ran): the "
            f"stage itself took {stage:.1f} s, and the rest is the machine being slower that afternoon (the trace without "
            f"validation took {staged['without']:.1f} s against {session['without']:.1f} s)") in _flat(readme)
    assert staged["without"] > session["without"]
    before = [float(re.search(r"trace with validation\s+([\d.]+)", (COST / "before-reach" / n).read_text()).group(1))
              for n in ("15-tokens-default-shape.txt", "15-tokens-recipe-shape.txt")]
    assert f"it took {before[0]:.1f} s with a random set of the `default` shape and {before[1]:.1f} s" in _flat(readme)
    assert f"{before[1] - 20:.1f} s over the 20 s target" in _flat(readme)


@pytest.mark.parametrize(("name", "label"), [("dallas-recipe-v1-chunk5.txt", "recipe v1 after 5 chunks"),
                                           ("dallas-recipe-session.txt", "recipe in one session, the gallery's until 2026-12-08"),
                                           ("dallas-recipe-lifted.txt", "recipe as shipped, rare features lifted, the gallery's set")])
def test_recipe_shaped_circuit_tracer_row_is_the_stored_output(name, label):
    text = (ROOT / "results" / "transcoders" / "vs_circuit_tracer" / name).read_text(encoding="utf-8")
    t = re.search(r"wall scrying ([\d.]+) s, circuit-tracer ([\d.]+) s, ratio scrying/circuit-tracer ([\d.]+)", text).groups()
    rise = re.search(r"own rise .*? scrying ([\d.]+) GB, circuit-tracer ([\d.]+) GB, ratio ([\d.]+)", text).groups()
    peak = re.search(r"whole process's peak .*?\) scrying ([\d.]+) GB, circuit-tracer ([\d.]+) GB, ratio ([\d.]+)", text).groups()
    row = (f"| 11 tokens, {label} (8,192 x TopK-64) | {t[0]} s / {t[1]} s = **{t[2]}x** | "
           f"{peak[0]} GB / {peak[1]} GB = **{peak[2]}x**; attribution's own rise {rise[0]} GB / {rise[1]} GB = **{rise[2]}x** |")
    assert row in _readme()
    within, total = map(int, re.search(r"edge agreement .*?: (\d+)/(\d+) within relative 0.0001", text).groups())
    assert within == total and f"all {total:,} do" in _flat(_readme())
    for kind in ("feature -> feature", "token -> feature", "feature -> logit", "token -> logit"):  # each kind against its own floor
        k_within, k_total = map(int, re.search(rf"{kind}: (\d+)/(\d+) within", text).groups())
        assert k_within == k_total, kind
    assert float(t[2]) <= 0.5 and float(rise[2]) <= 0.5


def _block(readme: str, name: str) -> str:
    return readme.split(f"<!-- {name} -->")[1].split(f"<!-- /{name} -->")[0].strip()


def _graph_blocks(readme: str, summary: dict, prefix: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """The README's validation, 'Dallas' and ' Texas' blocks named ``prefix-*`` are ``summary``'s
    tables; returns (features, with a place) at 'Dallas' and into ' Texas'."""
    from scrying.transcoders.graph_summary import (
        features_markdown,
        place_totals,
        validation_markdown,
    )

    assert _block(readme, f"{prefix}-validation") == validation_markdown(summary)
    dallas = summary["dallas-texas-features"]
    assert _block(readme, f"{prefix}-dallas") == features_markdown(dallas["at_token"]["features"])
    assert _block(readme, f"{prefix}-texas") == features_markdown(dallas["into_target"])
    return place_totals(dallas["at_token"]["features"]), place_totals(dallas["into_target"])


def test_first_run_graph_figures_are_its_stored_summary():
    readme = _readme()
    summary = json.loads((V1 / "summary.json").read_text(encoding="utf-8"))
    (n_at, placed_at), (n_into, placed_into) = _graph_blocks(readme, summary, "recipe-v1")
    flat = _flat(readme)
    assert f"{placed_at} of the {n_at} most influential features have a place" in flat
    assert f"all {placed_into} of the {n_into} features with the largest direct edge into ' Texas' do" in flat and placed_into == n_into
    assert summary["dallas-two-hop-features"]["at_token"]["features"] == []  # "no feature at 'Dallas' survives pruning"
    features = [summary[k]["validation"] for k in summary if k.endswith("-features")]
    rho = [v["frozen vs real"]["spearman"] for v in features]
    baseline = [v["activation x gradient vs real"]["spearman"] for v in features]
    assert f"({min(rho):.2f}-{max(rho):.2f} against 0.24-0.25 on 50 nodes)" in flat
    assert f"at {min(baseline):.2f}-{max(baseline):.2f}, better than any graph" in flat
    shares = [summary[k]["skip_share"] for k in summary if k.endswith("-features")]
    assert f"carry {min(shares) * 100:.0f}-{max(shares) * 100:.0f}% of the attribution" in flat
    for name in ("dallas-texas", "ioi", "dallas-two-hop"):  # "less well than neurons on every prompt"
        assert summary[f"{name}-features"]["validation"]["frozen vs real"]["spearman"] < summary[f"{name}-neurons"]["validation"]["frozen vs real"]["spearman"]


def test_first_run_training_figures_are_its_stored_history_and_log():
    history = json.loads((V1 / "history.json").read_text())
    log = (V1 / "training-log.txt").read_text()
    flat = _flat(_readme())
    five, six = history[4]["dead_fraction"], history[5]["dead_fraction"]
    for layer in (4, 10, 2):
        assert f"layer {layer} {five[layer]:.1%} to {six[layer]:.1%}" in flat
    aux = [a for chunk in history[4:6] for a in chunk["aux"]]
    assert 0.9 <= min(aux) and max(aux) <= 1.05  # "AuxK (whose loss stayed at ~1.0 ...)"
    first_v1 = float(log.split("## v1")[1].split("mean normalised MSE ")[1].split()[0])
    first_v2 = float(log.split("## v2")[1].split("mean normalised MSE ")[1].split()[0])
    assert f"MSE {first_v2:,.0f} over its first chunk, against the first run's {first_v1:.0f}" in flat


def test_first_run_stage_table_is_its_stored_summary():
    from scrying.transcoders.graph_summary import stages_markdown

    readme = _readme()
    summary = json.loads((V1 / "summary.json").read_text(encoding="utf-8"))
    assert _block(readme, "recipe-v1-stages") == stages_markdown(summary)
    stage = {k: {n: round(v["spearman"], 2) for n, v in item["stages"].items()} for k, item in summary.items()}
    flat = _flat(readme)
    ioi_f, ioi_n = stage["ioi-features"], stage["ioi-neurons"]
    assert (f"(IOI: features {ioi_f['graph vs + error nodes live']:.2f} to {ioi_f['graph vs + attention patterns live']:.2f}, "
            f"neurons {ioi_n['graph vs + error nodes live']:.2f} to {ioi_n['graph vs + attention patterns live']:.2f};") in flat
    d = stage["dallas-texas-features"]
    masks = "graph vs + features' masks live"
    assert f"(Dallas {d['graph vs + norm scales live']:.2f} to {d[masks]:.2f})" in flat
    assert f"partly gives back ({d['graph vs real']:.2f})" in flat
    for name in ("dallas-texas", "ioi"):  # "a large step on the Dallas and IOI prompts"
        for basis in ("features", "neurons"):
            s = stage[f"{name}-{basis}"]
            assert s["graph vs + error nodes live"] - s["graph vs + attention patterns live"] > 0.2
    for name in ("dallas-texas", "ioi", "dallas-two-hop"):  # "a further step on every prompt"
        f = stage[f"{name}-features"]
        assert f[masks] < f["graph vs + norm scales live"]


FIVE = ROOT / "results" / "transcoders" / "five-chunks"
#: The README's five-chunk rows: label, how its encoder rows started, stored files' name.
FIVE_ROWS = (("first run", "random", "v1"),
             ("third run", "drawn from the centred inputs, every layer", "v3"),
             ("fourth run (the recipe now)", "drawn from the inputs at layers 0-11, centred random at 12-17", "v4"))


def _percent(value: float) -> str:
    return f"{value * 100:.1f}".rstrip("0").rstrip(".")


def _five(name: str) -> pd.DataFrame:
    report = pd.read_csv(FIVE / f"{name}-report.txt", sep=r"\s+")
    assert list(report.layer) == list(range(18)), name
    return report


def five_chunks_table() -> str:
    """The three runs' 5-chunk sets on the same 8,128 held-out positions, from the stored reports."""
    lines = ["| set after 5 of 31 chunks | encoder rows at the start | mean FVU | FVU range | never fired, layers 0-11 | "
             "never fired, layers 12-17 | rare (fired, < 1 in 1,000), mean |", "|---|---|---|---|---|---|---|"]
    for label, start, name in FIVE_ROWS:
        r = _five(name)
        early, late = r.dead_fraction[r.layer < 12], r.dead_fraction[r.layer >= 12]
        lines.append(f"| {label} | {start} | {r.fvu.mean():.3f} | {r.fvu.min():.3f}-{r.fvu.max():.3f} | "
                     f"{_percent(early.min())}-{_percent(early.max())}% | {_percent(late.min())}-{_percent(late.max())}% | "
                     f"{_percent(r.rare_fraction.mean())}% |")
    return "\n".join(lines)


def test_five_chunk_table_is_the_stored_reports():
    assert _block(_readme(), "five-chunks") == five_chunks_table()
    snaps = {name: json.loads((FIVE / f"{name}-snapshot.json").read_text(encoding="utf-8")) for _, _, name in FIVE_ROWS}
    for name, snap in snaps.items():
        assert (snap["chunks_done"], snap["n_chunks"], snap["tokens_done"]) == (5, 31, 327_680), name
    assert "encoder_init" not in snaps["v1"]["config"]  # the first run predates the data-drawn start: random rows
    assert snaps["v3"]["config"]["encoder_init"] == "data" and "random_init_layers" not in snaps["v3"]["config"]
    assert snaps["v4"]["config"]["random_init_layers"] == [12, 13, 14, 15, 16, 17]
    v3, v4 = _five("v3"), _five("v4")  # same seed and start at layers 0-11: the same weights there
    assert (v3.fvu[:12] == v4.fvu[:12]).all() and (v3.dead_fraction[:12] == v4.dead_fraction[:12]).all()
    flat = _flat(_readme())
    late = {name: _five(name)[lambda r: r.layer >= 12] for _, _, name in FIVE_ROWS}
    fvu = {name: f"{r.fvu.min():.3f}-{r.fvu.max():.3f}" for name, r in late.items()}
    assert f"its FVU is {fvu['v4']} (third run {fvu['v3']}, first run {fvu['v1']})" in flat
    quiet = {name: f"{(r.dead_fraction + r.rare_fraction).mean():.0%}" for name, r in late.items()}
    assert f"is {quiet['v4']} there, against {quiet['v3']} and {quiet['v1']}" in flat
    assert f"mean FVU {v4.fvu.mean():.3f} against 0.15, and {(v4.dead_fraction > 0.10).sum()} of 18 layers" in flat


TWELVE = ROOT / "results" / "transcoders" / "twelve-chunks"


def test_twelve_chunk_figures_are_the_stored_report_and_log():
    import numpy as np

    report = pd.read_csv(TWELVE / "v4-report.txt", sep=r"\s+")
    assert list(report.layer) == list(range(18)) and set(report.rows) == {32_512}
    snap = json.loads((TWELVE / "v4-snapshot.json").read_text(encoding="utf-8"))
    assert (snap["chunks_done"], snap["n_chunks"], snap["steps_done"], snap["tokens_done"]) == (12, 31, 384, 786_432)
    assert snap["config"]["random_init_layers"] == [12, 13, 14, 15, 16, 17]
    flat = _flat(_readme())
    worst = report.loc[report.dead_fraction.idxmax()]
    assert f"at most {_percent(worst.dead_fraction)}% of its features never firing (layer {int(worst.layer)}; the target is 10%)" in flat
    assert worst.dead_fraction <= 0.10
    assert f"the mean FVU is {report.fvu.mean():.3f} ({report.fvu.min():.3f}-{report.fvu.max():.3f} per layer) against 0.15" in flat
    late = report.rare_fraction[report.layer >= 12]
    assert f"{_percent(round(report.rare_fraction.mean(), 3))}% of features fire rarely, {_percent(round(late.min(), 3))}-{_percent(round(late.max(), 3))}% at layers 12-17" in flat
    mse = [float(m) for m in re.findall(r"chunk (?:\d+)/31: .*mean normalised MSE ([\d.]+)", (TWELVE / "v4-training-log.txt").read_text())]
    assert len(mse) == 12
    chunks = np.arange(6, 13)
    slope, intercept = np.polyfit(np.log(chunks), np.log(mse[5:12]), 1)
    at_31 = float(np.exp(intercept) * 31**slope)
    projected = report.fvu.mean() * at_31 / mse[11]
    assert (f"(mean normalised MSE {mse[5]:.1f} at chunk 6, {mse[11]:.1f} at chunk 12) fell as about chunks^{slope:.2f}" in flat)
    assert f"it reaches ~{at_31:.1f} at chunk 31, and an FVU that falls in proportion ends near {projected:.3f}" in flat
    assert f"missed by about {projected - 0.15:.3f}" in flat


def test_sparse_gradient_figures_are_the_stored_benchmark_output():
    text = (ROOT / "results" / "transcoders" / "sparse-gradient" / "transcoder-step.txt").read_text(encoding="utf-8")
    ratio = re.search(r"ratio sparse/dense ([\d.]+)", text).group(1)
    diff = re.search(r"largest gradient difference, relative to that weight's largest gradient: ([\d.e+-]+)", text).group(1)
    flat = _flat(_readme())
    assert f"one layer's step at {ratio}x the dense autograd's time, gradients within {diff} of it" in flat
    assert float(ratio) < 1 and float(diff) < 1e-5


SESSION = ROOT / "results" / "transcoders" / "gemma-3-270m-recipe-session"


def test_one_session_quality_is_its_stored_report_and_log():
    readme = _readme()
    report = pd.read_csv(SESSION / "report.csv")
    assert _block(readme, "recipe-session-quality") == quality_markdown(report)
    assert list(report.layer) == list(range(18)) and set(report.rows) == {32_512}
    history = json.loads((SESSION / "history.json").read_text(encoding="utf-8"))
    assert history["chunks_done"] == 12 and history["config"]["total_tokens"] == 786_432
    assert history["config"]["warmup_steps"] == 100 and history["config"]["final_lr_fraction"] == 0.1
    flat = _flat(readme)
    worst = report.loc[report.dead_fraction.idxmax()]
    assert worst.dead_fraction <= 0.10
    assert f"(at most {_percent(round(worst.dead_fraction, 3))}%, layer {int(worst.layer)})" in flat
    mean = report.fvu.mean()
    assert f"the mean FVU, {mean:.3f} ({report.fvu.min():.3f}-{report.fvu.max():.3f} per layer), misses 0.15 by {mean - 0.15:.3f}" in flat
    assert f"by {report.ce_increase.min():.3f}-{report.ce_increase.max():.3f} nats" in flat
    assert f"+{report.ce_increase.mean():.3f} on average" in flat
    v4 = pd.read_csv(TWELVE / "v4-report.txt", sep=r"\s+")
    gap = report.fvu - v4.fvu
    assert (gap > 0).all() and f"by {gap.min():.2f}-{gap.max():.2f} each" in flat
    assert f"(mean FVU {v4.fvu.mean():.3f} on the same 32,512 positions" in flat
    v1 = pd.read_csv(V1 / "report.csv")
    assert {round(c, 6) for c in report.ce_clean} == {round(c, 6) for c in v1.ce_clean} and f"is {report.ce_clean[0]:.6f}, as in the first run's report" in flat
    mse = [float(m) for m in re.findall(r"chunk \d+/12: .*mean normalised MSE ([\d.]+)", (SESSION / "training-log.txt").read_text())]
    old = [float(m) for m in re.findall(r"chunk \d+/31: .*mean normalised MSE ([\d.]+)", (TWELVE / "v4-training-log.txt").read_text())]
    assert len(mse) == 12 and len(old) == 12
    assert f"({mse[0]:.0f} and {mse[1]:.0f} against {old[0]:.0f} and {old[1]:.0f};" in flat
    assert all(m > o for m, o in zip(mse[7:], old[7:], strict=True))  # "from chunk 8 on it stays above v4's"
    assert f"{mse[11]:.1f} against {old[11]:.1f} at chunk 12" in flat
    rates = [float(r) for r in re.findall(r"harvest (\d+) tok/s", (SESSION / "training-log.txt").read_text())]
    steps = [float(s) for s in re.findall(r"\(([\d.]+) s/step\)", (SESSION / "training-log.txt").read_text())]
    assert f"harvest {min(rates):.0f}-{max(rates):.0f} tok/s, {min(steps):.1f}-{max(steps):.1f} s an Adam step" in flat


def test_one_session_graph_figures_are_its_stored_summary():
    from scrying.transcoders.graph_summary import positions_markdown, stages_markdown

    readme = _readme()
    summary = json.loads((SESSION / "summary.json").read_text(encoding="utf-8"))
    (n_at, placed_at), (n_into, placed_into) = _graph_blocks(readme, summary, "recipe-session")
    assert _block(readme, "recipe-session-stages") == stages_markdown(summary)
    assert _block(readme, "recipe-session-ioi-positions") == positions_markdown(summary["ioi-features"]["by_position"])
    flat = _flat(readme)
    assert f"{placed_at} of the {n_at} most influential features at 'Dallas' have a place" in flat and 2 * placed_at > n_at
    assert f"all {placed_into} of the {n_into} features with the largest direct edge into ' Texas' do" in flat and placed_into == n_into
    assert summary["dallas-two-hop-features"]["at_token"]["features"] == []
    rho = {k.removesuffix("-features"): (summary[k]["validation"]["frozen vs real"], summary[k.replace("-features", "-neurons")]["validation"]["frozen vs real"])
           for k in summary if k.endswith("-features")}
    assert all(f["n"] == 100 for f, _ in rho.values())
    assert all(f["spearman"] < n["spearman"] for f, n in rho.values())  # "missed on every prompt"
    d, t, i = rho["dallas-texas"], rho["dallas-two-hop"], rho["ioi"]
    assert (f"(Dallas {d[0]['spearman']:.2f} against {d[1]['spearman']:.2f}, two-hop {t[0]['spearman']:.2f} against "
            f"{t[1]['spearman']:.2f}, IOI {i[0]['spearman']:.2f} against {i[1]['spearman']:.2f})") in flat
    assert i[0]["includes_zero"] and not d[0]["includes_zero"] and not t[0]["includes_zero"]
    assert f"({d[0]['low']:.2f}, {t[0]['low']:.2f})" in flat
    v1 = json.loads((V1 / "summary.json").read_text(encoding="utf-8"))
    old = [v1[f"{k}-features"]["validation"]["frozen vs real"]["spearman"] for k in ("dallas-texas", "ioi", "dallas-two-hop")]
    assert f"({old[0]:.2f}, {old[1]:.2f}, {old[2]:.2f} above)" in flat
    assert all(rho[k][0]["spearman"] <= o for k, o in zip(("dallas-texas", "ioi", "dallas-two-hop"), old, strict=True))
    shares = [summary[k]["skip_share"] for k in summary if k.endswith("-features")]
    assert f"carry {min(shares) * 100:.0f}-{max(shares) * 100:.0f}% of the attribution" in flat
    assert f"one-session set {min(shares) * 100:.0f}-{max(shares) * 100:.0f}%" in flat
    stage = summary["ioi-features"]["stages"]
    neurons = summary["ioi-neurons"]["stages"]
    masks, real = stage["graph vs + features' masks live"]["spearman"], stage["graph vs real"]["spearman"]
    assert (f"fall from {stage['graph vs + error nodes live']['spearman']:.2f} to {stage['graph vs + attention patterns live']['spearman']:.2f} "
            f"when attention patterns go live (neurons {neurons['graph vs + error nodes live']['spearman']:.2f} to "
            f"{neurons['graph vs + attention patterns live']['spearman']:.2f}), to {masks:.2f} when their TopK masks move, and to {real:.2f}") in flat
    def drop(s: dict) -> float:  # what live attention patterns cost
        return s["graph vs + error nodes live"]["spearman"] - s["graph vs + attention patterns live"]["spearman"]

    assert drop(stage) > drop(neurons)  # "live attention costs the features more than the neurons"
    assert real < masks < stage["graph vs + norm scales live"]["spearman"]  # "lose again at the two stages that neurons do not have"
    last = [r for r in summary["ioi-neurons"]["by_position"] if r["pos"] == 14][0]
    assert f"({last['nodes']} nodes, {last['spearman']:.2f} [{last['low']:.2f}, {last['high']:.2f}])" in flat
    mary = [r for r in summary["ioi-features"]["by_position"] if r["token"] == " Mary"][0]
    assert f"mean effect of {mary['mean_predicted']:.3f} on the target" in flat and f"real model shows {mary['mean_measured']:+.3f}" in flat


def test_gallery_feature_graphs_are_the_shipped_sets_and_the_readme_says_what_their_pages_say():
    """The gallery's three feature graphs are the ones the recipe check traced and validated with
    the shipped preset's set (the full run, rare features lifted), byte for byte; the README's
    gallery sentence is what their pages say; the one-session set's graphs, the gallery's before,
    are kept in its results folder and are the ones its summary describes."""
    from scrying.viewer.report import summarise

    gallery = ROOT / "graphs" / "gallery"
    lifted = ROOT / "results" / "transcoders" / "gemma-3-270m-recipe-lifted"
    names = ("dallas-texas", "ioi", "dallas-two-hop")
    for name in names:
        assert (gallery / f"{name}-features.json").read_bytes() == (lifted / "graphs" / f"{name}-features.json").read_bytes()
        kept = json.loads((SESSION / "graphs" / f"{name}-features.json").read_text(encoding="utf-8"))
        rho = kept["scrying"]["metadata"]["validation"]["reports"]["frozen vs real, scale 0"]["spearman"]
        assert rho == json.loads((SESSION / "summary.json").read_text(encoding="utf-8"))[f"{name}-features"]["validation"]["frozen vs real"]["spearman"]
    pages = {name: summarise(json.loads((gallery / f"{name}-features.json").read_text(encoding="utf-8"))) for name in names}
    flat = _flat(_readme())
    d, i, t = pages["dallas-texas"], pages["ioi"], pages["dallas-two-hop"]
    assert f"({d.error_share:.0%} of what reaches ' Texas' starts at error nodes, {i.error_share:.0%} of what reaches ' Mary')" in flat
    assert (f"Spearman {d.graph_vs_real.value:.2f} on Dallas and {i.graph_vs_real.value:.2f} on IOI and indistinguishable from 0 "
            f"on the two-hop prompt ({t.graph_vs_real.value:.2f})") in flat and "indistinguishable from 0" in t.sentence
    assert "indistinguishable from 0" not in d.sentence + i.sentence
    baselines = [p.baseline.value for p in pages.values()]
    assert f"far below activation × gradient ({min(baselines):.2f}-{max(baselines):.2f})" in flat
    assert "the shipped recipe's set (`--preset recipe`, rare features lifted" in flat


def test_one_session_times_are_its_stored_clock_readings():
    from datetime import datetime

    times = {k: datetime.fromisoformat(v) for k, v in json.loads((SESSION / "run-times.json").read_text()).items() if k != "note"}
    minutes = {k: (times[k] - times["started"]).total_seconds() / 60 for k in ("set_written", "report_written")}
    flat = _flat(_readme())
    assert f"wrote the set {minutes['set_written']:.1f} min after the command" in flat
    assert f"its report {minutes['report_written'] - minutes['set_written']:.0f} min later" in flat
    assert f"# 12 chunks, 384 Adam steps: {minutes['report_written']:.0f} min on this idle 2-core machine" in flat
    assert f"one-session set (the gallery's until 2026-12-08) in {minutes['report_written']:.0f} min on this 2-core machine" in flat


SCHEDULE = ROOT / "results" / "transcoders" / "schedule" / "layer-8.txt"


def schedule_table() -> str:
    """The schedule benchmark's variants on layer 8, from its stored output."""
    lines = ["| schedule | peak learning rate | at the last step | held-out FVU | dead | rare |", "|---|---|---|---|---|---|"]
    for name, peak, final, fvu, dead, rare in re.findall(
            r"^([\w-]+) \(peak ([\d.]+), final ([\d.]+) of it\): 384 steps in \d+ s: held-out FVU ([\d.]+), dead ([\d.]+)%, rare ([\d.]+)%$",
            SCHEDULE.read_text(encoding="utf-8"), flags=re.M):
        last = "the peak" if float(final) == 1 else f"{float(final):.0%} of the peak"
        lines.append(f"| {name} | {float(peak):.1e} | {last} | {fvu} | {dead}% | {rare}% |")
    return "\n".join(lines)


def test_schedule_figures_are_the_stored_benchmark_output():
    readme = _readme()
    assert _block(readme, "recipe-schedule") == schedule_table()
    fvu = {name: float(v) for name, v in re.findall(r"^([\w-]+) \(peak.*held-out FVU ([\d.]+)", SCHEDULE.read_text(encoding="utf-8"), flags=re.M)}
    flat = _flat(readme)
    assert f"Not decaying gains little ({fvu['cosine']:.3f} to {fvu['constant']:.3f})" in flat
    assert f"({fvu['cosine']:.3f} to {fvu['cosine-2x']:.3f} with the cosine, {fvu['constant-2x']:.3f} without)" in flat
    session, v4 = pd.read_csv(SESSION / "report.csv"), pd.read_csv(TWELVE / "v4-report.txt", sep=r"\s+")
    gap = session.fvu[8] - v4.fvu[8]
    assert (f"The decay alone is worth {fvu['cosine'] - fvu['constant']:.3f} here, against the {gap:.3f} by which the one-session set's "
            f"layer 8 trails the uncut run's checkpoint ({session.fvu[8]:.3f} against {v4.fvu[8]:.3f})") in flat
    assert fvu["cosine"] - fvu["constant"] < gap / 2  # "most of that gap has another cause"
    assert fvu["cosine-2x"] < fvu["constant"] and fvu["constant-2x"] < fvu["cosine-2x"]
    assert f"four times the peak more again ({fvu['cosine-4x']:.3f}, the cosine)" in flat and fvu["cosine-4x"] < fvu["constant-2x"]
    dead = {name: v for name, v in re.findall(r"^([\w-]+) \(peak.*, dead ([\d.]+)%", SCHEDULE.read_text(encoding="utf-8"), flags=re.M)}
    assert f"eight times {fvu['cosine-8x']:.3f}, where the share of features never firing turns up again ({dead['cosine-8x']}%, against {dead['cosine-4x']}% at four times)" in flat
    assert fvu["cosine-8x"] < fvu["cosine-4x"] and float(dead["cosine-8x"]) > float(dead["cosine-4x"])
    gains = (fvu["cosine"] - fvu["cosine-4x"], fvu["cosine"] - fvu["cosine-8x"])
    assert f"four to eight times the peak takes {gains[0]:.3f}-{gains[1]:.3f} off the FVU at this budget" in flat
    assert "260096 training rows (3.0 passes), 16256 held out" in SCHEDULE.read_text(encoding="utf-8")


def test_readme_recipe_paragraph_is_the_preset_and_its_peak_the_measured_choice():
    from scrying.transcoders.train_config import PRESETS

    recipe = PRESETS["recipe"]
    flat = _flat(_readme())
    assert (f"{recipe.n_features:,} TopK-{recipe.k} features per layer with a skip connection; "
            f"{recipe.total_tokens / 1e6:.2f}M tokens of the mix in {recipe.n_chunks} chunks of {recipe.chunk_tokens:,}") in flat
    assert (f"{recipe.total_steps} Adam steps of {recipe.batch_size:,} rows); learning rate {recipe.lr:.1e}".replace("e-03", "e-3") +
            f" with {recipe.warmup_steps} warmup steps, then cosine decay to {recipe.final_lr_fraction:.0%}") in flat
    text = SCHEDULE.read_text(encoding="utf-8")
    peaks = {name: float(p) for name, p in re.findall(r"^([\w-]+) \(peak ([\d.]+), final 0.1 of it\)", text, flags=re.M)}
    fvu = {name: float(v) for name, v in re.findall(r"^([\w-]+) \(peak.*held-out FVU ([\d.]+)", text, flags=re.M)}
    dead = {name: v for name, v in re.findall(r"^([\w-]+) \(peak.*, dead ([\d.]+)%", text, flags=re.M)}
    assert recipe.lr == peaks["cosine-4x"] == 4 * peaks["cosine"]  # "four times the first rate"
    assert f"eight times takes {fvu['cosine-4x'] - fvu['cosine-8x']:.3f} more off the FVU here, but its {dead['cosine-8x']}% dead" in flat
    session = pd.read_csv(SESSION / "report.csv")
    assert session.dead_fraction[10] > 0.09 and session.dead_fraction[17] > 0.09  # "layers 10 and 17 already approach"


RAISED = ROOT / "results" / "transcoders" / "gemma-3-270m-recipe-16"


def test_raised_peak_quality_is_its_stored_report_history_and_clock():
    from datetime import datetime

    from scrying.transcoders.train_config import PRESETS

    readme = _readme()
    report, old = pd.read_csv(RAISED / "report.csv"), pd.read_csv(SESSION / "report.csv")
    assert _block(readme, "recipe-16-quality") == quality_markdown(report)
    assert list(report.layer) == list(range(18)) and set(report.rows) == {32_512}
    assert {round(c, 6) for c in report.ce_clean} == {round(c, 6) for c in old.ce_clean}  # the same held-out text
    history = json.loads((RAISED / "history.json").read_text(encoding="utf-8"))
    config = history["config"]
    assert history["chunks_done"] == 16 and config["total_tokens"] == 1_048_576 and config["lr"] == PRESETS["recipe"].lr
    before = json.loads((SESSION / "history.json").read_text(encoding="utf-8"))["config"]
    assert {k for k in config.keys() | before.keys() if config.get(k) != before.get(k)} == {"lr", "total_tokens"}  # only the peak and the length
    flat = _flat(readme)
    mean = report.fvu.mean()
    assert f"the mean FVU, {mean:.3f} ({report.fvu.min():.3f}-{report.fvu.max():.3f} per layer), misses 0.15 by {mean - 0.15:.3f}" in flat
    assert f"({(report.fvu <= 0.15).sum()} of the 18 layers reach it)" in flat
    early, late = report.dead_fraction[report.layer < 12], report.dead_fraction[report.layer >= 12]
    assert (late > 0.10).all() and (early <= 0.10).all()
    assert f"fails at layers 12-17** ({_percent(round(late.min(), 3))}-{_percent(round(late.max(), 3))}% of their features" in flat
    assert f"layers 0-11 at most {_percent(round(early.max(), 3))}%)" in flat
    gain = old.fvu - report.fvu
    assert (gain > 0).all() and f"lower on every layer (by {gain.min():.2f}-{gain.max():.2f})" in flat
    assert (report.ce_increase < old.ce_increase).all()
    assert (f"(+{report.ce_increase.min():.3f} to +{report.ce_increase.max():.3f} nats, +{report.ce_increase.mean():.3f} on average "
            f"against +{old.ce_increase.mean():.3f})") in flat
    last = history["history"][-1]["dead_fraction"]
    assert f"at most {max(last):.1%} of any layer's features were dead at the end" in flat
    both, both_old = (report.dead_fraction + report.rare_fraction)[12:], (old.dead_fraction + old.rare_fraction)[12:]
    assert (f"rose from {both_old.min() * 100:.0f}-{both_old.max() * 100:.0f}% at 8e-4 to "
            f"{both.min() * 100:.0f}-{both.max() * 100:.0f}%") in flat
    log = (RAISED / "training-log.txt").read_text(encoding="utf-8")
    rates = [float(r) for r in re.findall(r"harvest (\d+) tok/s", log)]
    steps = [float(s) for s in re.findall(r"\(([\d.]+) s/step\)", log)]
    assert len(steps) == 16 and f"(harvest {min(rates):.0f}-{max(rates):.0f} tok/s, {min(steps):.2f}-{max(steps):.2f} s an Adam step;" in flat
    times = {k: datetime.fromisoformat(v) for k, v in json.loads((RAISED / "run-times.json").read_text()).items() if k != "note"}
    minutes = {k: (times[k] - times["started"]).total_seconds() / 60 for k in ("set_written", "report_written")}
    assert f"wrote the set {minutes['set_written']:.1f} min after the command" in flat
    assert f"and its report {minutes['report_written'] - minutes['set_written']:.0f} min later. Held-out" in flat
    assert f"# 16 chunks, 512 Adam steps: {minutes['report_written']:.0f} min on this 2-core machine" in flat
    assert f"the raised-peak set of 16 chunks in {minutes['report_written']:.0f} min (`--tokens 1048576`)" in flat


def test_raised_peak_graph_figures_are_its_stored_summary():
    from scrying.transcoders.graph_summary import stages_markdown

    readme = _readme()
    summary = json.loads((RAISED / "summary.json").read_text(encoding="utf-8"))
    old = json.loads((SESSION / "summary.json").read_text(encoding="utf-8"))
    (n_at, placed_at), (n_into, placed_into) = _graph_blocks(readme, summary, "recipe-16")
    assert _block(readme, "recipe-16-stages") == stages_markdown(summary)
    flat = _flat(readme)
    names = ("dallas-texas", "dallas-two-hop", "ioi")
    for name in names:  # "the neuron graphs do not depend on the set and come out as above"
        assert summary[f"{name}-neurons"]["validation"] == old[f"{name}-neurons"]["validation"]
    rho = {n: (summary[f"{n}-features"]["validation"]["frozen vs real"], summary[f"{n}-neurons"]["validation"]["frozen vs real"]) for n in names}
    was = {n: old[f"{n}-features"]["validation"]["frozen vs real"] for n in names}
    assert all(r[0]["n"] == 100 and r[0]["spearman"] < r[1]["spearman"] for r in rho.values())  # "still below the neurons' on every prompt"
    d, t, i = rho["dallas-texas"], rho["dallas-two-hop"], rho["ioi"]
    assert (f"(Dallas {d[0]['spearman']:.2f} against {d[1]['spearman']:.2f}, two-hop {t[0]['spearman']:.2f} against "
            f"{t[1]['spearman']:.2f}, IOI {i[0]['spearman']:.2f} against {i[1]['spearman']:.2f})") in flat
    dw, tw, iw = was["dallas-texas"], was["dallas-two-hop"], was["ioi"]
    assert f"it fell on Dallas ({dw['spearman']:.2f} to {d[0]['spearman']:.2f}, the interval now including 0)" in flat
    assert d[0]["includes_zero"] and not dw["includes_zero"] and d[0]["spearman"] < dw["spearman"]
    assert f"the two-hop prompt ({tw['spearman']:.2f} to {t[0]['spearman']:.2f}) and rose on IOI ({iw['spearman']:.2f} to {i[0]['spearman']:.2f}" in flat
    assert t[0]["spearman"] < tw["spearman"] and i[0]["spearman"] > iw["spearman"] and iw["includes_zero"] and not i[0]["includes_zero"]
    for name in names:  # "The intervals overlap"
        new, before = rho[name][0], was[name]
        assert new["low"] < before["high"] and before["low"] < new["high"]
    first = [summary[f"{n}-features"]["stages"]["graph vs + error nodes live"]["spearman"] for n in ("dallas-texas", "ioi", "dallas-two-hop")]
    before = [old[f"{n}-features"]["stages"]["graph vs + error nodes live"]["spearman"] for n in ("dallas-texas", "ioi", "dallas-two-hop")]
    assert (f"loses most: {first[0]:.2f}, {first[1]:.2f} and {first[2]:.2f} against {before[0]:.2f}, {before[1]:.2f} and "
            f"{before[2]:.2f} with the 8e-4 set") in flat
    assert all(f < b for f, b in zip(first, before, strict=True))
    assert f"All {placed_at} of the {n_at} most influential features at 'Dallas' (the pruned graph keeps {n_at} there)" in flat
    assert placed_at == n_at and placed_into == n_into and f"all {placed_into} of the {n_into} with the largest direct edge into ' Texas'" in flat
    texas = [f for f in summary["dallas-texas-features"]["into_target"] if "+Texas" in f["label"]]
    assert texas and "' Texas' now shows among promoted tokens (L13 #4805" in flat
    assert not any("Texas" in f["label"] for f in old["dallas-texas-features"]["into_target"])


def wide_report(folder: Path) -> pd.DataFrame:
    """A set's ``report-1024-windows.txt`` (its first line the command that printed it)."""
    path = folder / "report-1024-windows.txt"
    assert "--windows 1024 --splice-windows 0" in path.read_text(encoding="utf-8").splitlines()[0]
    return pd.read_csv(path, sep=r"\s+", comment="#")


def test_raised_peak_report_on_four_times_the_heldout_text():
    wide = wide_report(RAISED)
    narrow = pd.read_csv(RAISED / "report.csv")
    assert list(wide.layer) == list(range(18)) and set(wide.rows) == {130_048}
    assert (wide.dead_fraction <= narrow.dead_fraction).all()  # more text: fewer features never fire
    over = wide.layer[wide.dead_fraction > 0.10].tolist()
    flat = _flat(_readme())
    worst = wide.dead_fraction.max()
    assert (f"the share never firing is {wide.dead_fraction.min() * 100:.1f}-{worst * 100:.1f}% per layer, over 10% only at layer "
            f"{over[0]} ({worst * 100:.1f}%), and the mean FVU {wide.fvu.mean():.3f}") in flat and over == [17]
    assert f"(by {wide.fvu.mean() - 0.15:.3f} and by {(worst - 0.10) * 100:.1f} points at one layer)" in flat


def test_raised_peak_error_shares_are_its_stored_graphs():
    from scrying.viewer.report import summarise

    summary = json.loads((RAISED / "summary.json").read_text(encoding="utf-8"))
    names = ("dallas-texas", "ioi", "dallas-two-hop")
    new, old = [], []
    for name in names:
        graph = json.loads((RAISED / "graphs" / f"{name}-features.json").read_text(encoding="utf-8"))
        rho = graph["scrying"]["metadata"]["validation"]["reports"]["frozen vs real, scale 0"]["spearman"]
        assert rho == summary[f"{name}-features"]["validation"]["frozen vs real"]["spearman"]  # the graphs the summary describes
        new.append(summarise(graph).error_share)
        old.append(summarise(json.loads((SESSION / "graphs" / f"{name}-features.json").read_text(encoding="utf-8"))).error_share)
    assert all(n < o for n, o in zip(new, old, strict=True))
    flat = _flat(_readme())
    assert (f"{new[0]:.0%}, {new[1]:.0%} and {new[2]:.0%} of what reaches the target on the Dallas, IOI and two-hop prompts, "
            f"against {old[0]:.0%}, {old[1]:.0%} and {old[2]:.0%} with the 8e-4 set") in flat


def test_raised_peak_stage_steps_the_readme_names():
    summary = json.loads((RAISED / "summary.json").read_text(encoding="utf-8"))
    old = json.loads((SESSION / "summary.json").read_text(encoding="utf-8"))
    def stage(s: dict, name: str) -> dict:
        return {k.removeprefix("graph vs ").removeprefix("+ "): round(v["spearman"], 2) for k, v in s[f"{name}-features"]["stages"].items()}
    d, t, i, od = stage(summary, "dallas-texas"), stage(summary, "dallas-two-hop"), stage(summary, "ioi"), stage(old, "dallas-texas")
    masks = "features' masks live"
    flat = _flat(_readme())
    assert (f"on Dallas live norm scales cost most ({d['attention patterns live']:.2f} to {d['norm scales live']:.2f}: the "
            f"final norm's {d['final norm live']:.2f}, then the rest)") in flat
    assert d["attention patterns live"] > d["final norm live"] > d["norm scales live"]
    steps = [d["error nodes live"] - d["attention patterns live"], d["attention patterns live"] - d["norm scales live"],  # every norm, the final one first
             d["norm scales live"] - d[masks], d[masks] - d["real"]]
    assert max(steps) == steps[1]
    assert f"the step that cost the 8e-4 set {od[masks] - od['real']:.2f} on Dallas" in flat
    assert f"costs nothing there ({d[masks]:.2f} to {d['real']:.2f}) or on the two-hop prompt ({t[masks]:.2f} to {t['real']:.2f})" in flat
    assert d["real"] >= d[masks] and t["real"] >= t[masks]
    assert f"and {i[masks] - i['real']:.2f} on IOI ({i[masks]:.2f} to {i['real']:.2f})" in flat
