"""The command line: output on good input; one line, no traceback, exit 2 on bad input."""

import subprocess
import sys

import pytest

from scrying.cli.main import main


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scrying.cli.main", *args], capture_output=True, text=True, timeout=600)


def call(capsys: pytest.CaptureFixture, *args: str) -> subprocess.CompletedProcess:
    """``scrying ARGS`` in this process (no interpreter start-up: seconds saved per case), as a
    :class:`subprocess.CompletedProcess`; the subprocess tests below keep the entry point honest."""
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(["scrying", *args], code, captured.out, captured.err)


def assert_one_line_error(result: subprocess.CompletedProcess, needle: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scrying: error:"), result.stderr
    assert needle in lines[0]
    assert "Traceback" not in result.stderr


def test_models_lists_the_default(capsys):
    assert main(["models"]) == 0
    assert "gemma-3-270m" in capsys.readouterr().out


def test_predict_and_info_on_a_toy(toy_dir, capsys):
    from tests.test_predict import REPEAT, SEQ

    assert main(["predict", REPEAT, "--model", str(toy_dir), "--top-k", "3", "--max-new-tokens", "1"]) == 0
    out = capsys.readouterr().out
    assert f"'t{SEQ[6]}'" in out.splitlines()[1]
    assert main(["info", str(toy_dir)]) == 0
    out = capsys.readouterr().out
    assert "Council of Selves" in out and "blocks.{L}.attn.hook_z" in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["predict", ""], "prompt is empty"),
        (["predict", "hi", "--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["predict", "hi", "--model", "/no/such/model.gguf"], "does not exist"),
        (["info", "/etc/hostname"], "not a .gguf"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, needle, capsys):
    assert_one_line_error(call(capsys, *args), needle)


def test_the_entry_point_prints_one_line_and_no_traceback():
    """The installed entry point itself (a new interpreter), not only ``main`` in-process."""
    assert_one_line_error(run("predict", "hi", "--model", "no-such-model"), "unknown model 'no-such-model'")


def test_prompt_longer_than_context(toy_dir, capsys):
    assert_one_line_error(call(capsys, "predict", " ".join(["t1"] * 100), "--model", str(toy_dir)), "context holds 64")


def test_dallas_on_the_default_model(gemma):
    result = run("predict", "Dallas is a city in the state of", "--top-k", "3")
    assert result.returncode == 0, result.stderr
    assert "' Texas'" in result.stdout.splitlines()[1]
