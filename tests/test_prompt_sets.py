"""JSONL prompt files shared by the batch commands: every error names the file and the line."""

import pytest

from scrying.errors import InvalidInputError, PromptError
from scrying.prompt_sets import read_prompt_file


def _file(tmp_path, text: str | bytes):
    path = tmp_path / "prompts.jsonl"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_lines_keep_their_numbers_and_fields(tmp_path):
    lines = read_prompt_file(_file(tmp_path, '\n{"prompt": "a", "k": 1}\n   \n{"prompt": "b"}\n'))
    assert [(line.prompt, line.where) for line in lines] == [("a", "prompts.jsonl line 2"), ("b", "prompts.jsonl line 4")]
    assert lines[0].fields == {"prompt": "a", "k": 1}


@pytest.mark.parametrize(
    ("text", "error", "needle"),
    [
        ('{"prompt": "a"}\n[1, 2]\n', InvalidInputError, "prompts.jsonl line 2: expected a JSON object with 'prompt', got list"),
        ('{"prompt": "a"}\n{"text": "b"}\n', InvalidInputError, "prompts.jsonl line 2: missing 'prompt'"),
        ('{"prompt": "  "}\n', PromptError, "prompts.jsonl line 1: 'prompt' is empty"),
        ('{"prompt": 7}\n', PromptError, "prompts.jsonl line 1: 'prompt' must be text (a string), got int"),
        ('{"prompt": "a"\n', InvalidInputError, "prompts.jsonl line 1: not valid JSON"),
        ("\n  \n", InvalidInputError, "has no prompts"),
        (b'{"prompt": "\xff"}\n', InvalidInputError, "is not UTF-8 text"),
    ],
)
def test_bad_files(tmp_path, text, error, needle):
    with pytest.raises(error) as info:
        read_prompt_file(_file(tmp_path, text))
    assert needle in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(InvalidInputError, match="cannot read prompt file .*nope.jsonl"):
        read_prompt_file(tmp_path / "nope.jsonl")
