"""The README's module map names every module of the package, and nothing that does not exist."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_module_map_matches_the_package():
    text = (ROOT / "README.md").read_text()
    mapped = set(re.findall(r"^\| `(scrying/[\w/]+\.py)` \|", text, flags=re.M))
    modules = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "scrying").rglob("*.py")
        if p.name != "__init__.py"
    }
    assert modules - mapped == set(), "modules missing from the README map"
    assert mapped - modules == set(), "README map names modules that do not exist"
