"""Every command checks its inputs before the work: a table of bad inputs, each ending in exit 2
with one ``scrying: error:`` line naming the input, before any model loads (loading is made to
fail loudly) and with nothing written; and a refused or failed run never blocks the corrected one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scrying.cli.main import main
from scrying.transcoders import TranscoderSet, TranscoderSpec, write_transcoders
from tests.test_reversal_scoring import _tiny_pairs, tiny_dir  # noqa: F401 (fixture)
from tests.test_transcoder_files import _random

PROMPT = "t1 t5 t2 t7 t1 t5"


@pytest.fixture()
def no_model(monkeypatch):
    """Loading a model (or training the toy family) fails the test: the case must stop first."""
    from scrying.emergence import run as emergence
    from scrying.models import loading

    def loud(*args, **kwargs):
        raise AssertionError("a model was loaded before the inputs were checked")

    monkeypatch.setattr(loading, "_local_dir", loud)
    monkeypatch.setattr(loading, "_boot_hub", loud)
    monkeypatch.setattr(emergence, "toy_family", loud)


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, str]:
    """Inputs the table refers to by name: good ones, bad ones, an existing folder."""
    (tmp_path / "prompts.jsonl").write_text(json.dumps({"prompt": PROMPT}) + "\n")
    (tmp_path / "levels.jsonl").write_text(json.dumps({"prompt": PROMPT, "level": "edges"}) + "\n")
    pairs = [{"a": p.a, "b": p.b, "relation": p.relation, "forward": p.forward, "reverse": p.reverse} for p in _tiny_pairs()]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    (tmp_path / "family.json").write_text(json.dumps([{"model": "m1", "scale": 1}, {"model": "m2", "scale": 2}]))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    (tmp_path / "good.txt").write_text("Some English text.\n")
    (tmp_path / "graph.json").write_bytes(b"\xff\xfe not json")
    bad_yaml = tmp_path / "bad-transcoders"
    bad_yaml.mkdir()
    (bad_yaml / "config.yaml").write_text("transcoders: [unclosed\n")
    (tmp_path / "a-folder").mkdir()
    spec = TranscoderSpec(d_model=6, n_features=10, activation="relu")
    write_transcoders(TranscoderSet([_random(spec, layer) for layer in range(2)], "tiny"), tmp_path / "tc")
    return {"tmp": str(tmp_path), "folder": str(tmp_path / "a-folder"), "bad_tc": str(bad_yaml), "tc": str(tmp_path / "tc"),
            **{p.stem.replace("-", "_"): str(p) for p in tmp_path.iterdir() if p.is_file()}}


# (arguments, text the one error line must contain); {name} is a path from `files`
CASES = [
    # trace
    (["trace", PROMPT, "--out", "/etc/passwd/x.html"], "--out '/etc/passwd/x.html': '/etc/passwd' is a file, not a folder"),
    (["trace", PROMPT, "--json", "{folder}"], "--json '{folder}' is a folder; expected a file name"),
    (["trace", PROMPT, "--out", "{tmp}/g.html", "--json", "{tmp}/g.html"], "--json and --out name the same file"),
    (["trace", PROMPT, "--transcoders", "{tmp}/none"], "no transcoder config"),
    (["trace", PROMPT, "--transcoders", "{bad_tc}"], "config.yaml"),
    (["trace", PROMPT, "--level", "components", "--transcoders", "{bad_tc}"], "--transcoders is for --level neurons"),
    (["trace", PROMPT, "--target", ""], "TraceConfig.target is empty"),
    (["trace", PROMPT, "--out-dir", "{tmp}/o"], "--out-dir is for batch mode"),
    (["trace", "--prompts", "{prompts}", "--out", "{tmp}/x.html"], "--out is for one PROMPT"),
    (["trace", "--prompts", "{prompts}", "--out-dir", "{tmp}/o", "--transcoders", "{bad_tc}"], "config.yaml"),
    (["trace", "--prompts", "{prompts}", "--out-dir", "{prompts}"], "--out-dir '{prompts}' is a file; expected a folder"),
    (["trace", "--prompts", "{levels}"], "levels.jsonl line 1: 'level' must be 'neurons' or 'components', got 'edges'"),
    (["trace", PROMPT, "--model", "no-such-model"], "unknown model 'no-such-model'"),
    # reversal
    (["reversal", "--pairs", "{pairs}", "--out", "/etc/passwd/r.jsonl"], "--out '/etc/passwd/r.jsonl'"),
    (["reversal", "--pairs", "{pairs}", "--out", "{tmp}/r.jsonl", "-k", "100000"],
     "100000 distractors asked, but relation 'r' has only 4 other forward answers"),
    (["reversal", "--pairs", "{pairs}", "--out", "{tmp}/r.jsonl", "--html", "{tmp}/r.html", "--graphs", "-2"], "--graphs must be >= 0"),
    (["reversal", "--pairs", "{pairs}", "--out", "{tmp}/r.jsonl", "--html", "/etc/passwd/r.html"], "--html '/etc/passwd/r.html'"),
    (["reversal", "--pairs", "{tmp}/none.jsonl", "--out", "{tmp}/r.jsonl"], "cannot read pair file"),
    (["reversal", "--experiment", "toy", "--out-dir", "/etc/passwd/x"], "--out-dir '/etc/passwd/x'"),
    # emergence
    (["emergence", "--family", "nosuchfamily", "--task", "addition:2", "--out-dir", "{tmp}/e"],
     "--family 'nosuchfamily' is neither a family file nor a known family; expected FAMILY.json, a toy preset (tiny, toy, "
     "toy-widths) or a shipped family (pythia-410m-steps, pythia-sizes, real)"),
    (["emergence", "--family", "toy", "--task", "addition:999999", "--out-dir", "{tmp}/e"], "not 'addition:999999'"),
    (["emergence", "--family", "{family}", "--task", "addition:999999", "--out-dir", "{tmp}/e"],
     "addition: K (digits per operand) must be at most 64, got 999999"),
    (["emergence", "--family", "{family}", "--task", "addition:2", "--references", "{tmp}/none.json", "--out-dir", "{tmp}/e"],
     "cannot read family file"),
    (["emergence", "--outputs", "{tmp}/none.jsonl", "--out-dir", "{tmp}/e"], "cannot read outputs file"),
    (["emergence", "--outputs", "{prompts}", "--out-dir", "/etc/passwd/e"], "--out-dir '/etc/passwd/e'"),
    # transcoders and intervene
    (["transcoders", "train", "--out", "/etc/passwd/t", "--text", "{good}"], "--out '/etc/passwd/t'"),
    (["transcoders", "train", "--out", "{tmp}/t", "--text", "{latin1}"], "latin1.txt"),
    (["transcoders", "train", "--out", "{tmp}/t", "--text", "{tmp}/none.txt"], "none.txt"),
    (["transcoders", "train", "--out", "{tmp}/t", "--text", "{good}", "--lr", "-1"], "TranscoderTrainConfig.lr must be > 0"),
    (["transcoders", "report", "{tmp}/none"], "no transcoder config"),
    (["transcoders", "label", "{bad_tc}", "--features", "1:2"], "config.yaml"),
    (["transcoders", "label", "{bad_tc}", "--features", "1-2"], "a feature is LAYER:INDEX"),
    (["transcoders", "label", "{tc}", "--features", "1:10"], "feature 1:10 is not in a set of 2 layers x 10"),
    (["transcoders", "label", "{tc}", "--features", "0:1", "--text", "{latin1}"], "latin1.txt"),
    (["intervene", PROMPT, "--transcoders", "{tmp}/none", "--set", "0:1=0"], "no transcoder config"),
    (["intervene", PROMPT, "--transcoders", "{tc}", "--set", "2:1=0"], "feature 2:1 is not in a set of 2 layers x 10"),
    (["intervene", "", "--transcoders", "{tc}", "--set", "0:1=0"], "prompt is empty"),
    (["intervene", PROMPT, "--transcoders", "{bad_tc}", "--set", "0:1"], "--set takes LAYER:INDEX[@POS]=VALUE"),
    # ablate, predict, view
    (["ablate", "--prompts", "{prompts}", "--metric", "logprob", "--out", "/etc/passwd/x.csv"], "--out '/etc/passwd/x.csv'"),
    (["ablate", "--prompts", "{prompts}", "--metric", "logprob", "--html", "{folder}"], "--html '{folder}' is a folder"),
    (["ablate", "--prompts", "{prompts}"], "missing 'correct'"),
    (["predict", ""], "prompt is empty"),
    (["view", "{graph}", "--out", "{tmp}/g.html"], "not UTF-8"),
    (["view", "{prompts}", "--out", "/etc/passwd/g.html"], "--out '/etc/passwd/g.html'"),
    (["view", "--gallery", "{tmp}/none"], "--gallery"),
]


@pytest.mark.parametrize(("args", "needle"), CASES, ids=[" ".join(a[:3]) + f" #{i}" for i, (a, _) in enumerate(CASES)])
def test_bad_input_stops_before_the_model_with_one_line(args, needle, files, no_model, capsys):
    before = sorted(Path(files["tmp"]).rglob("*"))
    assert main([a.format(**files) for a in args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("scrying: error: "), err
    assert needle.format(**files) in err[0]
    assert sorted(Path(files["tmp"]).rglob("*")) == before, "a refused run wrote something"


def test_refused_batch_does_not_block_the_corrected_one(toy_dir, files, capsys):
    """A trace batch refused for its transcoders, then one that fails on its first prompt after
    the model loaded: neither leaves an index, so the corrected rerun runs as it is."""
    out = Path(files["tmp"]) / "graphs"
    common = ["trace", "--prompts", files["prompts"], "--out-dir", str(out), "--model", str(toy_dir),
              "--max-features", "8", "--validate-top", "2"]
    assert main([*common, "--transcoders", files["bad_tc"]]) == 2
    assert main([*common, "--target", "t1 t2"]) == 2  # two tokens: refused once the model is loaded
    assert "expected exactly one token" in capsys.readouterr().err
    assert not (out / "index.jsonl").exists()
    assert main(common) == 0
    lines = (out / "index.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["settings"]["target"] is None and len(lines) == 2


def test_refused_reversal_does_not_block_the_corrected_one(tiny_dir, files, capsys):  # noqa: F811
    out = Path(files["tmp"]) / "r.jsonl"
    common = ["reversal", "--pairs", files["pairs"], "--model", str(tiny_dir), "--out", str(out), "--n-bootstrap", "20"]
    assert main([*common, "-k", "100000"]) == 2
    assert not out.exists()
    assert main([*common, "-k", "2"]) == 0
    assert json.loads(out.read_text().splitlines()[0])["settings"]["distractors"] == 2


def test_a_resumed_batch_says_so(tiny_dir, files, caplog):  # noqa: F811
    out = Path(files["tmp"]) / "r.jsonl"
    args = ["reversal", "--pairs", files["pairs"], "--model", str(tiny_dir), "--out", str(out), "-k", "2", "--n-bootstrap", "20"]
    with caplog.at_level("WARNING", logger="scrying.journal"):
        assert main(args) == 0
        assert "Resuming" not in caplog.text
        lines = out.read_text().splitlines()
        out.write_text("\n".join(lines[:3]) + "\n")  # killed after two pairs
        assert main(args) == 0
    assert f"Resuming: 2 of 5 pairs already done ({out})" in caplog.text
