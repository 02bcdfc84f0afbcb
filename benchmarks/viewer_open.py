"""How long a big graph page takes to open and to answer, in headless Chromium on this machine.

A random layered graph of 2,000 nodes and 20,000 edges (tests/test_viewer_browser.py's
``random_graph``: 18 layers, 12 positions, every node with a path to the logits) is written as one page; the page is opened three
times. Printed: file size; ``ready``: milliseconds from navigation start until the viewer has
pruned, laid out and drawn the graph and listens for input (``window.scryingReadyAt``);
``get``: wall time of the WebDriver page load; then a click on the busiest node and a
node-threshold move, each timed inside the page until the next frame is drawn.

    .venv/bin/python benchmarks/viewer_open.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scrying.viewer import PageConfig, write_page  # noqa: E402
from tests.test_viewer_browser import random_graph  # noqa: E402

FRAME = "return new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)))"


def main() -> None:
    graph = random_graph(n_features=2000 - 12 - 18 * 12 - 2, n_edges=20_000, n_layers=18, n_pos=12, seed=0, connected=True)
    data = graph.to_json()
    assert len(data["nodes"]) == 2000 and len(data["links"]) == 20_000
    folder = Path(tempfile.mkdtemp())
    page = write_page(data, folder / "big.html", PageConfig(node_threshold=1.0, edge_threshold=1.0))
    print(f"page: {len(data['nodes'])} nodes, {len(data['links'])} edges, {page.stat().st_size / 1e6:.1f} MB, one file")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(arg)
    browser = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    ready, wall = [], []
    try:
        for _ in range(3):
            browser.get("about:blank")
            start = time.perf_counter()
            browser.get(page.as_uri())
            wall.append(time.perf_counter() - start)
            assert browser.execute_script("return document.body.getAttribute('data-ready')") == "1"
            ready.append(browser.execute_script("return window.scryingReadyAt") / 1000)
        shown = browser.execute_script("return document.getElementById('counts').textContent")
        busiest = browser.execute_script(
            "var ids = scryingViewer.visibleNodeIds(); return ids[ids.length - 3];")
        click = browser.execute_script(
            "var t = performance.now(); document.querySelector(\"#nodes [data-id='\" + arguments[0] + \"']\")"
            ".dispatchEvent(new MouseEvent('click', {bubbles: true}));"
            "return new Promise(r => requestAnimationFrame(() => r(performance.now() - t)));", busiest)
        lit = browser.execute_script("return document.querySelectorAll('#highlight .hl-edge').length")
        slide = browser.execute_script(
            "var s = document.getElementById('node-threshold'), t = performance.now(); s.value = 0.5;"
            "s.dispatchEvent(new Event('input'));"
            "return new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(performance.now() - t))));")
        after = browser.execute_script("return document.getElementById('counts').textContent")
        errors = [m for m in browser.get_log("browser") if m["level"] == "SEVERE"]
    finally:
        browser.quit()
    print(f"shown at thresholds 1.0/1.0: {shown}")
    print(f"ready (navigation start -> interactive): median {statistics.median(ready):.2f} s, runs "
          + ", ".join(f"{r:.2f}" for r in ready))
    print("get (WebDriver page load, wall): median " + f"{statistics.median(wall):.2f} s")
    print(f"click on a node -> {lit} edges lit, next frame: {click:.0f} ms")
    print(f"node threshold 1.0 -> 0.5 -> {after}, drawn: {slide:.0f} ms")
    print(f"console errors: {len(errors)}")
    print("within 2 s: " + ("yes" if statistics.median(ready) < 2.0 else "NO"))


if __name__ == "__main__":
    main()
