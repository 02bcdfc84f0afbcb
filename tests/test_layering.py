"""The layering the shared-layer issue set: instruments stand on the shared layer, never on each
other's internals, and only the model adapter reaches into the backend."""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "scrying"
INSTRUMENTS = ("ablation", "attribution", "circuits", "emergence", "reversal", "transcoders", "viewer")
# attribution builds its component graphs from circuits' EAP-IG: the one allowed crossing
ALLOWED = {("attribution", "circuits")}
BACKEND = re.compile(r"original_component|object\.__setattr__\(\s*(block|mlp|model)|\.blocks\[|model\.unembed|model\.ln_final")


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("scrying"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("scrying")}
    return out


def test_instruments_do_not_import_each_other():
    crossings = []
    for instrument in INSTRUMENTS:
        for path in (PACKAGE / instrument).rglob("*.py"):
            for module in _imports(path):
                # an instrument's public API is its package (``scrying.ablation``); its modules
                # (``scrying.ablation.sweep``) are internals
                other = module.split(".")[1] if module.count(".") >= 2 else ""
                if other in INSTRUMENTS and other != instrument and (instrument, other) not in ALLOWED:
                    crossings.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert crossings == []


def test_only_the_adapter_reaches_into_the_backend():
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in PACKAGE.rglob("*.py")
        if path.parent.name != "models"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if BACKEND.search(line)
    ]
    assert offenders == []
