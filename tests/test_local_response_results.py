"""The README's local-response figures (why feature graphs validate below neuron graphs) are the
stored results (results/transcoders/local-response/, regenerate.py there)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tests.test_recipe_results import _block, _flat, _readme

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "transcoders" / "local-response"


def _read(name: str) -> pd.DataFrame:
    report = pd.read_csv(RESULTS / f"{name}.csv")
    assert list(report.layer) == list(range(18)) and (report.rows == 256).all() and (report.directions == 8).all()
    return report


def local_response_table() -> str:
    """Per layer, the shipped set's response errors along decoder and data directions, the neurons' beside them."""
    dec, data = _read("lifted"), _read("lifted-data")
    lines = ["| layer | decoder directions: transcoder | skip alone | neurons | data directions: transcoder | skip alone | neurons |",
             "|---|---|---|---|---|---|---|"]
    for (_, d), (_, a) in zip(dec.iterrows(), data.iterrows(), strict=True):
        cells = ["—" if pd.isna(d[c]) else f"{d[c]:.2f}" for c in ("transcoder_error", "skip_only_error", "neuron_error")]
        lines.append(f"| {int(d.layer)} | {' | '.join(cells)} | {a.transcoder_error:.2f} | {a.skip_only_error:.2f} | {a.neuron_error:.2f} |")
    return "\n".join(lines)


def test_local_response_table_is_the_stored_results():
    assert _block(_readme(), "local-response") == local_response_table()


def test_local_response_sentences_are_the_stored_results():
    flat = _flat(_readme())
    means = {}
    for name in ("lifted", "full", "session"):
        for kind in ("", "-data"):
            r = _read(name + kind).dropna()
            means[name + kind] = r[["transcoder_error", "skip_only_error", "neuron_error"]].mean()
            if not kind:
                assert len(r) == 17 and pd.isna(_read(name).transcoder_error[0])  # layer 0: no earlier features
    dec, data = _read("lifted").dropna(), _read("lifted-data")
    worse = (dec.transcoder_error > dec.neuron_error).sum()
    assert worse == 17  # "worse than the neurons' at every layer"
    assert (f"mean {means['lifted'].transcoder_error:.2f} ({dec.transcoder_error.min():.2f}-{dec.transcoder_error.max():.2f}) against the "
            f"neurons' {means['lifted'].neuron_error:.2f} ({dec.neuron_error.min():.2f}-{dec.neuron_error.max():.2f}), worse at every one of "
            f"the 17 layers") in flat
    assert f"the skip connection alone answers with {means['lifted'].skip_only_error:.2f}" in flat
    below = int((data.transcoder_error < data.neuron_error).sum())
    assert (f"Along data directions the set answers nearly as the neurons do ({means['lifted-data'].transcoder_error:.2f} against "
            f"{means['lifted-data'].neuron_error:.2f}, below them at {below} layers)") in flat
    assert (f"The one-session set answers worse ({means['session'].transcoder_error:.2f} along decoder directions, "
            f"{means['session-data'].transcoder_error:.2f} along data directions)") in flat
    assert abs(means["full"].transcoder_error - means["lifted"].transcoder_error) < 0.005
    assert (f"the full run before its lift answers as the shipped set does ({means['full'].transcoder_error:.2f} and "
            f"{means['full-data'].transcoder_error:.2f})") in flat
    import json

    two_hop = [json.loads((ROOT / "results" / "transcoders" / f"gemma-3-270m-recipe-{name}" / "summary.json").read_text(encoding="utf-8"))
               ["dallas-two-hop-features"]["validation"]["frozen vs real"]["spearman"] for name in ("session", "lifted")]
    assert means["session"].transcoder_error > means["lifted"].transcoder_error and two_hop[0] > two_hop[1]
    assert f"set validates better than the shipped set on the two-hop prompt ({two_hop[0]:.2f} against {two_hop[1]:.2f})" in flat


def test_response_term_paragraph_is_the_stored_benchmark_output():
    import re

    text = (RESULTS / "response-term-layer-12.txt").read_text(encoding="utf-8")
    pattern = (r"held-out FVU ([\d.]+); response error along decoder: transcoder ([\d.]+), skip alone [\d.]+, neurons ([\d.]+); "
               r"data: transcoder ([\d.]+),")
    before = re.search(r"as trained: " + pattern, text).groups()
    control = re.search(r"coef 0 \(\d+ s\): " + pattern, text).groups()
    term = re.search(r"coef 1 \(\d+ s\): " + pattern, text).groups()
    assert "--steps 300 --coefs 0 1 --windows 256 --lr 0.0001" in text and "(32,512 rows, 4 decoder directions each)" in text
    stored = _read("lifted").loc[12]
    assert (f"{stored.transcoder_error:.3f}", f"{stored.neuron_error:.3f}") == (before[1], before[2])  # the same rows and directions
    assert float(term[1]) < float(before[1]) < float(control[1])  # the term lowers it; the steps alone do not
    assert float(term[1]) > float(term[2])  # still above the neurons'
    flat = _flat(_readme())
    assert (f"held-out error along decoder directions falls from {before[1]} to {term[1]} (the same steps without the term: "
            f"{control[1]}), still above the neurons' {term[2]}; the error along data directions rises from {before[3]} to "
            f"{term[3]} (without the term: {control[3]}), and held-out FVU from {before[0]} to {term[0]} (without the term: "
            f"{control[0]}") in flat


def test_all_layer_response_term_paragraph_is_the_stored_output():
    import json
    import re

    text = (RESULTS / "response-term-all-layers.txt").read_text(encoding="utf-8")
    means = re.search(r"mean held-out FVU ([\d.]+) -> ([\d.]+); mean response error ([\d.]+) -> ([\d.]+) \(neurons ([\d.]+)\)", text).groups()
    assert "--steps 150 --coef 1 --windows 256 --directions 2 --lr 0.0001" in text
    assert float(means[1]) > 0.15 > float(means[0]) and float(means[3]) < float(means[2])
    assert f"{_read('lifted').transcoder_error.mean():.3f}" == means[2]  # the same held-out rows and directions as the stored table
    flat = _flat(_readme())
    assert (f"the mean error along decoder directions falls from {means[2]} to {means[3]} (the neurons' {means[4]}) and the mean "
            f"held-out FVU rises from {means[0]} to {means[1]}, past the 0.15 target") in flat
    got = {m[0]: (float(m[1]), float(m[2]), float(m[3])) for m in re.findall(r"^([\w-]+)-features: frozen vs real ([-\d.]+) \[([-\d.]+), ([-\d.]+)\] on 100 nodes$", text, flags=re.M)}
    shipped = json.loads((ROOT / "results" / "transcoders" / "gemma-3-270m-recipe-lifted" / "summary.json").read_text(encoding="utf-8"))
    cells = []
    for name, label in (("dallas-texas", "Dallas"), ("ioi", "IOI"), ("dallas-two-hop", "the two-hop prompt")):
        rho, low, high = got[name]
        was = shipped[f"{name}-features"]["validation"]["frozen vs real"]["spearman"]
        neurons = shipped[f"{name}-neurons"]["validation"]["frozen vs real"]["spearman"]
        assert rho < neurons and low > 0  # "still below the neurons' ... on every prompt"; every interval above 0
        cells.append(f"{label} {rho:.2f} [{low:.2f}, {high:.2f}] ({'the shipped set' + chr(39) + 's ' if not cells else ''}{was:.2f}")
    assert "), ".join(cells) + ", its interval now above 0)" in flat
    n = [shipped[f"{k}-neurons"]["validation"]["frozen vs real"]["spearman"] for k in ("dallas-texas", "ioi", "dallas-two-hop")]
    assert f"still below the neurons' {n[0]:.2f}, {n[1]:.2f} and {n[2]:.2f} on every prompt" in flat


def test_response_tuned_sets_stages_are_the_stored_output():
    """Its unfreezing against the real model (stages_of_a_set.py): the first model is the frozen
    one the all-layer run validated, and the README's 'every norm and pattern live' figures are
    its ``+ norm scales live`` ones beside the shipped set's and the neurons'."""
    import json
    import re

    text = (RESULTS / "response-set-stages.txt").read_text(encoding="utf-8")
    stages = {m[0]: {s: float(v) for s, v in re.findall(r"([+\w' ]+?) ([-\d.]+) \[[-\d.]+, [-\d.]+\](?:, |$)", m[1])}
              for m in re.findall(r"^([\w-]+)-features: (.*)$", text, flags=re.M)}
    names = ("dallas-texas", "ioi", "dallas-two-hop")
    assert set(stages) == set(names)
    run = (RESULTS / "response-term-all-layers.txt").read_text(encoding="utf-8")
    for name in names:
        frozen = float(re.search(rf"^{name}-features: frozen vs real ([-\d.]+)", run, flags=re.M)[1])
        assert stages[name]["frozen"] == frozen  # the same set, the same graph
    shipped = json.loads((ROOT / "results" / "transcoders" / "gemma-3-270m-recipe-lifted" / "summary.json").read_text(encoding="utf-8"))

    def three(values: list[float]) -> str:
        return f"{values[0]:.2f}, {values[1]:.2f} and {values[2]:.2f}"

    tuned = [stages[n]["+ norm scales live"] for n in names]
    was = [shipped[f"{n}-features"]["stages_vs_real"]["+ norm scales live"]["spearman"] for n in names]
    neurons = [shipped[f"{n}-neurons"]["stages_vs_real"]["+ norm scales live"]["spearman"] for n in names]
    assert all(t < m for t, m in zip(tuned, neurons, strict=True))
    assert sum(t > w for t, w in zip(tuned, was, strict=True)) == 2  # "it gains on two prompts, loses on one"
    assert f"its model reaches {three(tuned)} (the shipped set's {three(was)}; the neurons' {three(neurons)})" in _flat(_readme())
