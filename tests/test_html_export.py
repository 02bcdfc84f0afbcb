"""The exported HTML opens in headless Chromium, offline, with no console errors, and text from
the prompt or the tokenizer can never become markup or script."""

import re
import shutil
import subprocess
from html.parser import HTMLParser

import torch

from scrying.attribution import Graph, Node
from scrying.attribution.export import figure, write_html

PAYLOADS = [
    "<script>alert(1)</script>",
    "</script><script>document.title='pwned'</script>",
    "<img src=x onerror=\"document.title='pwned'\">",
]


def hostile_graph() -> Graph:
    prompt = "Say " + " ".join(PAYLOADS)
    tokens = ["<bos>", "Say", *PAYLOADS]
    nodes = [Node(f"E_{i}_{i}", "embedding", -1, i, i, f"{t!r} @{i}") for i, t in enumerate(tokens)]
    nodes.append(Node("0_7_3", "feature", 0, 3, 7, PAYLOADS[0], 1.5, 0.2, details=PAYLOADS[2]))
    nodes.append(Node("2_9_4", "logit", 1, 4, 9, f"Output {PAYLOADS[1]!r}", None, None, 0.9, True))
    n = len(nodes)
    adjacency = torch.zeros(n, n, dtype=torch.float64)
    adjacency[n - 2, 1] = 0.7
    adjacency[n - 1, n - 2] = -1.3
    adjacency[n - 1, 3] = 0.4
    return Graph(prompt, tokens, "toy", "neurons", nodes, adjacency)


def render(path, tmp_path) -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "Chromium is required for this test: apt-get install chromium (make test does)"
    args = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
        "--virtual-time-budget=10000", "--dump-dom", path.resolve().as_uri(),
    ]
    result = subprocess.run(args, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, result.stderr


def test_html_is_self_contained_and_renders_without_errors(tmp_path):
    import pandas as pd

    from scrying.attribution.validation import GraphValidation
    from scrying.validation_report import compare

    table = pd.DataFrame({"node_id": ["0_7_3", "0_7_4", "1_2_3"], "label": [PAYLOADS[0]] * 3,
                          "predicted": [1.0, 0.5, -0.2], "measured": [0.8, 0.4, -0.1]})
    report = compare(table, target=PAYLOADS[1], method=PAYLOADS[0], settings={"scale": 0.0})
    validation = GraphValidation({PAYLOADS[1]: report}, headline=PAYLOADS[1]).to_json()
    path = write_html(hostile_graph(), tmp_path / "graph.html", validation=validation)
    page = path.read_text()
    assert "<script>alert" not in page.split("<h2>Validation by intervention</h2>")[1]  # escaped
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page), "a resource outside the page"
    dom, log = render(path, tmp_path)
    assert 'data-ready="1"' in dom, "the viewer did not start"
    assert dom.count("class=\"node ") == len(hostile_graph().nodes)  # drawn, at the thresholds that keep all
    console = [line for line in log.splitlines() if "CONSOLE" in line]
    assert not console, console


def test_prompt_text_shows_as_text_and_never_runs(tmp_path):
    path = write_html(hostile_graph(), tmp_path / "graph.html")
    dom, log = render(path, tmp_path)
    title = re.search(r"<title>(.*?)</title>", dom, re.S).group(1)
    assert title.startswith("scrying: Say") and title != "pwned"  # no payload rewrote it
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom  # shown, as text
    elements = Elements()
    elements.feed(dom)
    assert not [a for tag, a in elements.tags if tag == "img" or any(k.startswith("on") for k, _ in a)]
    injected = {"alert(1)", "document.title='pwned'"}  # bodies of the payloads' script elements
    assert not [body for body in elements.scripts if body.strip() in injected]
    assert len(elements.scripts) == 3  # the graph, the view defaults and the viewer; no other


class Elements(HTMLParser):
    """Every element and attribute of a DOM, and the text of every script element."""

    def __init__(self):
        super().__init__()
        self.tags, self.scripts, self._in_script = [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def test_figure_has_nodes_and_signed_edges():
    fig = figure(hostile_graph())
    names = [trace.name for trace in fig.data if trace.mode == "markers"]
    assert {"embedding", "feature", "logit"} <= set(names)
    colors = {trace.line.color for trace in fig.data if trace.mode == "lines"}
    assert len(colors) == 2  # one colour per sign
