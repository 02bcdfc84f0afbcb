"""The batch commands' input files are read safely: whatever the bytes, a reader returns or raises
a ScryingError (the CLI's one-line exit 2), never a traceback. Hypothesis fuzzes each reader with
random bytes and with valid lines whose fields are replaced, deleted or added: prompt files
(trace, ablate), task files (emergence), pair files (reversal), outputs files and family files
(emergence), and journals (every resumable batch)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scrying.emergence.outputs import read_outputs
from scrying.emergence.study import read_family
from scrying.emergence.tasks import read_task_file
from scrying.errors import ScryingError
from scrying.journal import Journal
from scrying.prompt_sets import read_prompt_file
from scrying.reversal.pairs import read_pairs

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))

#: Valid lines of each file kind; the fuzz starts from these.
VALID: dict[str, list[Any]] = {
    "prompts": [{"prompt": "When Mary and John went", "correct": " Mary", "incorrect": " John", "id": "a"}],
    "tasks": [{"prompt": "12+34=", "target": "46", "item": 1}, {"prompt": "Pick", "target": "b", "choices": ["a", "b"]}],
    "pairs": [{"a": "Paris", "b": "France", "relation": "capital", "forward": "{a} is the capital of",
               "reverse": "The capital of {b} is", "note": 1}],
    "outputs": [{"model": "m1", "scale": 1.0, "item": "i", "target": "46", "output": "45", "target_logprobs": [-0.1, -2.0],
                 "choices": {"46": -0.1, "45": -2.0}, "target_tokens": [1, 2], "output_tokens": [1, 3]},
                {"model": "m2", "scale": 2, "item": "i", "target": "46", "output": "46", "target_logprobs": [-0.01]}],
}
FAMILY = [{"model": "m1", "scale": 1, "label": "small"}, {"model": "m2", "scale": 2.5}]


def _journal(path: Path) -> Journal:
    def check(record: dict) -> None:
        float(record["value"])

    return Journal(path, {"model": "toy", "seed": 0}, key=lambda r: str(r["id"]), check=check, what="test run")


READERS: dict[str, Callable[[Path], Any]] = {
    "prompts": lambda p: read_prompt_file(p, need_answers=True, fields={"id": (str, int)}),
    "tasks": read_task_file,
    "pairs": read_pairs,
    "outputs": read_outputs,
    "family": read_family,
    "journal": _journal,
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _read(kind: str, content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{kind}.jsonl"
        path.write_bytes(content)
        try:
            READERS[kind](path)
        except ScryingError:
            pass


def _lines(kind: str) -> list[Any]:
    if kind == "journal":
        return [{"settings": {"model": "toy", "seed": 0}}, {"id": "a", "value": 1}, {"id": "b", "value": 2.5}]
    return [json.loads(json.dumps(line)) for line in VALID[kind]]


def _encode(kind: str, lines: list[Any]) -> bytes:
    if kind == "family":
        return json.dumps(lines).encode()
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


KINDS = [*VALID, "journal", "family"]


@pytest.mark.parametrize("kind", KINDS)
def test_valid_files_read(kind, tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_bytes(_encode(kind, FAMILY if kind == "family" else _lines(kind)))
    READERS[kind](path)


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(content=st.binary(max_size=200))
def test_random_bytes(kind, content):
    _read(kind, content)


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(data=st.data())
def test_mutated_fields(kind, data):
    lines = [dict(x) for x in (FAMILY if kind == "family" else _lines(kind))]
    line = lines[data.draw(st.integers(0, len(lines) - 1))]
    for _ in range(data.draw(st.integers(1, 3))):
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        keys = sorted(line)
        if action == "add" or not keys:
            line[data.draw(st.text(max_size=6))] = data.draw(json_values)
        elif action == "delete":
            del line[data.draw(st.sampled_from(keys))]
        else:
            line[data.draw(st.sampled_from(keys))] = data.draw(json_values)
    content = _encode(kind, lines).replace(b"NaN", data.draw(st.sampled_from([b"NaN", b"1" * 5000, b"[" * 5000])))
    _read(kind, content)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("content", [b"\xff\xfe", b"[" * 100_000, b"1" * 5000, b'{"a": 1e999}\n', b"null\n"])
def test_hostile_bytes_are_one_error(kind, content, tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_bytes(content)
    with pytest.raises(ScryingError):
        READERS[kind](path)
