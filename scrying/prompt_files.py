"""JSONL prompt files, the input of every batch command (``scrying trace --prompts``,
``scrying ablate --prompts``).

One JSON object per line with a non-empty string ``prompt``; other keys belong to the command
that reads the file. Blank lines are skipped. Every line is checked before any model is loaded,
and every error names the file and the line (``prompts.jsonl line 3: ...``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scrying.errors import InvalidInputError
from scrying.prompts import check_text


@dataclass(frozen=True)
class PromptLine:
    """One object of a prompt file and where it came from (for error messages)."""

    fields: dict[str, Any]
    where: str

    @property
    def prompt(self) -> str:
        return self.fields["prompt"]


def read_prompt_lines(path: Path | str) -> list[PromptLine]:
    """The objects of a JSONL prompt file, each with a checked ``prompt``; at least one."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise InvalidInputError(f"cannot read prompt file {str(path)!r}: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise InvalidInputError(f"prompt file {str(path)!r} is not UTF-8 text ({err.reason})") from err
    out = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            out.append(parse_prompt_line(line, f"{path.name} line {number}"))
    if not out:
        raise InvalidInputError(f"prompt file {str(path)!r} has no prompts (expected JSONL lines with 'prompt')")
    return out


def parse_prompt_line(line: str, where: str) -> PromptLine:
    """One line: a JSON object with a non-empty string ``prompt``."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise InvalidInputError(f"{where}: not valid JSON ({err.msg})") from err
    if not isinstance(obj, dict):
        raise InvalidInputError(f"{where}: expected a JSON object with 'prompt', got {type(obj).__name__}")
    if "prompt" not in obj:
        raise InvalidInputError(f"{where}: missing 'prompt'")
    check_text(obj["prompt"], what=f"{where}: 'prompt'")
    return PromptLine(obj, where)
