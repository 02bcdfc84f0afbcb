"""The committed gallery (graphs/gallery, ``make gallery``) matches its prompt file and opens
offline: every graph's JSON reads back, and every page loads only the shared plotly.min.js."""

import json
import re
from pathlib import Path

from scrying.attribution import Graph
from scrying.prompt_files import read_prompt_lines

ROOT = Path(__file__).resolve().parents[1] / "graphs"


def test_gallery_has_every_prompt_and_reads_back():
    lines = read_prompt_lines(ROOT / "gallery.jsonl")
    index = [json.loads(line) for line in (ROOT / "gallery" / "index.jsonl").read_text().splitlines()]
    assert [line.fields["id"] for line in lines] == [row["id"] for row in index]
    for line in lines:
        name = line.fields["id"]
        graph = Graph.read_json(ROOT / "gallery" / f"{name}.json")
        assert graph.prompt == line.prompt
        assert graph.level == line.fields.get("level", "neurons")
        assert bool(graph.metadata.get("split_qkv", False)) == line.fields.get("split_qkv", False)
        page = (ROOT / "gallery" / f"{name}.html").read_text()
        sources = re.findall(r'<script[^>]*src="([^"]+)"', page)
        assert sources == ["plotly.min.js"], (name, sources)
