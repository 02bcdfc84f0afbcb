"""A resumable JSONL journal: batch jobs write each finished item at once and resume after a kill.

Format: line 1 is ``{"settings": {...}}``, everything that must match for two runs' results to
belong together (the model's identity, a digest of the input file, the operation's settings);
every later line is one finished item's record, appended and flushed as soon as it is done.

Phases of opening a journal (:class:`Journal`):

1. **New** (no file, or an empty one left by a run killed before its header): nothing is written
   yet. The header is written with the first record (:meth:`Journal.append`), so a run refused or
   failed before its first result leaves no file that would block the corrected rerun.
2. **Existing**: read the header; other settings are refused with an error naming the keys that
   differ (results are never mixed); read the records, each checked by the caller's ``check``
   and keyed by its ``key``. A torn last line (the process was killed while writing it) is
   dropped and its item redone; a bad line elsewhere is an error naming the file and line.

Used by ``scrying ablate --out`` (one record per head), ``scrying trace --prompts`` (one per
prompt) and the study runners.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from scrying.axes import Model
from scrying.errors import InvalidInputError

logger = logging.getLogger(__name__)

Record = dict[str, Any]


def model_fingerprint(model: Model) -> str:
    """A digest of the model's parameter shapes and a strided sample of every parameter's values,
    so that a model retrained or replaced at the same path is told apart (0.1 s for Gemma 3 270M)."""
    digest = hashlib.sha256()
    for name, param in model.named_parameters():
        flat = param.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 256)][:256].double().cpu()
        digest.update(f"{name}{tuple(param.shape)}".encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def model_identity(spec: str, model: Model | None) -> dict[str, Any]:
    """The model part of a journal's settings: the spec it was loaded from and a weights
    fingerprint (None when no model is given)."""
    return {"model": spec, "model_fingerprint": model_fingerprint(model) if model is not None else None}


def file_digest(path: Path | str) -> str:
    """SHA-256 of a file's bytes (the input file part of a journal's settings)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class Journal:
    """Append-only records at ``path`` for one set of ``settings`` (see the module docstring).

    ``key(record)``: the item a record finishes (a later record of the same item replaces it);
    ``check(record)``: raise ``ValueError``/``KeyError``/``TypeError`` for a malformed record.
    ``done`` maps each finished item to its record.
    """

    def __init__(
        self,
        path: Path | str,
        settings: dict[str, Any],
        *,
        key: Callable[[Record], Hashable],
        check: Callable[[Record], None] | None = None,
        what: str = "journal",
    ):
        self.path = Path(path)
        self.settings = settings
        self._key = key
        self._check = check
        self._what = what
        self.done: dict[Hashable, Record] = {}
        self._started = False  # header on disk
        text = self._text()
        if text.strip():
            self._read(text)
            self._started = True

    def _text(self) -> str:
        return _text(self.path, self._what)

    def resume_note(self, total: int, unit: str) -> int:
        """Log ``Resuming: N of M UNIT already done (PATH)`` when the journal holds finished
        items, as every resumed batch says; returns N."""
        if self.done:
            logger.warning("Resuming: %d of %d %s already done (%s)", len(self.done), total, unit, self.path)
        return len(self.done)

    def _read(self, text: str) -> None:
        lines = text.splitlines()
        header = _header(self.path, lines, self._what)
        if header != self.settings:
            _refuse(self.path, self._what, header, self.settings, set(header) | set(self.settings))
        kept = [lines[0]]
        for number, line in enumerate(lines[1:], start=2):
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise TypeError(f"expected a JSON object, got {type(record).__name__}")
                if self._check is not None:
                    self._check(record)
                item = self._key(record)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, RecursionError) as err:
                if number == len(lines):  # torn by an interrupted write: redo that item
                    logger.warning("%s: dropping an incomplete last line", self.path)
                    break
                raise InvalidInputError(f"{self.path} line {number}: not a {self._what} record ({err})") from err
            self.done[item] = record
            kept.append(line)
        if len(kept) != len(lines):
            self._write_lines([json.loads(line) for line in kept], mode="w")

    def _write_lines(self, rows: list[Record], *, mode: str) -> None:
        with self.path.open(mode, encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, allow_nan=True) + "\n")
            handle.flush()

    def append(self, record: Record) -> None:
        """Write one finished item's record (flushed before returning); the first one brings
        the settings header with it."""
        if not self._started:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write_lines([{"settings": self.settings}, record], mode="w")
            self._started = True
            self.done[self._key(record)] = record
            return
        self._write_lines([record], mode="a")
        self.done[self._key(record)] = record


def _text(path: Path, what: str) -> str:
    if not path.exists():
        return ""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InvalidInputError(f"{path} is not a {what} journal (not UTF-8 text: {err.reason})") from err
    except OSError as err:
        raise InvalidInputError(f"cannot read {path}: {err.strerror or err}") from err


def _header(path: Path, lines: list[str], what: str) -> dict[str, Any]:
    try:
        header = json.loads(lines[0])["settings"]
        if not isinstance(header, dict):
            raise TypeError("settings is not an object")
    except (ValueError, KeyError, TypeError, IndexError, RecursionError) as err:  # ValueError: JSON syntax, huge ints
        raise InvalidInputError(f"{path}: line 1 is not a {what} header (expected {{\"settings\": ...}})") from err
    return header


def _refuse(path: Path, what: str, header: dict[str, Any], settings: dict[str, Any], keys: set[str]) -> None:
    changed = sorted(k for k in keys if header.get(k) != settings.get(k))
    raise InvalidInputError(
        f"{path} holds a {what} with other settings ({', '.join(changed)} differ); delete it or write elsewhere"
    )


def check_settings_before_load(path: Path | str, settings: dict[str, Any], *, what: str = "journal") -> None:
    """Refuse, before any model loads, a journal at ``path`` whose settings differ from
    ``settings`` in anything but the weights fingerprint (which needs the model, and is checked
    when the :class:`Journal` is opened): where workers elsewhere load the model
    (:mod:`scrying.batch`), a rerun with other settings is refused before they start."""
    path = Path(path)
    text = _text(path, what)
    if text.strip():
        header = _header(path, text.splitlines(), what)
        keys = (set(header) | set(settings)) - {"model_fingerprint"}
        if any(header.get(k) != settings.get(k) for k in keys):
            _refuse(path, what, header, settings, keys)
