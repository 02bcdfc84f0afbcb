"""The committed gallery (graphs/gallery, ``make gallery``) matches its prompt file and opens
offline: every graph's JSON reads back, every page is the one ``scrying view`` renders from that
JSON and loads only the viewer's script beside it, the index links every page, and every page has
its screenshot."""

import json
import re
from pathlib import Path

from scrying.attribution import Graph
from scrying.cli.trace import BATCH_FIELDS
from scrying.html_pages import escape
from scrying.journal import Journal
from scrying.prompt_sets import read_prompt_file
from scrying.viewer import PageConfig, read_graph_json, render_page
from scrying.viewer.page import asset

ROOT = Path(__file__).resolve().parents[1] / "graphs"


def test_gallery_has_every_prompt_and_reads_back():
    lines = read_prompt_file(ROOT / "gallery.jsonl", fields=BATCH_FIELDS)
    header, *records = [json.loads(line) for line in (ROOT / "gallery" / "index.jsonl").read_text().splitlines()]
    # the index is the batch journal: a settings header, then one record per prompt, which the
    # journal reader accepts with that same header
    journal = Journal(ROOT / "gallery" / "index.jsonl", header["settings"], key=lambda r: r["id"])
    assert [line.fields["id"] for line in lines] == [row["id"] for row in records] == list(journal.done)
    # the transcoder-feature graphs (traced with TRANSCODERS=DIR, their journal kept in build/)
    features = read_prompt_file(ROOT / "gallery-features.jsonl", fields=BATCH_FIELDS)
    for line in features:
        graph = Graph.read_json(ROOT / "gallery" / f"{line.fields['id']}.json")
        assert graph.metadata["basis"] == "transcoders" and graph.level == "transcoders"
    # the Qwen2.5-Coder-1.5B graphs (QWEN=1 RETRACE=1, their journal kept in build/)
    qwen = read_prompt_file(ROOT / "gallery-qwen.jsonl", fields=BATCH_FIELDS)
    for line in qwen:
        assert Graph.read_json(ROOT / "gallery" / f"{line.fields['id']}.json").model_name == "qwen2.5-coder-1.5b"
    for line in lines + features + qwen:
        name = line.fields["id"]
        graph = Graph.read_json(ROOT / "gallery" / f"{name}.json")
        assert graph.prompt == line.prompt
        assert graph.level == line.fields.get("level", "transcoders" if line in features else "neurons")
        assert bool(graph.metadata.get("split_qkv", False)) == line.fields.get("split_qkv", False)
        page = (ROOT / "gallery" / f"{name}.html").read_text()
        sources = re.findall(r"<script[^>]*src=['\"]([^'\"]+)['\"]", page)
        assert sources == ["scrying-viewer.js"], (name, sources)
        data = read_graph_json(ROOT / "gallery" / f"{name}.json")
        assert page == render_page(data, PageConfig(shared_assets=True)), f"{name}.html is stale: make gallery"
        assert (ROOT / "gallery" / f"{name}.png").stat().st_size > 10_000
    index = (ROOT / "gallery" / "index.html").read_text()
    assert re.findall(r"href='([^']+)'", index) == [f"{name}.html" for name in sorted(line.fields["id"] for line in lines + features + qwen)]
    for name in ("scrying-viewer.js", "scrying-viewer.css"):  # the shared copies are the package's
        assert (ROOT / "gallery" / name).read_text() == asset(name.removeprefix("scrying-"))


def test_index_shows_a_thumbnail_a_finding_and_the_check_against_the_real_model_per_graph():
    from scrying.viewer.report import summarise

    index = (ROOT / "gallery" / "index.html").read_text()
    assert "undefined" not in index
    names = sorted(p.stem for p in (ROOT / "gallery").glob("*.json"))
    assert re.findall(r"<img class='gallery-thumb' src='([^']+)'", index) == [f"{name}.png" for name in names]
    for name in names:
        data = read_graph_json(ROOT / "gallery" / f"{name}.json")
        summary = summarise(data)
        assert escape(summary.finding) in index, name
        if summary.graph_vs_real is not None:  # graph vs real beside the baseline, never graph vs frozen alone
            assert f"graph vs real model: {summary.graph_vs_real.text()}" in index
            assert f"activation × gradient: {summary.baseline.text()}" in index
    assert "graph vs frozen" not in index
