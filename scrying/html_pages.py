"""Conventions of every self-contained HTML page scrying writes: text is escaped before it reaches
the page, and data embedded in a ``<script>`` element cannot close it."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any


def escape(text: Any) -> str:
    """``text`` as HTML text (quotes escaped too, so it is safe in attributes)."""
    return html.escape(str(text), quote=True)


def json_for_script(data: Any) -> str:
    """JSON safe inside a <script> element (no '</script>' or '<!--' can close it)."""
    return json.dumps(data, default=str).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def write_report_page(path: str | Path, title: str, body: str, data: Any) -> Path:
    """A self-contained report page: ``title`` (escaped) as title and heading, ``body`` (HTML the
    caller escaped), and ``data`` embedded as JSON in ``<script id='scrying-summary'>``."""
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>body{{font-family:sans-serif;margin:1.5em}}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 8px}</style></head><body>"
        f"<h1>{escape(title)}</h1>{body}"
        f"<script type='application/json' id='scrying-summary'>{json_for_script(data)}</script>"
        "</body></html>"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
