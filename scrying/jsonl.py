"""JSONL input files: every non-blank line parsed, every error naming the file and the line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scrying.errors import InvalidInputError


def read_jsonl(path: Path | str, *, what: str, bad: list[str] | None = None) -> list[tuple[Any, str]]:
    """``(object, "FILE line N")`` for every non-blank line of ``path``; ``what`` names the kind
    of file in errors ("prompt file", "outputs file"). An unreadable file, a file that is not
    UTF-8 and a line that is not JSON raise :class:`~scrying.errors.InvalidInputError`; with a
    ``bad`` list, a line that is not JSON is skipped and its error message appended there
    instead (batch jobs name the bad line and go on)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise InvalidInputError(f"cannot read {what} {str(path)!r}: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise InvalidInputError(f"{what} {str(path)!r} is not UTF-8 text ({err.reason})") from err
    out = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            where = f"{path.name} line {number}"
            try:
                out.append((parse_json(line, where), where))
            except InvalidInputError as err:
                if bad is None:
                    raise
                bad.append(str(err))
    return out


def read_json(path: Path | str, *, what: str | None = None, parse_constant: Callable[[str], Any] | None = None) -> Any:
    """The one JSON value in the file at ``path``; errors name the file, after ``what`` (the kind
    of file) when given. Unreadable, not UTF-8 (the first bad byte named) or not JSON: an
    :class:`~scrying.errors.InvalidInputError`. ``parse_constant`` as :func:`json.loads` takes
    it (raise ``ValueError`` there to refuse NaN and Infinity)."""
    path = Path(path)
    where = f"{what} {str(path)!r}" if what else repr(str(path))
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise InvalidInputError(f"cannot read {where}: {err.strerror or err}") from err
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidInputError(f"{where} is not UTF-8 text (byte {raw[err.start]:#04x} at offset {err.start})") from err
    return parse_json(text, where, parse_constant=parse_constant)


def parse_json(line: str, where: str, *, parse_constant: Callable[[str], Any] | None = None) -> Any:
    """One JSON value; anything ``json`` refuses (syntax, nesting too deep for the parser, an
    integer past Python's digit limit, a constant ``parse_constant`` refuses) is an
    :class:`~scrying.errors.InvalidInputError`."""
    try:
        return json.loads(line, parse_constant=parse_constant)
    except json.JSONDecodeError as err:
        raise InvalidInputError(f"{where}: not valid JSON ({err.msg})") from err
    except RecursionError as err:
        raise InvalidInputError(f"{where}: not valid JSON (nested too deeply)") from err
    except ValueError as err:  # an integer of more digits than int() converts, a refused constant
        raise InvalidInputError(f"{where}: not valid JSON ({err})") from err
