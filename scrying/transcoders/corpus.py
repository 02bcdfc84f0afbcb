"""Text to train transcoders on: files the user names, or a reproducible offline default.

The default corpus is the World English Bible (public domain) from Debian's ``sword-text-web``
package (FACTS.md: ~4.8M Gemma tokens with two commentaries; this module takes the Bible text
only: 29 MB of OSIS markup give 5.05 MB of prose in 10,676 paragraphs, measured). Built by one command,
``scrying transcoders corpus``, and cached as plain UTF-8 text:

1. ``apt-get download sword-text-web`` and ``dpkg-deb -x`` (no installation, no root needed);
2. read the SWORD zText module: ``*.bzs`` is the block index (little-endian u32 offset, size,
   uncompressed size per block), ``*.bzz`` the zlib-compressed blocks;
3. drop ``<note>`` elements, strip the OSIS markup, collapse whitespace, one paragraph a line.
"""

from __future__ import annotations

import logging
import re
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from scrying.errors import InvalidInputError, ScryingError

logger = logging.getLogger(__name__)

PACKAGE = "sword-text-web"
MODULE = "usr/share/sword/modules/texts/ztext/engWEB2015eb"
_NOTE = re.compile(r"<note\b.*?</note>", re.S)
_PARAGRAPH = re.compile(r"<div eID=[^>]*type=\"x-p\"[^>]*/>|<lb[^>]*/>|<title[^>]*>")
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"[ \t\r\f\v]+")


def read_texts(paths: list[Path]) -> Iterator[str]:
    """Each file's non-empty lines (UTF-8), in the order given."""
    for path in paths:
        if not path.is_file():
            raise InvalidInputError(f"corpus file {path} does not exist")
        with path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.strip():
                    yield line.rstrip("\n")


def sword_text(module_dir: Path) -> str:
    """The prose of a SWORD zText module (both testaments), one paragraph a line."""
    blocks = []
    for testament in ("ot", "nt"):
        index = (module_dir / f"{testament}.bzs").read_bytes()
        data = (module_dir / f"{testament}.bzz").read_bytes()
        for start in range(0, len(index), 12):
            offset, size, _ = struct.unpack("<III", index[start : start + 12])
            if size:
                blocks.append(zlib.decompress(data[offset : offset + size]).decode("utf-8", "replace"))
    text = _NOTE.sub(" ", "".join(blocks))
    text = _TAG.sub(" ", _PARAGRAPH.sub("\n", text))
    lines = (_SPACE.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if len(line) > 1) + "\n"


def build_default_corpus(cache_dir: Path) -> Path:
    """Download (apt), extract and clean the default corpus; cached in ``cache_dir``."""
    out = cache_dir / "corpus" / "web-bible.txt"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(["apt-get", "download", PACKAGE], cwd=tmp, check=True, capture_output=True)
            deb = next(Path(tmp).glob(f"{PACKAGE}_*.deb"))
            subprocess.run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "x")], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError, StopIteration) as err:
            raise ScryingError(f"could not fetch {PACKAGE} with apt-get download / dpkg-deb: {err}") from err
        text = sword_text(Path(tmp) / "x" / MODULE)
    out.with_suffix(".tmp").write_text(text, encoding="utf-8")
    out.with_suffix(".tmp").replace(out)
    logger.info("default corpus: %d characters in %s", len(text), out)
    return out
