"""The shared resumable journal (scrying.journal): header, resume, refusal, torn lines."""

from __future__ import annotations

import json

import pytest

from scrying.errors import InvalidInputError
from scrying.journal import Journal

SETTINGS = {"model": "toy", "seed": 0}


def _open(path, settings=SETTINGS):
    def check(record):
        int(record["value"])

    return Journal(path, settings, key=lambda r: r["id"], check=check, what="test run")


def test_records_survive_a_restart(tmp_path):
    path = tmp_path / "sub" / "run.jsonl"
    journal = _open(path)
    journal.append({"id": "a", "value": 1})
    journal.append({"id": "b", "value": 2})
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {"settings": SETTINGS} and len(lines) == 3
    again = _open(path)
    assert again.done == {"a": {"id": "a", "value": 1}, "b": {"id": "b", "value": 2}}


def test_other_settings_are_refused_naming_the_keys(tmp_path):
    path = tmp_path / "run.jsonl"
    _open(path).append({"id": "a", "value": 1})
    with pytest.raises(InvalidInputError, match=r"run.jsonl holds a test run with other settings \(seed differ\)"):
        _open(path, {"model": "toy", "seed": 1})


def test_torn_last_line_is_dropped_and_rewritten(tmp_path):
    path = tmp_path / "run.jsonl"
    journal = _open(path)
    journal.append({"id": "a", "value": 1})
    with path.open("a") as handle:
        handle.write('{"id": "b", "va')  # killed mid-write
    again = _open(path)
    assert list(again.done) == ["a"]
    assert len(path.read_text().splitlines()) == 2  # the torn line is gone from the file
    again.append({"id": "b", "value": 2})
    assert list(_open(path).done) == ["a", "b"]


def test_bad_line_in_the_middle_is_named(tmp_path):
    path = tmp_path / "run.jsonl"
    path.write_text(json.dumps({"settings": SETTINGS}) + "\n" + '{"id": "a", "value": "x"}\n' + '{"id": "b", "value": 2}\n')
    with pytest.raises(InvalidInputError, match="run.jsonl line 2: not a test run record"):
        _open(path)


def test_header_missing_or_empty_file(tmp_path):
    path = tmp_path / "run.jsonl"
    path.write_text('{"id": "a", "value": 1}\n')
    with pytest.raises(InvalidInputError, match="line 1 is not a test run header"):
        _open(path)
    path.write_text("")  # a run killed before it wrote its header starts afresh
    journal = _open(path)
    assert journal.done == {}
    journal.append({"id": "a", "value": 1})
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"settings": SETTINGS}, {"id": "a", "value": 1}]


def test_nothing_is_written_before_the_first_record(tmp_path):
    """A run refused or failed before its first result leaves no journal, so the corrected
    rerun (other settings) is not refused."""
    path = tmp_path / "sub" / "run.jsonl"
    _open(path)  # opened, then the run fails before any record
    assert not path.exists() and not path.parent.exists()
    corrected = _open(path, {"model": "toy", "seed": 1})
    corrected.append({"id": "a", "value": 1})
    assert json.loads(path.read_text().splitlines()[0]) == {"settings": {"model": "toy", "seed": 1}}


def test_resume_note_counts_what_is_done(tmp_path, caplog):
    path = tmp_path / "run.jsonl"
    journal = _open(path)
    assert journal.resume_note(5, "items") == 0 and "Resuming" not in caplog.text
    journal.append({"id": "a", "value": 1})
    journal.append({"id": "b", "value": 2})
    with caplog.at_level("WARNING", logger="scrying.journal"):
        assert _open(path).resume_note(5, "items") == 2
    assert f"Resuming: 2 of 5 items already done ({path})" in caplog.text


@pytest.mark.parametrize("content", [b"\xff\xfe\x00bad", b"[1, 2]\n", b'{"settings": [1]}\n', b"[" * 100000])
def test_foreign_bytes_are_refused_by_name(tmp_path, content):
    path = tmp_path / "run.jsonl"
    path.write_bytes(content)
    with pytest.raises(InvalidInputError, match="run.jsonl"):
        _open(path)
