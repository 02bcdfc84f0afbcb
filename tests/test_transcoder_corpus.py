"""The mixed corpus without a network: each source's cleaner on a small file in that source's own
format (a SWORD module written here with zlib blocks, RST, a man page rendered by the local groff,
the fact tables), the mix's proportions, held-out split and determinism on small sources, the
cache, and a failing fetch named in its error."""

from __future__ import annotations

import json
import random
import struct
import subprocess
import zipfile
import zlib

import pytest

from scrying.transcoders import corpus_sources
from scrying.transcoders.corpus_facts import countryinfo_tables, facts_documents
from scrying.transcoders.corpus_mix import (
    CorpusMixConfig,
    build_mixed_corpus,
    mix_documents,
    split_documents,
)
from scrying.transcoders.corpus_sources import (
    CorpusSourceError,
    fetch_source,
    manpage_paragraphs,
    render_manpage,
    rst_paragraphs,
    sword_documents,
)


def _write_module(directory, testament: str, blocks: list[str], kind: str = "b") -> None:
    index, data = b"", b""
    for block in blocks:
        packed = zlib.compress(block.encode())
        index += struct.pack("<III", len(data), len(packed), len(block.encode()))
        data += packed
    index += struct.pack("<III", len(data), 0, 0)  # an empty slot, as modules have
    (directory / f"{testament}.{kind}zs").write_bytes(index)
    (directory / f"{testament}.{kind}zz").write_bytes(data)


def test_sword_module_gives_one_document_per_chapter(tmp_path):
    ot = ('<chapter n="1" osisID="Gen.1" sID="Gen.1"/><title type="x-s">The Creation</title>'
          '<div sID="g1" type="x-p"/>In the beginning <w lemma="x">God</w> , created.<note type="x">a note</note>'
          '<div eID="g1" type="x-p"/> And it was <hi type="italic">good</hi> .'
          '<chapter n="2" osisID="Gen.2" sID="Gen.2"/><l>A line</l><l>Another line</l>')
    nt = '<table><row><cell>Christ\'s birth.</cell><cell>(26-38)</cell></row></table>'
    _write_module(tmp_path, "ot", [ot], kind="c")
    _write_module(tmp_path, "nt", [nt], kind="c")
    assert sword_documents(tmp_path) == [
        ["The Creation", "In the beginning God, created.", "And it was good."],
        ["A line", "Another line"],
        ["Christ's birth. (26-38)"],
    ]


def test_rst_keeps_prose_and_drops_markup():
    source = """\
.. SPDX-License-Identifier: GPL-2.0

==========
Page title
==========

The :c:func:`kmalloc` call and ``GFP_KERNEL`` flags, see `the docs <https://x.org>`_
and **bold** or *emphasis* words.

.. code-block:: c

   int x = 1;

An example follows::

    $ make

+-----+-----+
| a   | b   |
+-----+-----+

Last `ref`_ paragraph.
"""
    assert rst_paragraphs(source) == [
        "Page title",
        "The kmalloc call and GFP_KERNEL flags, see the docs and bold or emphasis words.",
        "An example follows:",
        "Last ref paragraph.",
    ]


def test_manpage_rendered_by_groff_gives_its_paragraphs():
    page = b""".TH DEMO 7 2024-01-01 "Linux" "Manual"
.SH NAME
demo \\- a demonstration
.SH DESCRIPTION
The first paragraph
spans two source lines.
.PP
A second one.
"""
    rendered = render_manpage(page)
    assert manpage_paragraphs(rendered) == [
        "NAME", "demo - a demonstration", "DESCRIPTION", "The first paragraph spans two source lines.", "A second one.",
    ]


def test_manpage_cleaner_drops_header_footer_and_tables():
    rendered = "LS(1)     User Commands    LS(1)\n\nNAME\n  ls - list\n\n  a │ b\n  ──┼──\n  text\n\nGNU  2024  LS(1)\n"
    assert manpage_paragraphs(rendered) == ["NAME", "ls - list", "text"]


TABLES = {
    "countries": {"FR": {"name": "France", "iso3": "FRA", "capital": "Paris", "continentcode": "EU", "population": 67_000_000,
                         "currencyname": "Euro"},
                  "ES": {"name": "Spain", "iso3": "ESP", "capital": "Madrid", "continentcode": "EU", "population": 0}},
    "cities": {1: {"name": "Dallas", "countrycode": "US", "admin1code": "TX", "population": 1_300_000},
               2: {"name": "Houston", "countrycode": "US", "admin1code": "TX", "population": 2_300_000},
               3: {"name": "Lyon", "countrycode": "FR", "admin1code": "84", "population": 500_000}},
    "states": [{"name": "Texas", "abbr": "TX", "capital": "Austin", "statehood_year": 1845}],
    "info": {"FR": {"subregion": "Western Europe", "demonym": "French", "borders": ["ESP", "XXX"]}},
}


def test_facts_are_plain_sentences_about_places():
    docs = facts_documents(None, tables=TABLES)
    text = "\n".join(" ".join(d) for d in docs)
    assert len(docs) == 3  # Spain, France (by ISO code), then Texas
    assert any(s in text for s in ("The capital of France is Paris.", "Paris is the capital of France.", "The capital city of France is Paris."))
    assert any(s in text for s in ("The capital of Texas is Austin.", "Austin is the capital of Texas.", "The state capital of Texas is Austin."))
    assert "Dallas" in text and "Texas" in docs[2][1] and "The largest city in Texas is Houston." in text
    assert "France borders Spain." in text and "Western Europe" in text and "French" in text
    assert "Lyon" in docs[1][1] and "population" not in " ".join(docs[0])  # Spain: no population given
    assert facts_documents(None, tables=TABLES) == docs  # deterministic


def test_countryinfo_is_read_from_its_wheel(tmp_path):
    wheel = tmp_path / "countryinfo-1.0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("countryinfo/data/france.json", json.dumps({"name": "France", "ISO": {"alpha2": "FR"}, "geoJSON": {"big": 1}, "demonym": "French"}))
        zf.writestr("countryinfo/__init__.py", "")
    assert countryinfo_tables(wheel) == {"FR": {"name": "France", "ISO": {"alpha2": "FR"}, "demonym": "French"}}


def _sources() -> dict[str, list[list[str]]]:
    rng = random.Random(3)
    return {name: [[f"{name} doc {i} para {j} " + "x" * rng.randrange(20, 80) for j in range(rng.randrange(1, 4))] for i in range(n)]
            for name, n in (("a", 200), ("b", 60), ("c", 400))}


def _chars(docs):
    return sum(len(p) + 1 for d in docs for p in d)


def test_mix_holds_the_proportions_and_a_disjoint_held_out_split():
    sources = _sources()
    config = CorpusMixConfig(proportions={"a": 0.5, "b": 0.2, "c": 0.3}, heldout_fraction=0.05, seed=1)
    train, held, manifest = mix_documents(sources, config)
    held_keys = {d[0] for d in held}
    assert held_keys and not held_keys & {d[0] for d in train}
    by_source = {n: sum(len(p) + 1 for d in train if d[0].startswith(n) for p in d) for n in sources}
    assert by_source == manifest["train_chars"]
    total = sum(by_source.values())
    longest = max(_chars([d]) for docs in sources.values() for d in docs)
    for name, share in config.proportions.items():
        assert abs(by_source[name] - share * total) <= longest + 1e-9 * total, name
    assert manifest["available_chars"]["b"] == by_source["b"]  # the scarcest source is used fully
    for name, docs in sources.items():  # held out: about 5% of each source, whole documents
        held_n = _chars([d for d in held if d[0].startswith(name)])
        assert 0.05 * _chars(docs) <= held_n <= 0.05 * _chars(docs) + longest
    again = mix_documents(sources, config)
    assert again[0] == train and again[1] == held
    other = mix_documents(sources, CorpusMixConfig(proportions=config.proportions, heldout_fraction=0.05, seed=2))
    assert other[0] != train


def test_split_always_holds_out_a_document():
    train, held = split_documents([["one"], ["two"]], 0.01, random.Random(0))
    assert len(held) == 1 and len(train) == 1


def test_build_writes_cached_files_once(tmp_path):
    sources = _sources()
    calls = []

    def fetch(name):
        calls.append(name)
        return sources[name]

    config = CorpusMixConfig(proportions={"a": 0.5, "b": 0.2, "c": 0.3}, seed=0)
    built = build_mixed_corpus(tmp_path, config, fetch=fetch)
    train, held, manifest = mix_documents(sources, config)
    assert built.train.read_text() == "".join(p + "\n" for d in train for p in d)
    assert built.heldout.read_text() == "".join(p + "\n" for d in held for p in d)
    assert json.loads(built.manifest.read_text())["train_chars"] == manifest["train_chars"]
    assert build_mixed_corpus(tmp_path, config, fetch=fetch) == built and calls == ["a", "b", "c"]
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_failed_fetch_names_its_source(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise subprocess.CalledProcessError(100, args[0], stderr=b"E: Unable to locate package")

    monkeypatch.setattr(corpus_sources.subprocess, "run", refuse)
    with pytest.raises(CorpusSourceError, match="'linux-doc'.*linux-doc-6.1.*Unable to locate"):
        fetch_source("linux-doc")
    with pytest.raises(CorpusSourceError, match="'facts'.*countryinfo==1.0.1"):
        fetch_source("facts")
    with pytest.raises(CorpusSourceError, match="'manpages'.*groff"):
        render_manpage(b".TH X 1\n")
    monkeypatch.setitem(corpus_sources.FETCHERS, "bible", lambda tmp: [])
    with pytest.raises(CorpusSourceError, match="'bible' gave no document"):
        fetch_source("bible")
    monkeypatch.setitem(corpus_sources.FETCHERS, "bible", lambda tmp: (_ for _ in ()).throw(zlib.error("bad block")))
    with pytest.raises(CorpusSourceError, match="'bible': could not read.*bad block"):
        fetch_source("bible")


def test_mix_config_is_checked():
    with pytest.raises(ValueError, match="sum to 1"):
        CorpusMixConfig(proportions={"a": 0.5})
    with pytest.raises(ValueError, match="heldout_fraction"):
        CorpusMixConfig(heldout_fraction=0.0)
    with pytest.raises(ValueError, match=r"sources \['z'\]"):
        mix_documents({"a": [["x"]]}, CorpusMixConfig(proportions={"a": 0.5, "z": 0.5}))
