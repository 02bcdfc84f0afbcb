"""Text to train transcoders on: files the user names, or a reproducible offline default.

The mixed general-English corpus (prose, reference text, geography) is
:mod:`scrying.transcoders.corpus_mix`; the Bible-only corpus below stays the default of
``scrying transcoders corpus`` without ``--mix``.

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

import codecs
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

from scrying.errors import InvalidInputError
from scrying.transcoders.corpus_sources import apt_extract, osis_paragraphs, sword_blocks

logger = logging.getLogger(__name__)

PACKAGE = "sword-text-web"
MODULE = "usr/share/sword/modules/texts/ztext/engWEB2015eb"


def read_texts(paths: list[Path]) -> Iterator[str]:
    """Each file's non-empty lines (strict UTF-8), in the order given; a file that is missing,
    unreadable or not UTF-8 is an ``InvalidInputError`` naming it (when the lines reach it:
    call :func:`check_text_files` first to refuse it before any work)."""
    for path in paths:
        _require_file(path)
        try:
            with path.open(encoding="utf-8") as handle:
                for line in handle:
                    if line.strip():
                        yield line.rstrip("\n")
        except UnicodeDecodeError as err:
            _scan(path)  # raises the error that names the first bad byte
            raise InvalidInputError(f"corpus file {path} is not UTF-8 text ({err.reason}); expected UTF-8") from err
        except OSError as err:
            raise InvalidInputError(f"corpus file {path} cannot be read ({err})") from err


def check_text_files(paths: list[Path]) -> None:
    """Refuse, before a model loads, training text that :func:`read_texts` would refuse (a path
    that is not a readable file, or not UTF-8: the message names the byte and line), or files
    that together hold no non-blank line. Reads each file once, in chunks; an empty list (the
    default corpus) is nothing to check."""
    has_text = False
    for path in paths:
        has_text = _scan(path) or has_text
    if paths and not has_text:
        raise InvalidInputError(f"the corpus files {[str(p) for p in paths]} hold no non-blank line; expected text to train on")


def _require_file(path: Path) -> None:
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise InvalidInputError(f"corpus file {path} {what}")


def _scan(path: Path) -> bool:
    """Whether ``path`` holds a non-blank character; refuses it unless it is readable UTF-8."""
    _require_file(path)
    decoder = codecs.getincrementaldecoder("utf-8")()  # strict
    has_text, seen, newlines = False, 0, 0
    try:
        with path.open("rb") as handle:
            while True:
                chunk = handle.read(1 << 20)
                try:
                    text = decoder.decode(chunk, final=not chunk)
                except UnicodeDecodeError as err:
                    at = seen + len(chunk) - len(err.object) + err.start  # err.object: held-back bytes + chunk
                    line = 1 + newlines + chunk.count(b"\n", 0, max(0, at - seen))
                    raise InvalidInputError(
                        f"corpus file {path} is not UTF-8 text: byte offset {at} (line {line}): {err.reason}; expected UTF-8"
                    ) from err
                has_text = has_text or bool(text.strip())
                if not chunk:
                    return has_text
                seen, newlines = seen + len(chunk), newlines + chunk.count(b"\n")
    except OSError as err:
        raise InvalidInputError(f"corpus file {path} cannot be read ({err})") from err


def sword_text(module_dir: Path) -> str:
    """The prose of a SWORD zText module (both testaments), one paragraph a line."""
    return "".join(p + "\n" for block in sword_blocks(module_dir) for p in osis_paragraphs(block))


def build_default_corpus(cache_dir: Path) -> Path:
    """Download (apt), extract and clean the default corpus; cached in ``cache_dir``."""
    out = cache_dir / "corpus" / "web-bible.txt"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        text = sword_text(apt_extract("bible", [PACKAGE], Path(tmp)) / MODULE)
    out.with_suffix(".tmp").write_text(text, encoding="utf-8")
    out.with_suffix(".tmp").replace(out)
    logger.info("default corpus: %d characters in %s", len(text), out)
    return out
