"""The README's reversal figures are the committed results: the per-relation table is formatted
from results/reversal/results.summary.csv (itself recomputed here from results.jsonl), and the
toy experiment's figures from results/reversal/toy/summary.json."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from scrying.reversal.records import PairRecord, read_results
from scrying.reversal.summary import markdown_table, summarize
from scrying.stats import BootstrapConfig

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "reversal"


def _records() -> list[PairRecord]:
    return read_results(RESULTS / "results.jsonl")


def test_summary_is_recomputed_from_the_stored_records():
    stored = pd.read_csv(RESULTS / "results.summary.csv")
    fresh = summarize(_records(), BootstrapConfig())
    assert list(stored.relation) == list(fresh.relation)
    for column in stored.columns:
        if column != "relation":
            assert stored[column].to_numpy() == pytest.approx(fresh[column].to_numpy(), abs=1e-9, nan_ok=True), column


def test_readme_table_is_the_stored_summary():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = markdown_table(pd.read_csv(RESULTS / "results.summary.csv"))
    for line in table.splitlines():
        assert line in readme, line


def test_readme_toy_figures_are_the_stored_experiment():
    from scrying.reversal.experiment import read_experiment_summary

    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    conditions = read_experiment_summary(RESULTS / "toy" / "summary.json")  # written before the renaming

    def cell(row: dict, key: str) -> str:
        return f"{row[key]:.2f} [{row[key + '_low']:.2f}, {row[key + '_high']:.2f}]"

    curse, cure = conditions["forward_only"], conditions["both_directions_control"]
    for text in (cell(curse, "forward_exact"), cell(curse, "reverse_top1"), cell(cure, "reverse_top1"),
                 f"{curse['reverse_chance']:.2f}"):
        assert text in readme, text


def test_readme_lens_figures_are_the_stored_lens_table():
    from scrying.reversal.lens import decodable_layers

    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    lens = pd.read_csv(RESULTS / "results.lens.csv")
    last = lens[lens.layer == lens.layer.max()]
    top = (last["rank"] <= 10).groupby(last.direction).sum()
    layers = decodable_layers(lens, top=10).groupby("direction").layer.median()
    assert f"Over the {lens['index'].nunique()} pairs known forward (top-1) and not in reverse" in readme
    assert f"for {top['forward']} forward prompts and {top['reverse']} reverse prompts" in readme
    assert f"stays there is {layers['forward']:.0f} forward and {layers['reverse']:.0f} reverse" in readme


def test_readme_finetune_figures_are_the_stored_experiment():
    """The fine-tune's table and prose are the stored run, each condition trained until its
    held-out forward top-1 reached the target (issue 25: the forward condition learned)."""
    from scrying.reversal.experiment import CONDITION_LABELS, read_experiment_summary

    raw = (ROOT / "README.md").read_text(encoding="utf-8")
    readme = " ".join(raw.split())
    stored = json.loads((RESULTS / "finetune" / "summary.json").read_text(encoding="utf-8"))
    conditions = read_experiment_summary(RESULTS / "finetune" / "summary.json")
    target = stored["config"]["target_forward_top1"]
    assert target == 0.8 and list(conditions) == ["forward_only", "both_directions_control", "reverse_training"]

    def cell(row: dict, key: str) -> str:
        return f"{row[key]:.2f} [{row[key + '_low']:.2f}, {row[key + '_high']:.2f}]"

    for name, row in conditions.items():
        assert row["forward_top1"] >= target and row["forward_top1_during"][-1] == [row["steps_run"], row["forward_top1"]]
        line = (f"| {CONDITION_LABELS[name]} | {row['steps_run']} | {cell(row, 'forward_exact')} | {cell(row, 'reverse_exact')} | "
                f"{cell(row, 'forward_top1')} | {cell(row, 'reverse_top1')} | p={row['p_top1']:.2g} |")
        assert line in raw, line
    curse, control, cure = conditions["forward_only"], conditions["both_directions_control"], conditions["reverse_training"]
    for text in (f"got there in {curse['steps_run']} steps, the both-directions control in {control['steps_run']} and reverse "
                 f"training in {cure['steps_run']}",
                 f"for {curse['reverse_top1']:.2f} of the test facts", f"(untuned: {curse['base_forward_top1']:.2f} forward, "
                 f"{curse['base_reverse_top1']:.2f} reverse)", f"control to {control['reverse_top1']:.2f}",
                 f"reverse, to {cure['reverse_top1']:.2f} (its reverse greedy exact match, {cure['reverse_exact']:.2f}, is above "
                 f"the control's {control['reverse_exact']:.2f})"):
        assert text in readme, text
    seconds = [row["seconds_per_step"] for row in conditions.values()]
    assert f"({min(seconds):.1f}-{max(seconds):.1f} s a step" in readme


def test_readme_patching_figures_are_the_stored_causal_trace():
    from scrying.reversal.causal_tracing import trace_summary

    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    table = pd.read_csv(RESULTS / "results.patching.csv")
    summary = trace_summary(table).set_index(["direction", "layer"])
    fwd, rev = summary.loc["forward"], summary.loc["reverse"]
    assert f"is {fwd.p_clean.iloc[0]:.3f} clean and {fwd.p_corrupt.iloc[0]:.3f} corrupted" in readme
    assert f"blocks 0-12 brings back {fwd.indirect_effect[:13].min():.2f}-{fwd.indirect_effect[:13].max():.2f} of it" in readme
    peak = fwd.indirect_effect[:13].idxmax()
    assert f"(most at block {peak}: {fwd.indirect_effect[peak]:.3f} [{fwd.ci_low[peak]:.3f}, {fwd.ci_high[peak]:.3f}])" in readme
    assert f"nothing ({fwd.indirect_effect[13]:.3f} at block 13)" in readme and fwd.indirect_effect[13:].max() < 0.01
    assert f"answers have {rev.p_clean.iloc[0]:.3f} clean and {rev.p_corrupt.iloc[0]:.3f} corrupted" in readme
    top = rev.indirect_effect[:13].idxmax()
    assert f"at most {rev.indirect_effect[top]:.3f} [{rev.ci_low[top]:.3f}, {rev.ci_high[top]:.3f}]" in readme
    assert table["index"].nunique() == pd.read_csv(RESULTS / "results.lens.csv")["index"].nunique()


def _lines() -> tuple[dict, list[dict]]:
    raw = (RESULTS / "results.jsonl").read_text(encoding="utf-8").splitlines()
    return json.loads(raw[0])["settings"], [json.loads(x) for x in raw[1:]]


def test_random_and_hard_top1_and_chance_from_the_raw_lines():
    """The new columns, computed straight from the JSON lines (not through the typed records or
    :func:`summarize`): top-1 among random and among hard distractors, and chance as right answers
    over candidates."""
    _, lines = _lines()
    stored = pd.read_csv(RESULTS / "results.summary.csv").set_index("relation")
    for relation in stored.index:
        part = lines if relation == "all" else [x for x in lines if x["relation"] == relation]
        assert stored.loc[relation, "n"] == len(part)
        for d in ("forward", "reverse"):
            assert all(len(x[d]["hard_distractors"]) == len(x[d]["distractors"]) for x in part)
            for column, value in ((f"{d}_top1", [x[d]["rank"] == 1 for x in part]),
                                  (f"{d}_top1_hard", [x[d]["hard_rank"] == 1 for x in part]),
                                  (f"{d}_chance", [x[d]["n_right"] / x[d]["n_candidates"] for x in part])):
                assert stored.loc[relation, column] == pytest.approx(sum(value) / len(value), abs=1e-12), (relation, column)


def test_the_many_direction_ranked_every_right_city_of_the_state():
    from scrying.reversal.probe import read_pair_files
    from scrying.reversal.relations import packaged_relation_files

    _, lines = _lines()
    pairs = read_pair_files(packaged_relation_files())
    cities: dict[str, set[str]] = {}
    for p in pairs:
        if p.relation == "us_city_state":
            cities.setdefault(p.b, set()).update({p.a, *p.also_true})
    part = [x for x in lines if x["relation"] == "us_city_state"]
    assert part and any(x["reverse"]["n_right"] > 1 for x in part)
    for x in part:
        in_file = {p.a for p in pairs if p.relation == "us_city_state" and p.b == x["b"]}
        assert {x["a"], *x["reverse"]["right_answers"]} == in_file
        assert not set(x["reverse"]["distractors"]) & cities[x["b"]]
        assert not set(x["reverse"]["hard_distractors"]) & cities[x["b"]]
        assert x["forward"]["n_right"] == 1


def test_new_york_city_is_a_right_answer_for_new_york():
    _, lines = _lines()
    new_york = [x for x in lines if x["relation"] == "us_city_state" and x["b"] == "New York"]
    assert new_york and all(x["reverse"]["greedy"].strip().startswith("New York City") and x["reverse"]["exact"] for x in new_york)


def test_readme_names_the_stored_subset_and_distractors():
    settings, lines = _lines()
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    every = settings.get("every", 1)
    assert settings["distractors"] == 20 and settings["fit"] is True
    if every > 1:
        assert f"`--every {every}`: every {every}th pair of each relation, {len(lines)} of" in readme


def test_readme_prose_figures_are_the_stored_summary():
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    t = pd.read_csv(RESULTS / "results.summary.csv").set_index("relation")
    cap, state, city = t.loc["country_capital"], t.loc["state_capital"], t.loc["us_city_state"]
    _, lines = _lines()
    n_pairs = len(read_pair_files_all())
    for text in (
        f"{len(lines)} of {n_pairs} pairs",
        f"(country → capital {cap.forward_top1:.2f} / {cap.reverse_top1:.2f}, state capitals "
        f"{state.forward_top1:.2f} / {state.reverse_top1:.2f})",
        f"for {state.forward_top1_hard:.2f} of states forward",
        f"against {state.reverse_top1_hard:.2f} reverse",
        f"falls to {cap.forward_top1_hard:.2f} forward",
        f"reverse stays at {cap.reverse_top1_hard:.2f} (p={cap.p_top1_hard:.2g})",
        f"a city of the state for {city.reverse_exact:.2f} of the prompts",
        f"the gap is {city.diff_exact:.2f} (p={city.p_exact:.3g})",
    ):
        assert text in readme, text


def read_pair_files_all() -> list:
    from scrying.reversal.probe import read_pair_files
    from scrying.reversal.relations import packaged_relation_files

    return read_pair_files(packaged_relation_files())


def test_readme_hard_negative_examples_are_stored_records():
    """The named confusions: the greedy answer is the named city, and a hard distractor outranks
    the capital (hard rank > 1) while no random one does (rank 1)."""
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    _, lines = _lines()
    by = {(x["relation"], x["a"]): x["forward"] for x in lines}
    examples = [("state_capital", "Alabama", "Birmingham"), ("state_capital", "Illinois", "Chicago"),
                ("state_capital", "Michigan", "Detroit"), ("country_capital", "New Zealand", "Auckland"),
                ("country_capital", "Pakistan", "Lahore"), ("country_capital", "Switzerland", "Geneva")]
    for relation, a, city in examples:
        assert f"{city} for {a}" in readme, (a, city)
        side = by[relation, a]
        assert side["greedy"].strip().startswith(city) and city in side["hard_distractors"]
        assert side["hard_rank"] > 1 and side["rank"] == 1, (a, side["hard_rank"], side["rank"])


def test_readme_cure_and_probe_tables_are_the_stored_results():
    """The README's toy-cure table and linear-probe table are formatted from the stored files."""
    import json

    from scrying.reversal.experiment import read_experiment_summary

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    rows = read_experiment_summary(root / "results" / "reversal" / "toy_cure" / "summary.json")

    def cell(row, key):
        return f"{row[key]:.2f} [{row[key + '_low']:.2f}, {row[key + '_high']:.2f}]"

    names = {"forward_only": "curse (forward only)", "both_directions_control": "both-directions control",
             "reverse_training": "reverse training (entity-preserving)"}
    for condition, name in names.items():
        row = rows[condition]
        line = (f"| {name} | {row['n_sentences']} | {cell(row, 'forward_exact')} | {cell(row, 'reverse_exact')} | "
                f"{cell(row, 'forward_top1')} | {cell(row, 'reverse_top1')} |")
        assert line in readme, line
    summary = json.loads((root / "results" / "reversal" / "probes" / "probes.json").read_text())["summary"]
    best = {}
    for r in summary:
        key = (r["relation"], r["direction"])
        if r["layer"] == -1:
            best.setdefault(key, {})["embeddings"] = r
        if r["layer"] >= 0 and r["accuracy"] > best.setdefault(key, {}).get("best", {"accuracy": -1})["accuracy"]:
            best[key]["best"] = r
    from scrying.reversal.report import probe_markdown

    for line in probe_markdown(pd.DataFrame(summary)).splitlines():
        assert line in readme, line
    row = best[("country_capital", "reverse")]
    assert f"{row['best']['accuracy']:.2f} [{row['best']['accuracy_low']:.2f}, {row['best']['accuracy_high']:.2f}] (layer {row['best']['layer']})" in readme
    row = best[("country_capital", "forward")]
    assert f"| {row['embeddings']['accuracy']:.2f} [{row['embeddings']['accuracy_low']:.2f}, {row['embeddings']['accuracy_high']:.2f}] |" in readme
