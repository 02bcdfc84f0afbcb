"""``scrying trace``: the main job on the default model, batch mode with resume, bad input."""

import json

import pytest

from scrying.attribution import Graph
from scrying.cli.main import main
from tests.test_cli import assert_one_line_error, call

IOI = "When Mary and John went to the store, John gave a drink to"
FLOOR = 0.8  # Spearman, pruned graph vs frozen model, 50 neurons, IOI on Gemma 3 270M


def test_trace_ioi_on_the_default_model(gemma, tmp_path, capsys):
    html, js = tmp_path / "ioi.html", tmp_path / "ioi.json"
    code = main(["trace", IOI, "--out", str(html), "--json", str(js), "--max-features", "64", "--validate-top", "50"])
    assert code == 0
    out = capsys.readouterr().out
    assert "validation graph vs frozen, scale 0 (n=50): Spearman" in out and "replacement score" in out
    page = html.read_text()
    assert "Validation by intervention" in page and "bootstrap intervals" in page
    data = json.loads(js.read_text())
    assert data["metadata"]["schema_version"] == 1 and data["metadata"]["prompt"] == IOI
    assert {"node_id", "feature", "layer", "ctx_idx", "feature_type", "clerp", "influence", "activation"} <= set(data["nodes"][0])
    assert {"source", "target", "weight"} == set(data["links"][0])
    graph = Graph.read_json(js)
    target = next(n for n in graph.nodes if n.is_target)
    assert target.label.startswith("Output ' Mary'")
    reports = graph.metadata["validation"]["reports"]
    # the unpruned graph is exact in the frozen model it describes, on the real default model too
    assert reports["unpruned graph vs frozen, scale 0"]["pearson"] > 0.9999
    assert reports["unpruned graph vs frozen, scale 0"]["slope"] == pytest.approx(1.0, abs=1e-3)
    # the pruned graph's own prediction: a stated floor (0.93 measured on 2026-11-29)
    assert reports["graph vs frozen, scale 0"]["spearman"] > FLOOR
    # each unfreezing against the real model, the first being the headline's frozen model
    from scrying.transcoders.graph_summary import stages_vs_real

    stages = stages_vs_real(graph.metadata)
    assert list(stages)[:2] == ["frozen", "+ error nodes live"] and len(stages) == 5  # neurons: no masks stage
    assert stages["frozen"]["spearman"] == pytest.approx(reports["frozen vs real, scale 0"]["spearman"], abs=1e-12)
    shown = ", ".join(f"{name} {v['spearman']:.2f}" for name, v in stages.items())
    assert f"validation, each model against the real one (Spearman; where unfreezing closes the gap): {shown}\n" in out


def test_batch_mode_resumes(toy_dir, tmp_path):
    """Ids name the files as they are: 'm-1.5b' and 'm-1.5b-c' once both wrote m-1.html."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        json.dumps({"id": "m-1.5b", "prompt": "t1 t5 t2 t7 t1 t5"}) + "\n"
        + json.dumps({"id": "m-1.5b-c", "prompt": "t3 t9 t4 t3 t9", "level": "components", "corrupt": "t3 t9 t4 t8 t9", "split_qkv": True}) + "\n"
    )
    out = tmp_path / "out"
    args = ["trace", "--prompts", str(prompts), "--out-dir", str(out), "--model", str(toy_dir), "--max-features", "20", "--validate-top", "3"]
    assert main(args) == 0
    assert {p.name for p in out.iterdir()} >= {"m-1.5b.html", "m-1.5b.json", "m-1.5b-c.html", "m-1.5b-c.json", "index.jsonl"}  # ids with dots keep them
    assert Graph.read_json(out / "m-1.5b-c.json").metadata["split_qkv"] is True  # per-line option
    index = out / "index.jsonl"
    header, *first = index.read_text().splitlines()
    settings = json.loads(header)["settings"]
    assert settings["max_features"] == 20 and settings["model_fingerprint"] and settings["prompts_sha256"]
    assert [json.loads(line)["id"] for line in first] == ["m-1.5b", "m-1.5b-c"]
    (out / "m-1.5b-c.json").unlink()
    index.write_text(header + "\n" + first[0] + "\n")  # as if interrupted after the first prompt
    assert main(args) == 0
    assert [json.loads(line)["id"] for line in index.read_text().splitlines()[1:]] == ["m-1.5b", "m-1.5b-c"]
    assert (out / "m-1.5b-c.json").exists()
    before = (out / "m-1.5b.json").stat().st_mtime_ns
    assert main(args) == 0  # nothing left to do
    assert (out / "m-1.5b.json").stat().st_mtime_ns == before


def test_batch_rerun_with_other_settings_is_refused(toy_dir, tmp_path, capsys):
    """Graphs of other settings never mix in one index: the rerun names what differs."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "a", "prompt": "t1 t5 t2 t7 t1 t5"}) + "\n")
    out = tmp_path / "out"
    args = ["trace", "--prompts", str(prompts), "--out-dir", str(out), "--model", str(toy_dir), "--validate-top", "3"]
    assert main([*args, "--max-features", "20"]) == 0
    capsys.readouterr()
    assert main([*args, "--max-features", "10"]) == 2
    assert "index.jsonl holds a trace batch with other settings (max_features differ)" in capsys.readouterr().err
    prompts.write_text(json.dumps({"id": "b", "prompt": "t1 t5 t2 t7 t1 t5"}) + "\n")
    assert main([*args, "--max-features", "20"]) == 2
    assert "(prompts_sha256 differ)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["t1 t2", "--target", "t1 t2"], "expected exactly one token"),
        (["   "], "prompt is empty"),
        (["t1 t2 t3", "--level", "components", "--corrupt", "t1 t2"], "same token length"),
    ],
)
def test_bad_input_is_one_line(toy_dir, extra, needle, capsys):
    assert_one_line_error(call(capsys, "trace", *extra, "--model", str(toy_dir)), needle)


def test_bad_prompts_file_names_the_line(tmp_path, capsys):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"text": "no prompt key"}\n')
    assert_one_line_error(call(capsys, "trace", "--prompts", str(bad)), "p.jsonl line 2")


def test_bad_line_in_batch_is_named_and_earlier_results_kept(toy_dir, tmp_path, capsys):
    """A line that only fails once traced (its target is two tokens) is named; the graph of
    the line before it is already written and indexed."""
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        json.dumps({"id": "ok", "prompt": "t1 t5 t2 t7 t1 t5"}) + "\n"
        + json.dumps({"id": "bad", "prompt": "t3 t9 t4 t3", "target": "t1 t2"}) + "\n"
    )
    out = tmp_path / "out"
    args = ["trace", "--prompts", str(prompts), "--out-dir", str(out), "--model", str(toy_dir), "--max-features", "8", "--validate-top", "2"]
    result = call(capsys, *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]  # after the progress bar
    assert last.startswith("scrying: error: p.jsonl line 2: target token 't1 t2' is 2 tokens")
    assert [json.loads(line)["id"] for line in (out / "index.jsonl").read_text().splitlines()[1:]] == ["ok"]


def test_non_string_options_in_prompts_file_name_the_line(tmp_path, capsys):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prompt": "fine"}\n\n{"prompt": "x", "level": 3}\n')
    assert_one_line_error(call(capsys, "trace", "--prompts", str(bad)), "p.jsonl line 3: 'level' must be a string")
    bad.write_text('{"prompt": "fine", "split_qkv": "yes"}\n')
    assert_one_line_error(call(capsys, "trace", "--prompts", str(bad)), "p.jsonl line 1: 'split_qkv' must be true or false")


def test_split_qkv_components_graph_sums_to_the_unsplit_one(toy_dir, tmp_path, capsys):
    """``--split-qkv``: validation names the q/k/v part of each checked edge; the graph's edges
    into a head are the sums of its parts, i.e. the unsplit graph's edges."""
    common = ["trace", "t3 t9 t4 t6 t3 t9 t4", "--level", "components", "--corrupt", "t3 t9 t5 t6 t3 t9 t4",
              "--model", str(toy_dir), "--validate-top", "6", "--top-edges", "1000"]  # every edge: whole graphs
    assert main([*common, "--out", str(tmp_path / "plain.html")]) == 0
    assert main([*common, "--split-qkv", "--out", str(tmp_path / "split.html")]) == 0
    plain = Graph.read_json(tmp_path / "plain.json")
    split = Graph.read_json(tmp_path / "split.json")
    assert [n.node_id for n in plain.nodes] == [n.node_id for n in split.nodes]
    scale = float(plain.adjacency.abs().max())
    assert (plain.adjacency - split.adjacency).abs().max() < 1e-4 * scale
    edges = [row["edge"] for row in split.metadata["validation"]["reports"]["EAP-IG vs exact patching"]["rows"]]
    assert any(e.endswith(("<q>", "<k>", "<v>")) for e in edges), edges
    assert split.metadata["split_qkv"] is True and plain.metadata["split_qkv"] is False
    # every edge kept: the circuit is the model, so it recovers all of the metric
    assert plain.metadata["circuit"]["recovered"] == pytest.approx(1.0, abs=1e-4)


def test_component_circuit_is_top_n_with_dead_nodes_pruned(toy_dir, toy_model, tmp_path):
    """The traced circuit is the selection rule's own result on an independently computed EAP-IG
    circuit, and the page states the fraction it recovers."""
    import torch

    from scrying.circuits.circuit import find_circuit
    from scrying.circuits.config import EAPConfig, SelectionConfig
    from scrying.circuits.nodes import ComponentNodes
    from scrying.circuits.selection import score_matrix, select_edges
    from scrying.metrics import LogitDiff
    from scrying.prompts import tokenize

    clean, corrupt = "t3 t9 t4 t6 t3 t9 t4", "t3 t9 t5 t6 t3 t9 t4"
    html = tmp_path / "c.html"
    args = ["trace", clean, "--level", "components", "--corrupt", corrupt,
            "--model", str(toy_dir), "--validate-top", "4", "--top-edges", "20", "--out", str(html)]
    assert main(args) == 0
    graph = Graph.read_json(tmp_path / "c.json")
    circuit = graph.metadata["circuit"]
    assert circuit["top_n"] == 20 and 0 < circuit["kept_edges"] <= 20
    assert f"recover {circuit['recovered']:.1%}" in html.read_text()

    tokens, bad = tokenize(toy_model, clean), tokenize(toy_model, corrupt)
    with torch.no_grad():
        target = int(toy_model(tokens)[0, -1].argmax())
        incorrect = next(t for t in toy_model(bad)[0, -1].argsort(descending=True).tolist() if t != target)
    metric = LogitDiff(correct=(target,), incorrect=(incorrect,))
    scored = find_circuit(toy_model, tokens, bad, metric, EAPConfig(method="eap-ig", baseline="corrupt"))
    nodes = ComponentNodes.of(toy_model)
    kept = select_edges(nodes, score_matrix(nodes, scored.edges), SelectionConfig(top_edges=20))
    n_layers = toy_model.cfg.n_layers

    def node_id(name: str) -> str:
        if name == "embed":
            return "E"
        if name == "logits":
            return f"{n_layers + 1}_{target}"
        if name.startswith("m"):
            return f"M{name[1:]}"
        layer, head = name[1:].split(".h")
        return f"A{layer}.{head}"

    expected = {(node_id(nodes.sources[u]), node_id(nodes.receivers[v])) for u, v in kept.nonzero().tolist()}
    got = {(r.source, r.target) for r in graph.edges().itertuples(index=False)}
    assert got == expected and len(expected) == circuit["kept_edges"]


@pytest.mark.parametrize("bad", ["../escape", ".hidden", "a/b", "with space", ""])
def test_batch_ids_must_be_file_names(tmp_path, capsys, bad):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": bad, "prompt": "t1 t5 t2"}) + "\n")
    result = call(capsys, "trace", "--prompts", str(prompts), "--out-dir", str(tmp_path / "out"), "--model", "no-such-model-needed")
    assert_one_line_error(result, "is not a file name")
    assert not (tmp_path / "out").exists()


def test_contexts_give_neuron_cards_their_top_contexts(toy_dir, tmp_path, capsys):
    """``--contexts FILE``: every feature node's card holds its top-activating contexts in the
    file's windows, named on the page; in batch mode or at the components level it is refused
    before the model loads."""
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(" ".join(f"t{(7 * i + j) % 20 + 1}" for j in range(40)) for i in range(30)), encoding="utf-8")
    js = tmp_path / "g.json"
    args = ["trace", "t3 t9 t4 t6 t3 t9", "--model", str(toy_dir), "--no-validate", "--out", str(tmp_path / "g.html"), "--json", str(js)]
    assert main([*args, "--contexts", str(text), "--context-windows", "8"]) == 0
    data = json.loads(js.read_text())
    cards = data["scrying"]["metadata"]["cards"]
    features = [n["node_id"] for n in data["scrying"]["nodes"] if n["kind"] == "feature"]
    assert features and set(cards) == set(features)
    assert any(cards[f]["contexts"] for f in features)
    assert all(cards[f]["contexts_from"] == "8 windows of 64 tokens of corpus.txt" for f in features)
    assert_one_line_error(call(capsys, "trace", "--prompts", str(tmp_path / "p.jsonl"), "--out-dir", str(tmp_path / "o"),
                               "--contexts", str(text)), "--contexts is for one PROMPT")
