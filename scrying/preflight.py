"""Checks run before the work: input files that must be readable, output paths that must be
writable, each refused with an :class:`~scrying.errors.InvalidInputError` that names the option.

Every command calls these before it loads a model or writes a file, so a run that cannot finish
stops in a second rather than after the trace, and leaves nothing behind that would block the
corrected rerun. Nothing here creates a file or a folder.

>>> check_output_file("/etc/hostname/graph.html", option="--out")
Traceback (most recent call last):
...
scrying.errors.InvalidInputError: --out '/etc/hostname/graph.html': '/etc/hostname' is a file, not a folder
"""

from __future__ import annotations

import os
from pathlib import Path

from scrying.errors import InvalidInputError


def check_input_file(path: str | Path, *, option: str) -> Path:
    """``path`` if it is an existing, readable file."""
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"{option} {str(path)!r} does not exist")
    if not path.is_file():
        raise InvalidInputError(f"{option} {str(path)!r} is not a file")
    if not os.access(path, os.R_OK):
        raise InvalidInputError(f"{option} {str(path)!r} is not readable")
    return path


def check_input_dir(path: str | Path, *, option: str) -> Path:
    """``path`` if it is an existing folder."""
    path = Path(path)
    if not path.is_dir():
        raise InvalidInputError(f"{option} {str(path)!r} is not a folder" if path.exists() else f"{option} {str(path)!r} does not exist")
    return path


def check_output_file(path: str | Path, *, option: str) -> Path:
    """``path`` if a file can be written there: not a folder, and its nearest existing ancestor
    a writable folder (missing folders are created when the file is written)."""
    path = Path(path)
    if path.is_dir():
        raise InvalidInputError(f"{option} {str(path)!r} is a folder; expected a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise InvalidInputError(f"{option} {str(path)!r} exists and is not writable")
    _check_ancestor(path.parent, path, option)
    return path


def check_output_dir(path: str | Path, *, option: str) -> Path:
    """``path`` if it is a folder, or a folder can be made there."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InvalidInputError(f"{option} {str(path)!r} is a file; expected a folder")
    _check_ancestor(path, path, option)
    return path


def _check_ancestor(folder: Path, path: Path, option: str) -> None:
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise InvalidInputError(f"{option} {str(path)!r}: {str(probe)!r} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InvalidInputError(f"{option} {str(path)!r}: the folder {str(probe)!r} is not writable")


def check_distinct(paths: dict[str, Path | None]) -> None:
    """No two options name the same output file (one would overwrite the other)."""
    seen: dict[Path, str] = {}
    for option, path in paths.items():
        if path is None:
            continue
        key = Path(os.path.abspath(path))
        if key in seen:
            raise InvalidInputError(f"{option} and {seen[key]} name the same file {str(path)!r}")
        seen[key] = option
