"""``scrying trace --no-validate``: the same graph, no interventions, no validation in the files."""

from __future__ import annotations

import json

import torch

import scrying.attribution.trace as trace_module
from scrying.attribution import Graph
from scrying.cli.main import main
from tests.tiny_models import tiny

PROMPT = "t1 t5 t2 t7 t1 t5"


def test_no_validate_skips_the_interventions_and_keeps_the_graph(tmp_path, capsys, monkeypatch):
    tiny("gpt2", tmp_path)
    common = ["--model", str(tmp_path / "gpt2"), "--max-features", "20", "--validate-top", "4"]
    assert main(["trace", PROMPT, *common, "--out", str(tmp_path / "a.html"), "--json", str(tmp_path / "a.json")]) == 0
    assert "validation graph vs frozen, scale 0 (n=4): Spearman" in capsys.readouterr().out

    def refuse(*args, **kwargs):
        raise AssertionError("validation ran")

    monkeypatch.setattr(trace_module, "validate_feature_graph", refuse)
    assert main(["trace", PROMPT, *common, "--no-validate", "--out", str(tmp_path / "b.html"), "--json", str(tmp_path / "b.json")]) == 0
    out = capsys.readouterr().out
    assert "validation: skipped (--no-validate)" in out and "validation graph" not in out
    assert json.loads((tmp_path / "b.json").read_text())["scrying"]["metadata"]["validation"] is None
    assert "Validation by intervention" not in (tmp_path / "b.html").read_text()
    validated, bare = Graph.read_json(tmp_path / "a.json"), Graph.read_json(tmp_path / "b.json")
    assert [n.node_id for n in validated.nodes] == [n.node_id for n in bare.nodes]
    assert torch.equal(validated.adjacency, bare.adjacency)
