"""The layering the shared-layer issue set, as rules over the import graph and the source text.

Layers, lowest first: the **shared** layer (the modules at ``scrying/*.py`` and the packages
``models``, ``toys``, ``data``), the **instruments** (``INSTRUMENTS``), the **CLI**. A module
imports its own layer or a lower one, never a higher one; an instrument uses another instrument
only through that package's public API (``scrying.ablation``, not ``scrying.ablation.sweep``);
only the model adapter (``scrying/models/adapter.py``) reaches into the backend's internals; and
no module takes part in an import cycle (imports inside functions count: a lazy import hides a
cycle, it does not remove it). The benchmarks are checked for cycles with the package.

Each rule is a function over a graph ``{module: {imported modules}}`` (or over ``{path: source}``)
so that a planted violation can be fed to it; every rule has a test that it flags one.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "scrying"
BENCHMARKS = ROOT / "benchmarks"
INSTRUMENTS = ("ablation", "attribution", "circuits", "emergence", "reversal", "transcoders", "viewer")
SHARED_PACKAGES = ("models", "toys", "data")
TOP = ("cli",)
# attribution builds its component graphs from circuits' EAP-IG: the one allowed crossing
ALLOWED = {("attribution", "circuits")}
ADAPTER = "scrying/models/adapter.py"
BACKEND = re.compile(r"original_component|object\.__setattr__\(\s*(block|mlp|model)|\.blocks\[|model\.unembed|model\.ln_final")

Graph = dict[str, set[str]]


# --------------------------------------------------------------------------- the graph
def _module_name(path: Path, base: Path, prefix: str) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([prefix, *parts]) if prefix else ".".join(parts)


def module_graph(directory: Path, prefix: str, *, siblings: bool = False) -> Graph:
    """``{module: modules it imports}`` for every ``.py`` under ``directory`` (named
    ``prefix.<relative path>``), imports anywhere in a module included. ``from a import b`` is an
    edge to ``a.b`` when that is a module here, else to ``a``. With ``siblings`` (scripts run from
    their folder, as the benchmarks are), a bare ``import x`` of a file beside them is ``prefix.x``."""
    paths = sorted(directory.rglob("*.py"))
    names = {_module_name(p, directory, prefix): p for p in paths}
    local = {n.rsplit(".", 1)[-1]: n for n in names} if siblings else {}
    graph: Graph = {}
    for name, path in names.items():
        is_package = path.name == "__init__.py"
        out: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package, up level - 1 more
                    package = name.split(".") if is_package else name.split(".")[:-1]
                    package = package[: len(package) - node.level + 1]
                    base = ".".join(package + ([base] if base else []))
                base = local.get(base, base)
                for alias in node.names:
                    full = f"{base}.{alias.name}" if base else alias.name
                    out.add(full if full in names else base)
            elif isinstance(node, ast.Import):
                out |= {local.get(a.name, a.name) for a in node.names}
        graph[name] = {m for m in out if m and m != name}
    return graph


def package_graph() -> Graph:
    return module_graph(PACKAGE, "scrying")


# --------------------------------------------------------------------------- the rules
def layer_of(module: str) -> tuple[int, str] | None:
    """``(rank, unit)`` of a ``scrying`` module: rank 0 shared, 1 instrument, 2 CLI; the unit is
    the instrument's name (``None`` outside scrying and for the root package)."""
    parts = module.split(".")
    if parts[0] != "scrying" or len(parts) == 1:
        return None
    if parts[1] in INSTRUMENTS:
        return 1, parts[1]
    if parts[1] in TOP:
        return 2, parts[1]
    return 0, "shared"


def upward_imports(graph: Graph) -> list[str]:
    """Imports of a higher layer: shared -> instrument or CLI, instrument -> CLI."""
    out = []
    for module, imported in sorted(graph.items()):
        here = layer_of(module)
        for other in sorted(imported):
            there = layer_of(other)
            if here and there and there[0] > here[0]:
                out.append(f"{module} imports {other}")
    return out


def instrument_crossings(graph: Graph) -> list[str]:
    """Imports of another instrument's internals (``scrying.<other>.<module>``), but the allowed."""
    out = []
    for module, imported in sorted(graph.items()):
        here = layer_of(module)
        if not here or here[0] != 1:
            continue
        for other in sorted(imported):
            parts = other.split(".")
            there = layer_of(other)
            if there and there[0] == 1 and len(parts) >= 3 and there[1] != here[1] and (here[1], there[1]) not in ALLOWED:
                out.append(f"{module} imports {other}")
    return out


def backend_reaches(sources: dict[str, str]) -> list[str]:
    """``path:line`` of every line outside the adapter that touches the backend's internals."""
    return [
        f"{path}:{number}"
        for path, text in sorted(sources.items())
        if path != ADAPTER
        for number, line in enumerate(text.splitlines(), start=1)
        if BACKEND.search(line)
    ]


def import_cycles(graph: Graph) -> list[list[str]]:
    """Cycles of two or more modules (``/work/shared/tools/import_cycles.py``'s definition): a
    package ``__init__`` that imports its own submodule, which imports the package back, is
    re-export, not a cycle of logic; every other cycle is one."""
    g = nx.DiGraph()
    g.add_nodes_from(graph)
    g.add_edges_from((a, b) for a, imported in graph.items() for b in imported if b in graph)

    def parent(a: str, b: str) -> bool:
        return a == b.rsplit(".", 1)[0] or b == a.rsplit(".", 1)[0]

    return [c for c in nx.simple_cycles(g) if len(c) > 1 and not any(parent(a, b) for a, b in zip(c, c[1:] + c[:1], strict=True))]


def _sources() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py")}


# --------------------------------------------------------------------------- the package obeys them
def test_the_graph_sees_every_kind_of_import():
    """Lazy, relative and ``from package import module`` imports are all edges (the cycle
    check is only as good as this)."""
    graph = package_graph()
    assert {"scrying.toys.train", "scrying.models.adapter", "scrying.cli.main"} <= set(graph)
    assert sum(map(len, graph.values())) > 300
    assert "scrying.toys.train" in graph["scrying.toys"]  # the package re-exports its modules


def test_no_module_imports_a_higher_layer():
    assert upward_imports(package_graph()) == []


def test_instruments_do_not_import_each_others_internals():
    assert instrument_crossings(package_graph()) == []


def test_only_the_adapter_reaches_into_the_backend():
    assert backend_reaches(_sources()) == []


def test_no_import_cycle_in_the_package_or_the_benchmarks():
    graph = package_graph() | module_graph(BENCHMARKS, "benchmarks", siblings=True)
    assert import_cycles(graph) == []
    assert {"benchmarks.measure", "benchmarks.vs_circuit_tracer"} <= set(graph)
    assert "benchmarks.measure" in graph["benchmarks.feature_graph_profile"]


# --------------------------------------------------------------------------- each rule has teeth
def _planted(graph: Graph, module: str, imported: str) -> Graph:
    return {**graph, module: graph.get(module, set()) | {imported}}


def test_a_shared_module_importing_an_instrument_is_flagged():
    graph = package_graph()
    planted = {
        ("scrying.stats", "scrying.attribution.graph"): "scrying.stats imports scrying.attribution.graph",
        ("scrying.toys.train", "scrying.emergence"): "scrying.toys.train imports scrying.emergence",
        ("scrying.models.loading", "scrying.viewer.page"): "scrying.models.loading imports scrying.viewer.page",
        ("scrying.prompts", "scrying.cli.main"): "scrying.prompts imports scrying.cli.main",
        ("scrying.ablation.sweep", "scrying.cli.common"): "scrying.ablation.sweep imports scrying.cli.common",
    }
    for (module, imported), message in planted.items():
        assert upward_imports(_planted(graph, module, imported)) == [message]
    assert upward_imports(_planted(graph, "scrying.cli.main", "scrying.toys")) == []  # downward is fine


def test_an_instrument_importing_another_instruments_internals_is_flagged():
    graph = package_graph()
    flagged = _planted(graph, "scrying.reversal.lens", "scrying.emergence.item_scoring")
    assert instrument_crossings(flagged) == ["scrying.reversal.lens imports scrying.emergence.item_scoring"]
    assert instrument_crossings(_planted(graph, "scrying.reversal.lens", "scrying.emergence")) == []  # public API
    assert instrument_crossings(_planted(graph, "scrying.attribution.trace", "scrying.circuits.eap")) == []  # allowed


def test_backend_internals_outside_the_adapter_are_flagged():
    sources = _sources()
    loading = "scrying/models/loading.py"
    planted = {**sources, loading: sources[loading] + "\nweight = model.blocks[0].mlp.W_in\n"}
    assert backend_reaches(planted) == [f"{loading}:{len(planted[loading].splitlines())}"]
    elsewhere = {**sources, "scrying/toys/train.py": sources["scrying/toys/train.py"] + "\nw = model.unembed.original_component\n"}
    assert len(backend_reaches(elsewhere)) == 1
    in_adapter = {**sources, ADAPTER: sources[ADAPTER] + "\nweight = model.blocks[0].mlp.W_in\n"}
    assert backend_reaches(in_adapter) == []


def test_an_import_cycle_is_flagged_lazy_imports_included(tmp_path):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("from pkg.a import f\n")
    (tmp_path / "pkg" / "a.py").write_text("from . import b\n\ndef f():\n    return b\n")
    (tmp_path / "pkg" / "b.py").write_text("def g():\n    from pkg.sub import c  # lazy\n    return c\n")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "c.py").write_text("def h():\n    from ..a import f\n    return f\n")
    graph = module_graph(tmp_path / "pkg", "pkg")
    assert graph["pkg.b"] == {"pkg.sub.c"} and graph["pkg.sub.c"] == {"pkg.a"} and graph["pkg.a"] == {"pkg.b"}
    assert [sorted(c) for c in import_cycles(graph)] == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    # the re-export pkg -> pkg.a is not a cycle; nor a planted edge into the real package's API
    assert import_cycles(_planted(package_graph(), "scrying.stats", "scrying.errors")) == []
    real = _planted(package_graph(), "scrying.errors", "scrying.validation_report")
    assert "scrying.errors" in {m for c in import_cycles(real) for m in c}


def test_benchmarks_importing_each_other_in_a_circle_are_flagged(tmp_path):
    (tmp_path / "one.py").write_text("import sys\nfrom two import helper\n")
    (tmp_path / "two.py").write_text("def helper():\n    from one import x\n")
    graph = module_graph(tmp_path, "benchmarks", siblings=True)
    assert graph["benchmarks.one"] == {"sys", "benchmarks.two"}
    assert [sorted(c) for c in import_cycles(graph)] == [["benchmarks.one", "benchmarks.two"]]
