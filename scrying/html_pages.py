"""Conventions of every self-contained HTML page scrying writes: text is escaped before it reaches
the page, and data embedded in a ``<script>`` element cannot close it."""

from __future__ import annotations

import html
import json
from typing import Any


def escape(text: Any) -> str:
    """``text`` as HTML text (quotes escaped too, so it is safe in attributes)."""
    return html.escape(str(text), quote=True)


def json_for_script(data: Any) -> str:
    """JSON safe inside a <script> element (no '</script>' or '<!--' can close it)."""
    return json.dumps(data, default=str).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
