"""``scrying reversal``: the shipped pair files are a fresh build of the fact tables; bad input
is one line naming it with exit 2; a killed run resumes to the same results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scrying.cli.main import main
from scrying.reversal.pairs import read_pairs
from scrying.reversal.relations import build_relations, packaged_relation_files, relation_lines
from tests.test_cli import assert_one_line_error, call
from tests.test_reversal_scoring import _tiny_pairs, tiny_dir  # noqa: F401 (fixture)


def test_shipped_relations_are_a_fresh_build_and_symmetric():
    built = build_relations()
    files = packaged_relation_files()
    assert [f.stem for f in files] == sorted(built)
    for path in files:
        assert path.read_text(encoding="utf-8") == relation_lines(built[path.stem]), f"{path.name} is stale"
        pairs = read_pairs(path)
        assert len(pairs) >= 40
        assert len({(p.a, p.b) for p in pairs}) == len(pairs)
        for p in pairs:
            assert p.prompt("forward").count(p.a) == 1 and p.b not in p.prompt("forward")
            assert p.prompt("reverse").count(p.b) == 1 and p.a not in p.prompt("reverse")


def _write(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


def _pair_lines() -> list[dict]:
    return [{"a": p.a, "b": p.b, "relation": p.relation, "forward": p.forward, "reverse": p.reverse, "note": i}
            for i, p in enumerate(_tiny_pairs())]


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ('{"a": "w1", "b": ', "pairs.jsonl line 3: not valid JSON"),
        ({"a": "w1", "b": "w2", "relation": "r", "forward": "w3 w4", "reverse": "{b} w3"}, "pairs.jsonl line 3: 'forward' template 'w3 w4' must contain {a}"),
        ({"a": "w1", "b": "w2", "relation": "r", "forward": "{a}", "reverse": "{a} w3"}, "pairs.jsonl line 3: 'reverse' template '{a} w3' must contain {b}"),
        ({"a": "~~", "b": "w2", "relation": "r", "forward": "{a}", "reverse": "{b} w3"}, "pairs.jsonl line 3: answer ' ~~' tokenizes to no tokens"),
    ],
)
def test_a_bad_line_is_named_and_the_rest_scored(tmp_path, tiny_dir, bad, needle, capsys):  # noqa: F811
    lines = _pair_lines()
    pairs = _write(tmp_path / "pairs.jsonl", [*lines[:2], bad, *lines[2:]])
    args = ["reversal", "--pairs", str(pairs), "--model", str(tiny_dir), "--distractors", "1", "--out", str(tmp_path / "r.jsonl")]
    assert main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("scrying: error:")]
    assert len(err) == 2 and needle in err[0] and err[0].endswith("(skipped)"), err
    assert "1 bad line(s) skipped, named above; the other 5 pairs were scored" in err[1]
    scored = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()[1:]]
    assert [(r["a"], r["b"]) for r in scored] == [(x["a"], x["b"]) for x in lines]
    # the same good pairs alone give the same numbers
    clean = _write(tmp_path / "clean.jsonl", lines)
    assert main([*args[:2], str(clean), *args[3:-1], str(tmp_path / "c.jsonl")]) == 0
    alone = [json.loads(x) for x in (tmp_path / "c.jsonl").read_text().splitlines()[1:]]
    assert scored == alone


def test_a_file_of_bad_lines_is_one_line_and_exit_2(tmp_path, tiny_dir, capsys):  # noqa: F811
    pairs = _write(tmp_path / "pairs.jsonl", ['{"a": "w1", "b": '])
    result = call(capsys, "reversal", "--pairs", str(pairs), "--model", str(tiny_dir), "--out", str(tmp_path / "r.jsonl"))
    assert_one_line_error(result, "pairs.jsonl line 1: not valid JSON")


def test_too_many_distractors_is_one_line_and_exit_2(tmp_path, tiny_dir, capsys):  # noqa: F811
    pairs = _write(tmp_path / "pairs.jsonl", _pair_lines())
    assert main(["reversal", "--pairs", str(pairs), "--model", str(tiny_dir), "--distractors", "5",
                 "--out", str(tmp_path / "r.jsonl")]) == 2
    assert "5 distractors asked, but relation 'r' has only 4 other forward answers for pairs.jsonl line 1" in capsys.readouterr().err


def test_a_killed_run_resumes_to_the_same_results(tmp_path, tiny_dir, capsys):  # noqa: F811
    pairs = _write(tmp_path / "pairs.jsonl", _pair_lines())
    args = ["reversal", "--pairs", str(pairs), "--model", str(tiny_dir), "--distractors", "2", "--n-bootstrap", "50"]
    assert main([*args, "--out", str(tmp_path / "full.jsonl"), "--html", str(tmp_path / "report.html"), "--lens", "--graphs", "1"]) == 0
    out = capsys.readouterr().out
    assert "relation" in out and "exact fwd" in out
    full = (tmp_path / "full.jsonl").read_text().splitlines()
    assert len(full) == 1 + 5 and json.loads(full[1])["note"] == 0  # extra fields are kept
    # a run killed after two records, the third torn mid-line
    (tmp_path / "part.jsonl").write_text("\n".join(full[:3]) + "\n" + full[3][:20], encoding="utf-8")
    assert main([*args, "--out", str(tmp_path / "part.jsonl")]) == 0
    resumed = (tmp_path / "part.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in resumed] == [json.loads(x) for x in full]
    assert (tmp_path / "full.summary.md").read_text().startswith("| relation |")
    assert (tmp_path / "full.lens.csv").read_text().startswith("index,relation,direction,layer,logprob,rank")
    patching = (tmp_path / "full.patching.csv").read_text().splitlines()
    assert patching[0] == "index,relation,direction,layer,p_clean,p_corrupt,p_restored"
    gap = [json.loads(x) for x in full[1:] if json.loads(x)["forward"]["rank"] == 1 and json.loads(x)["reverse"]["rank"] > 1]
    assert len(patching) == 1 + len(gap) * 2 * 2  # two blocks, two directions
    report = (tmp_path / "report.html").read_text()
    assert "Reversal-curse probe" in report
    assert gap and "Causal tracing of the subject" in report  # the tiny model knows some pairs one way only
    # the first such pair's two attribution graphs, written beside the report and linked from it
    for direction in ("forward", "reverse"):
        href = f"report_graphs/pair{gap[0]['index']}-{direction}.html"
        assert f"href='{href}'" in report and (tmp_path / href).is_file()
        graph = json.loads((tmp_path / href).with_suffix(".json").read_text())
        answer = gap[0]["b" if direction == "forward" else "a"].split()[0]
        target = [n for n in graph["nodes"] if n.get("is_target_logit")]
        assert len(target) == 1 and target[0]["clerp"].startswith(f'Output "{answer}"')
    # other settings are refused
    assert main([*args[:-4], "--distractors", "3", "--out", str(tmp_path / "full.jsonl")]) == 2
    assert "distractors differ" in capsys.readouterr().err


def test_the_command_runs_the_library_function(tmp_path, tiny_dir):  # noqa: F811
    """``scrying reversal --pairs`` is :func:`run_probe_job` with the config it builds: the same
    files, byte for byte, and the result holds what the files hold."""
    import pandas as pd

    from scrying.models import LoadConfig
    from scrying.reversal.pair_scoring import ReversalConfig
    from scrying.reversal.run import ProbeJobConfig, run_probe_job
    from scrying.stats import BootstrapConfig

    pairs = _write(tmp_path / "pairs.jsonl", _pair_lines())
    assert main(["reversal", "--pairs", str(pairs), "--model", str(tiny_dir), "-k", "2", "--n-bootstrap", "50", "--lens",
                 "--batch-size", "3", "--out", str(tmp_path / "cli" / "r.jsonl")]) == 0
    config = ProbeJobConfig(pairs=(str(pairs),), model=str(tiny_dir), out=tmp_path / "lib" / "r.jsonl", lens=True,
                            scoring=ReversalConfig(distractors=2, batch_size=3), bootstrap=BootstrapConfig(n_resamples=50))
    result = run_probe_job(config, LoadConfig())
    names = ["r.jsonl", "r.summary.csv", "r.summary.md", "r.lens.csv", "r.patching.csv"]
    assert result.written == [tmp_path / "lib" / name for name in names] and result.skipped == []
    for name in names:
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "lib" / name).read_bytes(), name
    lines = (tmp_path / "lib" / "r.jsonl").read_text().splitlines()[1:]
    assert [json.dumps(r.to_json()) for r in result.records] == lines
    stored = pd.read_csv(tmp_path / "lib" / "r.summary.csv")
    assert stored.relation.tolist() == result.table.relation.tolist()
    assert stored.drop(columns="relation").to_numpy() == pytest.approx(result.table.drop(columns="relation").to_numpy(), nan_ok=True)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"out": None}, "--pairs needs --out RESULTS.jsonl"),
        ({"graphs": -1}, "--graphs must be >= 0, got -1"),
        ({"graphs": 1}, "--graphs N links the graphs from the report: give --html REPORT.html too"),
        ({"pairs": ()}, "ProbeJobConfig.pairs must be a non-empty tuple of pair files"),
        ({"model": " "}, "ProbeJobConfig.model must be a model spec"),
    ],
)
def test_probe_job_config_names_the_field(tmp_path, kwargs, needle):
    from scrying.errors import ConfigError
    from scrying.reversal.run import ProbeJobConfig

    with pytest.raises(ConfigError, match=needle):
        ProbeJobConfig(**{"pairs": ("p.jsonl",), "model": "m", "out": tmp_path / "r.jsonl", **kwargs})


def test_graphs_without_a_tracer_are_refused_before_the_model_loads(tmp_path):
    from scrying.errors import ConfigError
    from scrying.reversal.run import ProbeJobConfig, run_probe_job

    config = ProbeJobConfig(pairs=("packaged",), model="no-such-model", out=tmp_path / "r.jsonl", html=tmp_path / "r.html",
                            graphs=1)
    with pytest.raises(ConfigError, match="--graphs 1 needs a trace_graph"):
        run_probe_job(config)
    assert list(tmp_path.iterdir()) == []


def test_finetune_options_reach_the_config(tmp_path, monkeypatch, capsys):
    """``--experiment finetune --steps --target-forward-top1 --eval-every`` become the
    FinetuneConfig the experiment runs with (the experiment itself is stubbed: it trains for an hour)."""
    from scrying.cli.main import main
    from scrying.reversal import finetune

    seen = {}

    class Done(Exception):
        pass

    def fake(config, out_dir, load=None, *, progress=False):
        seen["config"] = config
        raise Done

    monkeypatch.setattr(finetune, "run_finetune", fake)
    with pytest.raises(Done):
        main(["reversal", "--experiment", "finetune", "--out-dir", str(tmp_path / "ft"), "--steps", "400",
              "--target-forward-top1", "0.8", "--eval-every", "20"])
    config = seen["config"]
    assert (config.steps, config.target_forward_top1, config.eval_every) == (400, 0.8, 20)
    with pytest.raises(Done):
        main(["reversal", "--experiment", "finetune", "--out-dir", str(tmp_path / "ft")])
    assert seen["config"].target_forward_top1 is None and seen["config"].eval_every == 20
