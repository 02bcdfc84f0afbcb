"""Open scrying's graphs in circuit-tracer's own viewer, offline, and check what it draws.

    python graphs/circuit_tracer_view.py --circuit-tracer DIR GRAPH.json [GRAPH.json ...]
    python graphs/circuit_tracer_view.py --circuit-tracer DIR --serve GRAPH.json   # look yourself

``DIR`` is your checkout of circuit-tracer (``git clone https://github.com/safety-research/
circuit-tracer``; checked with decoderesearch/circuit-tracer 4bb8c0e, April 2026: every check
passes; with the June 2025 release, d797c82, all but the headers of features and heads, which
show the paired ``feature`` index, as that viewer predates ``schema_version`` 1) or its
``circuit_tracer/frontend/assets`` folder;
``SCRYING_CIRCUIT_TRACER`` names it when the option is left out. Nothing of it is copied into
this repository. Its ``index.html`` loads four script libraries from CDNs; the offline build loads
them from ``--libs`` (default ``DIR/node_modules``, or ``SCRYING_CIRCUIT_TRACER_LIBS``), made once
with ``npm install --prefix DIR d3@7 dagre@0.8.5 pako@2.1.0``.

Phases: build the viewer offline into ``--out`` (default a temporary folder): circuit-tracer's
assets as they are, its ``index.html`` with each CDN script replaced by a local one (d3 7, dagre,
pako; for ``jetpack_2024-07-20.js`` a stand-in written here, :data:`JETPACK`; the live-reload and
``.npy`` scripts left out) -> lay out the data folder as circuit-tracer's ``serve(data_dir)`` reads
it (:func:`scrying.attribution.circuit_tracer_files.write_folder`: ``graph-metadata.json``,
``{slug}.json``, feature files) -> serve both on 127.0.0.1 with circuit-tracer's routes (``/data/``
and ``/graph_data/`` from the data folder, everything else from the viewer) in a thread -> open
each graph in headless Chromium, every host but 127.0.0.1 unresolvable, and check:

* every node that circuit-tracer keeps at the graph's ``node_threshold`` is drawn, in the column
  (``ctx_idx``) and row (layer) the JSON gives it: columns left to right, layers bottom to top, no
  two nodes on one spot, and the names under the columns are the JSON's;
* a click on a node of each ``feature_type`` shows the header circuit-tracer writes for it
  (``Feature L2/1754`` for a feature, ``L5/2`` for head 2 of layer 5, ``MLP L3``, ``Emb: ...``,
  ``Output ...``, an error node's label);
* a click on a feature with a card shows the card's contexts and its promoted and suppressed
  tokens in circuit-tracer's feature panel, read from the local feature file;
* every request the page made went to 127.0.0.1.

Exit status 0 when every check passes, 1 when one fails, 2 when something it needs is missing
(circuit-tracer, the libraries, Chromium), so a caller can skip. A screenshot of each graph is
left in ``--out``.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scrying.attribution import Graph
from scrying.attribution.circuit_tracer_files import write_folder
from scrying.attribution.graph_json import process_token

#: circuit-tracer's CDN scripts by file name: the local file that replaces it (under ``--libs``,
#: or :data:`JETPACK` written here), or ``None`` for one left out (live reload; ``.npy`` reading,
#: which no scrying graph needs).
CDN_SCRIPTS: dict[str, str | None] = {
    "hotserver-client-ws.js": None,
    "d3.js": "d3/dist/d3.min.js",
    "jetpack_2024-07-20.js": "jetpack-stand-in.js",
    "npy_v0.js": None,
    "dagre.min.js": "dagre/dist/dagre.min.js",
    "dagre.js": "dagre/dist/dagre.min.js",  # the June 2025 release's
    "pako.min.js": "pako/dist/pako.min.js",
}
LIBRARIES = "d3@7 dagre@0.8.5 pako@2.1.0"
#: A stand-in for jetpack_2024-07-20.js (a later d3-jetpack, not on npm), written here from
#: d3-jetpack's documented API: the selection helpers, ``nestBy``, ``clamp``, ``conventions``
#: (with ``layers`` and ``drawAxis(svg)``) and ``attachTooltip`` that circuit-tracer's viewer
#: calls. npm's d3-jetpack 2.3 does not run with d3 7 in a page: its UMD build replaces the ``d3``
#: global, and its d3v7 bundle patches a second copy of d3-selection.
JETPACK = r"""(function () {
  function parse(name) {
    var parts = name.split(/([.#])/g), tag = parts.shift(), attrs = {}, p;
    while ((p = parts.shift())) {
      var v = parts.shift();
      if (p == '.') attrs['class'] = attrs['class'] ? attrs['class'] + ' ' + v : v; else attrs.id = v;
    }
    return {tag: tag, attrs: attrs};
  }
  var proto = d3.selection.prototype, append = proto.append;
  proto.append = function (name) {
    if (typeof name != 'string') return append.call(this, name);
    var n = parse(name), sel = append.call(this, n.tag);
    for (var key in n.attrs) sel.attr(key, n.attrs[key]);
    return sel;
  };
  proto.selectAppend = function (name) {
    var n = parse(name), found = d3.selector(name), create = d3.creator(n.tag);
    var sel = this.select(function () { return found.apply(this, arguments) || this.appendChild(create.apply(this, arguments)); });
    for (var key in n.attrs) sel.attr(key, n.attrs[key]);
    return sel;
  };
  proto.appendMany = function (name, data) { return this.selectAll(null).data(data).enter().append(name); };
  var keepCamel = /^(viewBox|preserveAspectRatio|gradientUnits|gradientTransform|patternUnits|patternTransform|markerWidth|markerHeight|markerUnits|refX|refY|spreadMethod|textLength|lengthAdjust|stdDeviation|pathLength|startOffset)$/;
  function kebab(key) { return key.replace(/([a-z\d])([A-Z])/g, '$1-$2').toLowerCase(); }
  proto.at = function (name, value) {
    if (typeof name == 'object') {
      for (var key in name) this.attr(keepCamel.test(key) ? key : kebab(key), name[key]);
      return this;
    }
    return arguments.length == 1 ? this.attr(name) : this.attr(name, value);
  };
  var px = /^(top|left|bottom|right|width|height|(min|max)-(width|height)|margin(-(top|left|bottom|right))?|padding(-(top|left|bottom|right))?|border(-(top|left|bottom|right))?-width|border-radius|font-size|line-height|gap|stroke-width)$/;
  function withPx(v) { return typeof v == 'number' ? v + 'px' : v; }
  proto.st = function (name, value) {
    if (typeof name != 'object') return arguments.length == 1 ? this.style(name) : this.st({[name]: value});
    for (var key in name) {
      var style = kebab(key), v = name[key];
      this.style(style, !px.test(style) ? v : typeof v == 'function' ? function (f) { return function () { return withPx(f.apply(this, arguments)); }; }(v) : withPx(v));
    }
    return this;
  };
  proto.translate = function (xy, dim) {
    var node = this.node();
    function at(d, i) { var p = typeof xy == 'function' ? xy.call(this, d, i) : xy; return dim === 0 ? [p, 0] : dim === 1 ? [0, p] : p; }
    if (!node) return this;
    return node.getBBox
      ? this.attr('transform', function (d, i) { var p = at.call(this, d, i); return 'translate(' + p[0] + ',' + p[1] + ')'; })
      : this.style('transform', function (d, i) { var p = at.call(this, d, i); return 'translate(' + p[0] + 'px,' + p[1] + 'px)'; });
  };
  proto.parent = function () {
    var seen = [];
    return this.filter(function () { if (seen.indexOf(this.parentNode) > -1) return false; seen.push(this.parentNode); return true; })
      .select(function () { return this.parentNode; });
  };
  d3.nestBy = function (array, key) { return d3.groups(array, key).map(function (g) { g[1].key = g[0]; return g[1]; }); };
  d3.clamp = function (min, d, max) { return Math.max(min, Math.min(max, d)); };
  d3.conventions = function (c) {
    c = c || {};
    c.margin = c.margin || {};
    ['top', 'right', 'bottom', 'left'].forEach(function (k) { if (!c.margin[k] && c.margin[k] !== 0) c.margin[k] = 20; });
    var node = c.sel && c.sel.node();
    c.totalWidth = c.totalWidth || node && node.offsetWidth || 960;
    c.totalHeight = c.totalHeight || node && node.offsetHeight || 500;
    c.width = c.width || c.totalWidth - c.margin.left - c.margin.right;
    c.height = c.height || c.totalHeight - c.margin.top - c.margin.bottom;
    c.totalWidth = c.width + c.margin.left + c.margin.right;
    c.totalHeight = c.height + c.margin.top + c.margin.bottom;
    c.sel = c.sel || d3.select('body');
    c.sel.st({position: 'relative', height: c.totalHeight, width: c.totalWidth});
    c.x = c.x || d3.scaleLinear().range([0, c.width]);
    c.y = c.y || d3.scaleLinear().range([c.height, 0]);
    c.xAxis = c.xAxis || d3.axisBottom().scale(c.x);
    c.yAxis = c.yAxis || d3.axisLeft().scale(c.y);
    var several = !!c.layers;
    c.layers = (c.layers || 's').split('').map(function (type) {
      if (type == 's') {
        var g = c.sel.append('svg').st({position: several ? 'absolute' : ''})
          .attr('width', c.totalWidth).attr('height', c.totalHeight)
          .append('g').attr('transform', 'translate(' + c.margin.left + ',' + c.margin.top + ')');
        if (!c.svg) c.svg = g;
        return g;
      }
      if (type == 'c') {
        var s = window.devicePixelRatio || 1;
        var ctx = c.sel.append('canvas').at({width: c.totalWidth * s, height: c.totalHeight * s})
          .st({width: c.totalWidth, height: c.totalHeight, position: 'absolute'}).node().getContext('2d');
        ctx.scale(s, s);
        ctx.translate(c.margin.left, c.margin.top);
        return ctx;
      }
      return c.sel.append('div').st({position: 'absolute', left: c.margin.left, top: c.margin.top, width: c.width, height: c.height});
    });
    c.drawAxis = function (svg) {
      svg = svg || c.svg;
      return {
        xAxisSel: svg.append('g').attr('class', 'x axis').attr('transform', 'translate(0,' + c.height + ')').call(c.xAxis),
        yAxisSel: svg.append('g').attr('class', 'y axis').call(c.yAxis),
      };
    };
    return c;
  };
  d3.attachTooltip = function (sel, tooltipSel, fieldFns) {
    if (!sel.size()) return;
    tooltipSel = tooltipSel || d3.select('.tooltip');
    sel.on('mouseover.attachTooltip', function (ev, d) {
      var fns = fieldFns && fieldFns.length ? fieldFns : Object.keys(d).filter(function (k) { return typeof d[k] != 'object'; })
        .map(function (k) { return function (d) { return k + ': <b>' + d[k] + '</b>'; }; });
      tooltipSel.classed('tooltip-hidden', false).html('').appendMany('div', fns).html(function (fn) { return fn(d); });
    }).on('mouseout.attachTooltip', function () { tooltipSel.classed('tooltip-hidden', true); });
  };
})();
"""
MISSING = 2


class Missing(Exception):
    """Something the check needs is not here (exit status 2)."""


def find_frontend(root: Path) -> Path:
    """circuit-tracer's viewer assets in a checkout (or the assets folder itself)."""
    for folder in (root / "circuit_tracer" / "frontend" / "assets", root / "frontend" / "assets", root):
        if (folder / "index.html").is_file() and (folder / "attribution_graph" / "init-cg.js").is_file():
            return folder
    raise Missing(f"no circuit-tracer viewer in {str(root)!r}: expected circuit_tracer/frontend/assets/index.html")


def build_frontend(assets: Path, libs: Path, out: Path) -> Path:
    """circuit-tracer's viewer in ``out``, loading its libraries from ``out/lib`` (see the
    module docstring); any CDN script it loads that :data:`CDN_SCRIPTS` does not know stops the
    build, naming it."""
    wanted = {name: libs / lib for name, lib in CDN_SCRIPTS.items() if lib and "/" in lib}
    absent = [str(path) for path in wanted.values() if not path.is_file()]
    if absent:
        raise Missing(f"libraries missing: {absent}; run: npm install --prefix {libs.parent} {LIBRARIES}")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(assets, out)
    (out / "lib").mkdir()
    (out / "lib" / "jetpack-stand-in.js").write_text(JETPACK, encoding="utf-8")
    page, lines = (out / "index.html").read_text(encoding="utf-8"), []
    for line in page.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("<script src=") and "://" in stripped:
            url = stripped.split("'")[1] if "'" in stripped else stripped.split('"')[1]
            name = url.rsplit("/", 1)[-1]
            if name not in CDN_SCRIPTS:
                raise Missing(f"circuit-tracer's index.html loads {url}, which this offline build does not know")
            lib = CDN_SCRIPTS[name]
            if lib and name in wanted:
                shutil.copy(wanted[name], out / "lib" / Path(lib).name)
            line = f"<script src='./lib/{Path(lib).name}'></script>\n" if lib else ""
        lines.append(line)
    (out / "index.html").write_text("".join(lines), encoding="utf-8")
    return out


class Server:
    """circuit-tracer's local server's routes, on 127.0.0.1 in a thread; ``requests`` records
    each (path, status)."""

    def __init__(self, frontend: Path, data: Path, port: int = 0):
        self.requests: list[tuple[str, int]] = []
        requests = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def translate_path(self, path: str) -> str:
                for prefix in ("/data/", "/graph_data/"):
                    if path.startswith(prefix):
                        self.directory = str(data)
                        return super().translate_path("/" + path[len(prefix):])
                return super().translate_path(path)

            def end_headers(self) -> None:  # graphs of one slug written in turn: never a cached answer
                self.send_header("Cache-Control", "no-store")
                super().end_headers()

            def log_request(self, code: Any = "-", size: Any = "-") -> None:
                requests.append((self.path, int(code)))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Handler, directory=str(frontend)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def open_browser() -> Any:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as err:
        raise Missing("selenium is not installed: make browser") from err
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        raise Missing("Chromium and chromedriver are required: make browser")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1600,1100", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver))


@dataclass
class Report:
    """What the viewer showed of one graph, and each check that failed."""

    name: str
    slug: str
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        self.lines.append(("ok    " if ok else "FAILED ") + what)
        if not ok:
            self.failures.append(what)


def kept_by_circuit_tracer(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The nodes circuit-tracer's ``formatData`` keeps at the graph's ``node_threshold``
    (embeddings, logits, and nodes whose influence is null or at most the threshold)."""
    threshold = doc["metadata"].get("node_threshold")
    if not isinstance(threshold, int | float):
        return list(doc["nodes"])
    return [n for n in doc["nodes"] if n["feature_type"] in ("embedding", "logit") or n["influence"] is None or n["influence"] <= threshold]


def expected_header(node: dict[str, Any], record: dict[str, Any], names: list[str]) -> str:
    """The header circuit-tracer's feature panel must write for a node of scrying's kind (its
    ``init-cg-feature-detail.js`` heads an embedding ``Emb: “token"``, a logit and an error-typed
    node by their label, a feature ``Feature L{layer}/{index}``, other types ``L{layer}/{index}``):
    an embedding its token (``all tokens`` when summed over positions), a feature ``Feature
    L{layer}/{index}``, a head ``L{layer}/{head}``, an MLP, an error node and a logit their label."""
    kind = record["kind"]
    if kind == "embedding":
        return f"Emb: “{names[node['ctx_idx']]}\""
    if kind == "feature":
        return f"Feature L{record['layer']}/{record['feature']}"
    if kind == "component" and record["feature"] >= 0:
        return f"L{record['layer']}/{record['feature']}"
    return node["clerp"] if kind == "logit" else record["label"]


DRAWN = """return Array.from(document.querySelectorAll('.link-graph text.node'), e => {
  var d = d3.select(e).datum(), r = e.getBoundingClientRect();
  return {id: d.node_id, ctx: d.ctx_idx, stream: d.streamIdx, x: r.x + r.width / 2, y: r.y + r.height / 2};
})"""
HEADER = """var h = document.querySelector('.feature-detail .feature-header'), t = h && h.querySelector('.feature-title');
return (t || h) ? (t || h).textContent.replace(/\\u00a0/g, ' ') : ''"""
PANEL = """var s = document.querySelector('.feature-detail'), all = q => Array.from(s.querySelectorAll(q), e => e.textContent);
return {contexts: all('.feature-example-list .ctx-container'), marked: all('.feature-example-list .train_token_ind'),
        logits: all('.feature-example-logits span.token')}"""


def check_layout(report: Report, drawn: list[dict[str, Any]], doc: dict[str, Any], ticks: list[str]) -> None:
    """The nodes circuit-tracer drew (``drawn``: id, ``ctx`` column, ``stream`` row, screen x
    and y) against the JSON ``doc``: the nodes it keeps, each in its column and row, on its own
    spot, columns in order and named as written; a component graph's by scrying's layout columns."""
    kept = {n["node_id"]: n for n in kept_by_circuit_tracer(doc)}
    records = {n["node_id"]: r for n, r in zip(doc["nodes"], doc["scrying"]["nodes"], strict=True)}
    names = doc["metadata"]["prompt_tokens"]
    report.check(sorted(d["id"] for d in drawn) == sorted(kept), f"{len(drawn)} nodes drawn, the {len(kept)} circuit-tracer keeps")
    drawn = [d for d in drawn if d["id"] in kept]
    report.check(all(d["ctx"] == kept[d["id"]]["ctx_idx"] for d in drawn), "each in the column (ctx_idx) the JSON gives it")
    spots = {(round(d["x"]), round(d["y"])) for d in drawn}
    report.check(len(spots) == len(drawn), f"{len(spots)} distinct spots for {len(drawn)} nodes")
    by_column: dict[int, list[float]] = {}
    for d in drawn:
        by_column.setdefault(d["ctx"], []).append(d["x"])
    columns = sorted(by_column)
    ordered = all(max(by_column[a]) < min(by_column[b]) for a, b in zip(columns, columns[1:], strict=False))
    report.check(ordered, f"columns left to right: {', '.join(f'{c} {names[c]!r}' for c in columns)}")
    rows = all((a["stream"] < b["stream"]) == (a["y"] > b["y"]) for a in drawn for b in drawn if a["stream"] != b["stream"])
    report.check(rows, "layers bottom to top (embeddings lowest, logits highest)")
    embeds = sorted({n["ctx_idx"] for n in kept.values() if n["feature_type"] == "embedding"})
    report.check(ticks == [names[c] for c in embeds], f"names under the columns: {ticks}")
    if any(r["kind"] == "component" for r in records.values()):
        report.check(all(len({round(x) for x in xs}) == 1 for xs in by_column.values()),
                     "a component graph's column holds its head (or MLP) on every layer at one x")
        report.check(all(d["ctx"] == (0 if records[d["id"]]["kind"] == "embedding" else 1 + records[d["id"]]["column"]) for d in drawn),
                     "each component in scrying's layout column (1 + column; the embeddings in 0)")


def to_click(drawn: list[dict[str, Any]], records: dict[str, dict[str, Any]], cards: dict[str, Any]) -> list[str]:
    """One drawn node of each of scrying's kinds (heads and MLPs apart), a feature with a card first."""
    def key(node_id: str) -> str:
        record = records[node_id]
        return record["kind"] if record["kind"] != "component" else "head" if record["feature"] >= 0 else "mlp"

    ids = sorted((d["id"] for d in drawn), key=lambda i: records[i]["node_id"] not in cards)
    chosen: dict[str, str] = {}
    for node_id in ids:
        chosen.setdefault(key(node_id), node_id)
    return list(chosen.values())


def check_graph(browser: Any, server: Server, data: Path, graph_path: Path, shots: Path) -> Report:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    graph = Graph.read_json(graph_path)
    written = write_folder(graph, data)
    doc = json.loads(written.graph.read_text(encoding="utf-8"))
    slug, names = doc["metadata"]["slug"], doc["metadata"]["prompt_tokens"]
    nodes = {n["node_id"]: n for n in doc["nodes"]}
    records = {n["node_id"]: r for n, r in zip(doc["nodes"], doc["scrying"]["nodes"], strict=True)}
    cards = graph.metadata.get("cards") or {}
    report = Report(graph_path.name, slug)
    report.lines.append(f"scan {doc['metadata']['scan']!r}; transcoder_list: {len(doc['metadata']['transcoder_list'])} entries;"
                        f" {len(written.features)} feature files")
    server.requests.clear()
    browser.get_log("performance")
    browser.get(f"{server.url}/index.html?slug={slug}")
    n_kept = len(kept_by_circuit_tracer(doc))
    try:
        WebDriverWait(browser, 30).until(lambda b: len(b.execute_script(DRAWN)) >= n_kept)
    except Exception:  # noqa: BLE001 - reported as a failed check, with the console
        report.check(False, f"the viewer drew {len(browser.execute_script(DRAWN))} of {n_kept} nodes: {browser.get_log('browser')[-5:]}")
        return report
    drawn = browser.execute_script(DRAWN)
    ticks = browser.execute_script("return Array.from(document.querySelectorAll('.prompt-token text'), e => e.textContent)")
    check_layout(report, drawn, doc, ticks)

    # --- each kind's header, and a card's feature panel
    elements = dict(zip((d["id"] for d in drawn), browser.find_elements(By.CSS_SELECTOR, ".link-graph text.node"), strict=True))
    for node_id in to_click(drawn, records, cards):
        node, record = nodes[node_id], records[node_id]
        ActionChains(browser).move_to_element(elements[node_id]).click().perform()
        time.sleep(0.3)
        header, want = browser.execute_script(HEADER), expected_header(node, record, names)
        report.check(header.startswith(want), f"{node['feature_type']}: {record['label']!r} headed {header[:60]!r} (expected {want!r})")
        if record["kind"] != "feature" or record["node_id"] not in cards:
            continue
        card = cards[record["node_id"]]
        contexts, n = card.get("contexts", []), len(card.get("contexts", []))
        try:
            WebDriverWait(browser, 15).until(lambda b, n=n: len(b.execute_script(PANEL)["contexts"]) >= n)
        except Exception:  # noqa: BLE001 - reported below
            pass
        panel = browser.execute_script(PANEL)
        texts = ["".join(map(process_token, c["tokens"])) for c in contexts]
        report.check(panel["contexts"] == texts and n > 0,
                     f"feature panel of {record['node_id']}: {len(panel['contexts'])} contexts, e.g. {(panel['contexts'] or [''])[0][:70]!r}")
        marked = len(panel["marked"]) == n and all(process_token(c["tokens"][c["at"]]) in m for c, m in zip(contexts, panel["marked"], strict=True))
        report.check(marked, f"the activating token marked in each: {panel['marked'][:5]}")
        want_logits = [process_token(t) for t, _ in card.get("promotes", []) + card.get("suppresses", [])]
        report.check(panel["logits"] == want_logits, f"top and bottom logits: {panel['logits'][:10]}")
        read = [(path, status) for path, status in server.requests if path.startswith("/graph_data/features/")]
        report.check(any(status == 200 for _, status in read), f"read from the local folder: {read[:1]}")
        browser.save_screenshot(str(shots / f"{graph_path.stem}-feature-panel.png"))
    with_cards = [i for i in elements if records[i]["kind"] == "feature" and records[i]["node_id"] in cards]
    if with_cards:
        report.check(any(line.startswith("ok    feature panel") for line in report.lines), "a feature's panel was checked")
    browser.save_screenshot(str(shots / f"{graph_path.stem}.png"))  # the last node clicked

    # --- offline
    urls = [json.loads(entry["message"])["message"].get("params", {}).get("request", {}).get("url", "")
            for entry in browser.get_log("performance")]
    outside = sorted({u for u in urls if u and not u.startswith((server.url, "data:", "blob:"))})
    report.check(not outside, f"{len([u for u in urls if u])} requests, none outside 127.0.0.1 {outside[:3]}")
    return report


def run(graphs: list[Path], circuit_tracer: Path, libs: Path, out: Path) -> list[Report]:
    """Build, serve and check each of ``graphs`` (see the module docstring); :class:`Missing`
    when something it needs is not here."""
    frontend = build_frontend(find_frontend(circuit_tracer), libs, out / "frontend")
    data = out / "data"
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    browser = open_browser()
    server = Server(frontend, data)
    try:
        return [check_graph(browser, server, data, path, out) for path in graphs]
    finally:
        server.stop()
        browser.quit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("graphs", nargs="+", type=Path, help="graph JSON files written by scrying")
    parser.add_argument("--circuit-tracer", type=Path, default=os.environ.get("SCRYING_CIRCUIT_TRACER"),
                        help="a circuit-tracer checkout (default: $SCRYING_CIRCUIT_TRACER)")
    parser.add_argument("--libs", type=Path, default=os.environ.get("SCRYING_CIRCUIT_TRACER_LIBS"),
                        help="node_modules holding d3, dagre and pako (default: DIR/node_modules)")
    parser.add_argument("--out", type=Path, help="where to build the viewer and its data (default: a temporary folder)")
    parser.add_argument("--serve", action="store_true", help="serve the graphs for a person to look at, until Ctrl-C")
    args = parser.parse_args(argv)
    if args.circuit_tracer is None:
        sys.stderr.write("circuit-tracer's viewer is needed: --circuit-tracer DIR or SCRYING_CIRCUIT_TRACER\n")
        return MISSING
    libs = args.libs or args.circuit_tracer / "node_modules"
    out = args.out or Path(tempfile.mkdtemp(prefix="circuit-tracer-view-"))
    try:
        if args.serve:
            frontend = build_frontend(find_frontend(args.circuit_tracer), libs, out / "frontend")
            slugs = [write_folder(Graph.read_json(p), out / "data").graph.stem for p in args.graphs]
            server = Server(frontend, out / "data", port=8032)
            sys.stdout.write("".join(f"{server.url}/index.html?slug={s}\n" for s in slugs))
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                server.stop()
                return 0
        reports = run(args.graphs, args.circuit_tracer, libs, out)
    except Missing as err:
        sys.stderr.write(f"{err}\n")
        return MISSING
    for report in reports:
        sys.stdout.write(f"{report.name} (slug {report.slug})\n" + "".join(f"  {line}\n" for line in report.lines))
    failed = sum(len(r.failures) for r in reports)
    sys.stdout.write(f"{'FAILED: ' + str(failed) + ' checks' if failed else 'all checks passed'}; screenshots in {out}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
