"""The figures issue 21's README quotes from a graph: its validation's Spearman rows, the top
features at a token and into the target (checked on a hand-built graph whose ranking is known),
and which top contexts show a place (checked on contexts written by hand)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from scrying.attribution import Graph, Node
from scrying.errors import InvalidInputError
from scrying.transcoders.graph_summary import (
    count_places,
    features_markdown,
    graph_summary,
    place_totals,
    positions_markdown,
    shows_place,
    stage_figures,
    stages_vs_real,
    stages_vs_real_markdown,
    top_features_at,
    top_features_into_target,
    validation_by_position,
    validation_figures,
    validation_markdown,
)
from scrying.transcoders.quality import quality_markdown


def _report(spearman: float, low: float, high: float, n: int) -> dict:
    return {"spearman": spearman, "spearman_ci": [low, high], "rows": [{}] * n}


def _graph() -> Graph:
    """Embeddings of 'Dallas is' feed three features at 'Dallas' (pos 1) and one at 'is'; the
    target ' Texas' reads them directly with weights 0.1, 3, -2 and 1, so by influence the
    'Dallas' features rank f1 (3), f2 (|-2|), f0 (0.1) and into the target f1, f3, f0 (f2 is
    negative)."""
    nodes = [
        Node("e0", "embedding", -1, 0, 2), Node("e1", "embedding", -1, 1, 5), Node("e2", "embedding", -1, 2, 7),
        Node("f0", "feature", 3, 1, 10, label="a"), Node("f1", "feature", 4, 1, 11, label="b"),
        Node("f2", "feature", 5, 1, 12, label="c"), Node("f3", "feature", 5, 2, 13, label="d"),
        Node("t", "logit", 18, 2, 99, token_prob=0.9, is_target=True, token=" Texas"),
    ]
    a = torch.zeros(len(nodes), len(nodes), dtype=torch.float64)
    for f in (3, 4, 5):
        a[f, 1] = 1.0
    a[6, 2] = 1.0
    a[7, 3], a[7, 4], a[7, 5], a[7, 6] = 0.1, 3.0, -2.0, 1.0
    reports = {f"{name}, scale 0": _report(*values) for name, values in {
        "graph vs frozen": (0.9, 0.8, 0.95, 100), "frozen vs real": (0.4, -0.05, 0.7, 100),
        "graph vs real": (0.3, 0.1, 0.5, 100), "activation x gradient vs real": (0.8, 0.7, 0.9, 100),
        "graph vs + error nodes live": (0.85, 0.7, 0.9, 100), "graph vs + attention patterns live": (0.5, 0.3, 0.6, 100)}.items()}
    reports["graph vs real, scale 0.5"] = _report(0.1, -0.2, 0.3, 100)  # another scale: not a stage row
    # Frozen vs real node by node: the three 'Dallas' features ranked backwards (Spearman -1),
    # f3 and the embedding at ' is' (two nodes: no correlation to speak of).
    reports["frozen vs real, scale 0"]["rows"] = [
        {"node_id": i, "predicted": p, "measured": m}
        for i, p, m in (("f0", 0.1, 0.3), ("f1", 3.0, -0.5), ("e2", 0.5, 0.5), ("f2", -2.0, 0.6), ("f3", 1.0, 0.2))]
    # The partly unfrozen models, stored in another order: errors live gives the real changes
    # (Spearman 1 against real), patterns live their negatives (-1 against real and against errors live).
    real = {"f0": 0.3, "f1": -0.5, "e2": 0.5, "f2": 0.6, "f3": 0.2}
    reports["graph vs + error nodes live, scale 0"]["rows"] = [{"node_id": i, "predicted": 0.0, "measured": real[i]} for i in sorted(real)]
    reports["graph vs + attention patterns live, scale 0"]["rows"] = [
        {"node_id": i, "predicted": 0.0, "measured": -real[i]} for i in sorted(real, reverse=True)]
    cards = {"f1": {"contexts": [
        {"tokens": [" near", " Dallas", ",", " Texas"], "at": 1},
        {"tokens": [" the", " city", " of"], "at": 2},
    ]}}
    metadata = {"basis": "transcoders", "validation": {"headline": "graph vs frozen, scale 0", "reports": reports},
                "cards": cards, "skip_share": {"share": 0.25}}
    return Graph("Dallas is", ["<bos>", "Dallas", " is"], "m", "transcoders", nodes, a, metadata=metadata)


def test_validation_figures_read_the_first_scale_and_flag_intervals_with_zero():
    figures = validation_figures(_graph().metadata)
    assert figures["frozen vs real"] == {"spearman": 0.4, "low": -0.05, "high": 0.7, "n": 5, "includes_zero": True}
    assert figures["graph vs real"]["includes_zero"] is False
    with pytest.raises(InvalidInputError, match="no validation"):
        validation_figures({})
    stages = stage_figures(_graph().metadata)
    assert list(stages) == ["graph vs + error nodes live", "graph vs + attention patterns live", "graph vs real"]
    assert stages["graph vs + attention patterns live"]["spearman"] == 0.5 and stages["graph vs real"]["spearman"] == 0.3


def test_each_unfrozen_model_is_ranked_against_the_real_one_node_by_node():
    from scipy.stats import spearmanr

    metadata = _graph().metadata
    stages = stages_vs_real(metadata)
    assert list(stages) == ["frozen", "+ error nodes live", "+ attention patterns live"]
    rows = metadata["validation"]["reports"]["frozen vs real, scale 0"]["rows"]
    expected = spearmanr([r["predicted"] for r in rows], [r["measured"] for r in rows]).statistic
    assert stages["frozen"]["spearman"] == pytest.approx(expected, abs=1e-12) and stages["frozen"]["moved"] is None
    assert stages["+ error nodes live"]["spearman"] == pytest.approx(1.0)  # matched by node id, not row order
    assert stages["+ error nodes live"]["moved"] == pytest.approx(expected, abs=1e-12)
    assert stages["+ attention patterns live"]["spearman"] == pytest.approx(-1.0)
    assert stages["+ attention patterns live"]["moved"] == pytest.approx(-1.0)
    assert stages["+ error nodes live"]["n"] == 5 and stages["+ error nodes live"]["includes_zero"] is False
    table = stages_vs_real_markdown({"g-features": {"stages_vs_real": stages},
                                     "g-neurons": {"stages_vs_real": {"frozen": stages["frozen"]}}})
    lines = table.splitlines()
    assert lines[0] == "| graph | frozen | + error nodes live | + attention patterns live |"
    assert lines[2].startswith(f"| g-features | {expected:.2f} (≥ ") and "| 1.00 (≥ 1.00) |" in lines[2]
    assert lines[3].endswith("| — | — |")
    other = _graph().metadata
    other["validation"]["reports"]["graph vs + error nodes live, scale 0"]["rows"].pop()
    with pytest.raises(InvalidInputError, match="checked other nodes"):
        stages_vs_real(other)


def test_top_features_rank_by_influence_at_a_token_and_by_direct_edge_into_the_target():
    graph = _graph()
    assert [graph.nodes[i].node_id for i in top_features_at(graph, "Dallas", k=3)] == ["f1", "f2", "f0"]
    assert [graph.nodes[i].node_id for i in top_features_at(graph, "Dallas", k=1)] == ["f1"]
    assert [graph.nodes[i].node_id for i in top_features_into_target(graph, k=5)] == ["f1", "f3", "f0"]
    with pytest.raises(InvalidInputError, match="'Austin' is not in the prompt"):
        top_features_at(graph, "Austin")


def test_places_are_found_in_the_shown_text_and_at_the_activating_token():
    assert shows_place({"tokens": [" near", " Dallas", ",", " Texas"], "at": 1}) == ("Dallas", True)
    assert shows_place({"tokens": [" near", " Dallas", ",", " Texas"], "at": 2}) == ("Dallas", False)
    assert shows_place({"tokens": [" a", " Tex", "as", " city"], "at": 2}) == ("Texas", True)
    assert shows_place({"tokens": [" the", " city", " of"], "at": 2}) == (None, False)
    assert shows_place({"tokens": [" Dallasite", " food"], "at": 0}) == (None, False)  # whole words only
    assert shows_place({"tokens": [" in", " France", " and"], "at": 0}) == ("France", False)
    count = count_places([{"tokens": [" in", " France"], "at": 1}, {"tokens": [" Judah"], "at": 0}])
    assert (count.contexts, count.showing, count.at_token, count.places) == (2, 1, 1, ("France",))


def test_graph_summary_puts_the_pieces_together():
    summary = graph_summary(_graph(), at_token="Dallas", k=2)
    assert summary["target"] == " Texas" and summary["skip_share"] == 0.25
    first = summary["at_token"]["features"][0]
    assert (first["node_id"], first["contexts_shown"], first["with_place"], first["place_at_token"]) == ("f1", 2, 1, 1)
    assert first["contexts"] == [" near Dallas, Texas", " the city of"]
    assert [r["node_id"] for r in summary["into_target"]] == ["f1", "f3"]
    assert place_totals(summary["at_token"]["features"]) == (2, 1)  # f1: 1 of 2 is half; f2 has no contexts


def test_markdown_tables_quote_the_summary():
    features = graph_summary(_graph(), at_token="Dallas", k=2)
    neurons = {**features, "validation": {**features["validation"], "frozen vs real": {
        "spearman": 0.55, "low": 0.3, "high": 0.74, "n": 100, "includes_zero": False}}}
    table = validation_markdown({"d-features": features, "d-neurons": neurons}).splitlines()
    assert table[2] == ("| Dallas is | 5 | 0.40 [-0.05, 0.70] (includes 0) | 0.55 [0.30, 0.74] | 0.30 [0.10, 0.50] | "
                        "0.80 [0.70, 0.90] | 0.25 |")
    with pytest.raises(InvalidInputError, match="no 'd-neurons'"):
        validation_markdown({"d-features": features})
    rows = features_markdown(features["at_token"]["features"]).splitlines()
    assert rows[2] == "| L4 #11 @1 | b | 1/2 | Dallas |  near Dallas, Texas |"
    assert rows[3] == "| L5 #12 @1 | c | 0/0 | — | — |"
    assert [r["pos"] for r in features["into_target"]] == [1, 2]  # f1, f3 (k=2)


def test_a_feature_row_names_its_position_from_its_node_id_where_it_has_no_pos():
    """Summaries written before rows had ``pos``: the position comes from ``layer_feature_pos``;
    one feature at two positions reads as two nodes; an id of another shape names none."""
    row = {"layer": 12, "feature": 1968, "label": "x", "with_place": 0, "contexts_shown": 0, "places": [], "contexts": []}
    lines = features_markdown([row | {"node_id": "12_1968_8"}, row | {"node_id": "12_1968_5"}, row | {"node_id": "f1"},
                               row | {"node_id": "12_1969_8"}, row | {"node_id": "12_1968_8", "pos": 3}]).splitlines()[2:]
    assert [line.split(" | ")[0] for line in lines] == ["| L12 #1968 @8", "| L12 #1968 @5", "| L12 #1968", "| L12 #1968", "| L12 #1968 @3"]


def test_quality_table_has_a_row_per_layer_and_the_mean():
    report = pd.DataFrame({"layer": [0, 1], "fvu": [0.1, 0.3], "l0": [64.0, 64.0], "dead_fraction": [0.0, 0.25],
                           "rare_fraction": [0.5, 0.0], "ce_increase": [0.01, 0.05], "kl": [0.02, 0.04]})
    lines = quality_markdown(report).splitlines()
    assert lines[2] == "| 0 | 0.100 | 64.0 | 0.0% | 50.0% | +0.010 | 0.020 |"
    assert lines[-1] == "| mean | 0.200 | 64.0 | 12.5% | 25.0% | +0.030 | 0.030 |"
    assert len(quality_markdown(report.drop(columns=["ce_increase", "kl"])).splitlines()[1].split("|")) == 7


def test_table_cells_keep_pipes_and_tags_visible():
    rows = [{"layer": 1, "feature": 2, "label": "'|' ctx", "with_place": 0, "contexts_shown": 1, "places": [],
             "contexts": ["a<eos>b | c\nd"]}]
    assert features_markdown(rows).splitlines()[2] == "| L1 #2 | '\\|' ctx | 0/1 | — | a&lt;eos&gt;b \\| c d |"


def test_validated_nodes_group_by_prompt_position():
    import scipy.stats

    graph = _graph()
    rows = validation_by_position(graph)
    assert [(r["pos"], r["token"], r["nodes"]) for r in rows] == [(1, "Dallas", 3), (2, " is", 2)]
    dallas = rows[0]
    assert dallas["spearman"] == pytest.approx(-1.0)  # predicted 0.1, 3, -2 against measured 0.3, -0.5, 0.6
    assert dallas["spearman"] == pytest.approx(scipy.stats.spearmanr([0.1, 3.0, -2.0], [0.3, -0.5, 0.6]).statistic)
    assert dallas["mean_predicted"] == pytest.approx(1.1 / 3) and dallas["mean_measured"] == pytest.approx(0.4 / 3)
    assert rows[1]["spearman"] is None and rows[1]["low"] is None  # two nodes: no correlation
    assert rows[1]["mean_predicted"] == pytest.approx(0.75) and rows[1]["mean_measured"] == pytest.approx(0.35)
    table = positions_markdown(rows).splitlines()
    assert table[2].startswith("| 1 | 'Dallas' | 3 | -1.00 [") and table[2].endswith("| +0.367 | +0.133 |")
    assert table[3] == "| 2 | ' is' | 2 | — | +0.750 | +0.350 |"
    assert graph_summary(graph)["by_position"] == rows
    frozen = graph.metadata["validation"]["reports"]["frozen vs real, scale 0"]["rows"]
    frozen.append({"node_id": "pruned", "pos": 2, "predicted": 0.0, "measured": 0.0})  # validated, then pruned away
    assert [r["nodes"] for r in validation_by_position(graph)] == [3, 3]
    frozen.append({"node_id": "gone", "predicted": 0, "measured": 0})
    with pytest.raises(InvalidInputError, match="'gone'.*has no position and names no node"):
        validation_by_position(graph)
    with pytest.raises(InvalidInputError, match="no 'graph vs nothing' comparison"):
        validation_by_position(graph, "graph vs nothing")
