"""The viewer inside a notebook: the whole page in an ``<iframe srcdoc>`` (its script runs in the
frame, no server, no network), and a PNG of it as it opens, for notebooks read without a kernel.

``show(graph_json)`` displays both (the PNG only where headless Chromium and selenium are installed:
``make browser`` and the ``notebooks`` extra; ``SCRYING_STATIC_IMAGES=0`` leaves it out).
:meth:`scrying.attribution.Graph._repr_html_` is :func:`inline_html`, so a graph left as the last
expression of a cell renders as the interactive viewer.
"""

from __future__ import annotations

import html
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from scrying.viewer.page import PageConfig, render_page

logger = logging.getLogger(__name__)

#: The browser window a PNG is taken in (the README's screenshots use the same).
WINDOW = (1600, 1000)


def inline_html(data: dict[str, Any], config: PageConfig | None = None, *, height: int = 900) -> str:
    """The page of graph JSON ``data`` as an iframe whose ``srcdoc`` is the whole page."""
    page = render_page(data, config or PageConfig())
    return (f"<iframe srcdoc=\"{html.escape(page, quote=True)}\" style=\"width:100%;height:{height}px;border:1px solid #ddd\"></iframe>")


def static_images_wanted() -> bool:
    """PNGs are taken unless ``SCRYING_STATIC_IMAGES=0`` and where a browser is found."""
    if os.environ.get("SCRYING_STATIC_IMAGES", "1") == "0":
        return False
    return shutil.which("chromium") is not None and shutil.which("chromedriver") is not None


def notebook_setup() -> str:
    """Make this notebook's plotly figures carry a PNG beside their interactive JSON (kaleido, with
    the same headless Chromium), so stored outputs read without a kernel; plain interactive
    figures where that is not installed or ``SCRYING_STATIC_IMAGES=0``. Returns the renderer."""
    import plotly.io as pio

    static = static_images_wanted() and importlib.util.find_spec("kaleido") is not None
    pio.renderers.default = "plotly_mimetype+png" if static else "plotly_mimetype"
    if static:
        pio.renderers["png"].width, pio.renderers["png"].height = 1000, 650
    return pio.renderers.default


def screenshot_png(data: dict[str, Any], config: PageConfig | None = None) -> bytes | None:
    """The page as it opens, in headless Chromium at :data:`WINDOW`; ``None`` where selenium or
    the browser is missing (logged)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        logger.info("no PNG of the graph: selenium is not installed (pip install -e '.[notebooks]')")
        return None
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        logger.info("no PNG of the graph: chromium and chromedriver not found (make browser)")
        return None
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars"):
        options.add_argument(arg)
    with tempfile.TemporaryDirectory() as folder:
        page = Path(folder) / "graph.html"
        page.write_text(render_page(data, config or PageConfig()), encoding="utf-8")
        browser = webdriver.Chrome(options=options, service=Service(driver))
        try:
            browser.get(page.as_uri())
            return browser.get_screenshot_as_png()
        finally:
            browser.quit()


def show(data: dict[str, Any], config: PageConfig | None = None, *, static: bool | None = None) -> None:
    """Display the graph in a notebook: a PNG of the page (``static``; default
    :func:`static_images_wanted`), then the interactive page."""
    from IPython.display import HTML, Image, display

    if static if static is not None else static_images_wanted():
        png = screenshot_png(data, config)
        if png is not None:
            display(Image(data=png, width=900))
    display(HTML(inline_html(data, config)))
