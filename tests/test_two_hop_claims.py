"""The two-hop figures in the README and notebook 01 are the committed results: each is formatted
here from results/two_hop/qwen2.5-coder-1.5b.json or the stored gallery graphs and must appear as
written; the claims made in words ("does nothing", "acts only from block 22") are checked on the
tables they summarise."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = json.loads((ROOT / "results" / "two_hop" / "qwen2.5-coder-1.5b.json").read_text())


def _texts() -> dict[str, str]:
    readme = (ROOT / "README.md").read_text()
    notebook = nbformat.read(ROOT / "notebooks" / "01_attribution_graphs.ipynb", as_version=4)
    cells = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    return {"README": " ".join(readme.split()), "notebook 01": " ".join(cells.split())}


def _lens(pos: int, layer: int, token: str) -> dict:
    return next(r for r in RESULTS["lens"] if r["pos"] == pos and r["layer"] == layer and r["token"] == token)


def _steer(pos: int, layer: int) -> dict:
    return next(r for r in RESULTS["steering"] if r["pos"] == pos and r["layer"] == layer)


def claims() -> list[str]:
    city, last = RESULTS["positions"]["city"], RESULTS["positions"]["last"]
    clean = RESULTS["clean"]
    window = [_steer(city, layer) for layer in range(3, 22)]
    best = max(window, key=lambda r: r["p_alternative"])
    k10 = next(r for r in RESULTS["suppression"] if r["k"] == 10 and r["scale"] == 0.0)
    top = RESULTS["bridge_nodes"][0]
    shortcut = RESULTS["shortcut"]
    austin_top = min(layer for layer in range(28) if all(_lens(last, ly, " Austin")["rank"] == 0 for ly in range(layer, 28)))
    return [
        f"' Texas' climbs from rank {_lens(last, 21, ' Texas')['rank']:,} after block 21 to {_lens(last, 22, ' Texas')['rank']}",
        f"{_lens(last, 24, ' Texas')['rank']} (block 24, where ' TX' is the top token)",
        f"' Austin' is the top token from block {austin_top}",
        f"takes p(Austin) from {clean['answer']:.3f} to {min(r['p_answer'] for r in window):.3f}-{max(r['p_answer'] for r in window):.3f}",
        f"p(Sacramento) from {clean['alternative']:.4f} up to {best['p_alternative']:.3f} (block {best['layer']}, where ' Sacramento' becomes the top token)",
        f"drops p(Austin) to {k10['p_answer']:.3f}",
        f"mean {k10['control_p_answer_mean']:.3f}, range {k10['control_p_answer_min']:.3f}-{k10['control_p_answer_max']:.3f}",
        f"L{top['layer']} neuron {top['neuron']}, writes ' Austin' as much as ' Texas' ({top['writes_answer']:.1f} vs {top['writes']:.1f})"
        if top["writes_answer"] >= top["writes"] else "NEVER",
        f"{shortcut['share_avoiding']:.0%} of the ' Dallas' position's influence on ' Austin' avoids the top 20 Texas writers",
        f"{shortcut['direct_to_answer'] / shortcut['total']:.0%} through direct edges into the output",
    ], [best]


@pytest.mark.parametrize("where", ["README", "notebook 01"])
def test_two_hop_figures_are_the_committed_results(where):
    figures, _ = claims()
    text = _texts()[where]
    missing = [f for f in figures if f not in text]
    assert not missing, missing


def test_the_claims_in_words_hold_on_the_tables():
    city, last = RESULTS["positions"]["city"], RESULTS["positions"]["last"]
    _, (best,) = claims()
    assert best["top"] == " Sacramento"
    clean = RESULTS["clean"]["answer"]
    # "added at ' Dallas' after block 22 or later it does nothing": Austin stays within 0.15 of clean
    assert all(abs(_steer(city, layer)["p_answer"] - clean) < 0.15 and _steer(city, layer)["p_alternative"] < 0.01 for layer in range(22, 28))
    # "at the last position it acts only from block 22 on"
    assert all(_steer(last, layer)["p_answer"] > 0.24 for layer in range(22))
    assert all(_steer(last, layer)["p_answer"] < 0.14 for layer in range(22, 28))
    # "all at the last position, blocks 22-27" and "does not raise Sacramento"
    ten = RESULTS["bridge_nodes"][:10]
    assert {r["pos"] for r in ten} == {last} and {r["layer"] for r in ten} <= set(range(22, 28))
    k10 = next(r for r in RESULTS["suppression"] if r["k"] == 10 and r["scale"] == 0.0)
    assert k10["p_alternative"] <= RESULTS["clean"]["alternative"] * 1.5


def test_graph_validation_figures_are_the_stored_graphs():
    readme = _texts()["README"]
    graph = json.loads((ROOT / "graphs" / "gallery" / "dallas-two-hop-qwen-1.5b.json").read_text())
    reports = graph["scrying"]["metadata"]["validation"]["reports"]
    for name, words in (("graph vs frozen, scale 0", "graph vs frozen Spearman"), ("graph vs real, scale 0", "graph vs real"),
                        ("activation x gradient vs real, scale 0", "activation × gradient baseline at")):
        r = reports[name]
        assert f"{words} {r['spearman']:.3f} [{r['spearman_ci'][0]:.3f}, {r['spearman_ci'][1]:.3f}]" in readme, name
    components = json.loads((ROOT / "graphs" / "gallery" / "dallas-two-hop-qwen-1.5b-components.json").read_text())
    meta = components["scrying"]["metadata"]
    r = meta["validation"]["reports"]["EAP-IG vs exact patching"]
    assert f"Spearman {r['spearman']:.3f} [{r['spearman_ci'][0]:.3f}, {r['spearman_ci'][1]:.3f}] on {len(r['rows'])} edges" in readme
    assert f"its {meta['circuit']['kept_edges']} kept edges, the top {meta['circuit']['top_n']} by |score|" in readme
    assert f"recover {meta['circuit']['recovered']:.2f} of the metric" in readme
    assert f"clean {meta['clean_metric']:.1f}, corrupted −{-meta['corrupt_metric']:.1f}" in readme
