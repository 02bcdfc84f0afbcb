"""The files the viewer reads, checked before anything is rendered, so that a foreign or broken
file gives one :class:`~scrying.errors.InvalidInputError` naming the field, what was expected
and what came, never a traceback from deep inside the page.

Phases: read the file (:func:`read_json_file`: readable, UTF-8, JSON, no NaN or Infinity, nested
at most :data:`MAX_DEPTH` levels, text that can be written back) -> check the graph JSON's
fields (:func:`check_graph`): every field that the page (:mod:`~scrying.viewer.page`), the
gallery's index (:mod:`~scrying.viewer.gallery`), the report (:mod:`~scrying.viewer.report`) and
the page's script (``assets/viewer.js``) read, with the type they use it as. Fields nobody reads
are not checked.

The format is circuit-tracer's graph JSON (``nodes``, ``links``, ``metadata``, ``qParams``) plus
scrying's records under ``scrying`` (:mod:`scrying.attribution.graph`); a validation is what
``GraphValidation.to_json`` writes.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scrying.errors import InvalidInputError
from scrying.jsonl import read_json

#: Deepest nesting of a file's JSON (a graph JSON nests 7 levels; deeper input is refused
#: before anything recursive, such as ``json.dumps``, meets it).
MAX_DEPTH = 100

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlevel = 2


def show(value: Any) -> str:
    """``value`` for an error message: its repr, shortened."""
    return _SHORT.repr(value)


def is_number(value: Any) -> bool:
    """A finite JSON number (``int`` or ``float``, not ``bool``) that a float can hold."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond float's range
        return False


@dataclass(frozen=True)
class Kind:
    """What a field must be: a test, and the words the error uses for it."""

    test: Callable[[Any], bool]
    expected: str

    def or_null(self) -> Kind:
        return Kind(lambda v: v is None or self.test(v), f"{self.expected} or null")


STRING = Kind(lambda v: isinstance(v, str), "a string")
INTEGER = Kind(lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")
BOOLEAN = Kind(lambda v: isinstance(v, bool), "true or false")
NUMBER = Kind(is_number, "a finite number")
OBJECT = Kind(lambda v: isinstance(v, dict), "an object")
LIST = Kind(lambda v: isinstance(v, list), "a list")
OBJECTS = Kind(lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v), "a list of objects")
STRINGS = Kind(lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of strings")
INTERVAL = Kind(lambda v: isinstance(v, list) and len(v) == 2 and all(x is None or is_number(x) for x in v),
                "a [low, high] pair of numbers or nulls")
LAYER = Kind(lambda v: STRING.test(v) or INTEGER.test(v), "a string or an integer")

#: circuit-tracer's fields of a node that the page, the index and the script read.
NODE = {
    "node_id": STRING, "feature_type": STRING, "clerp": STRING, "token_prob": NUMBER.or_null(),
    "is_target_logit": BOOLEAN, "layer": LAYER, "ctx_idx": INTEGER, "activation": NUMBER.or_null(),
    "influence": NUMBER.or_null(),
}
LINK = {"source": STRING, "target": STRING, "weight": NUMBER}
METADATA = {"prompt": STRING, "scan": STRING, "slug": STRING, "prompt_tokens": STRINGS}
#: scrying's records (the ``scrying`` key), its nodes and its metadata.
OWN = {"model": STRING, "level": STRING, "prompt_tokens": STRINGS, "nodes": OBJECTS, "metadata": OBJECT.or_null()}
OWN_NODE = {
    "kind": STRING, "label": STRING, "layer": INTEGER, "pos": INTEGER, "column": INTEGER.or_null(),
    "activation": NUMBER.or_null(), "influence": NUMBER.or_null(),
}
OWN_METADATA = {
    "targets": LIST, "corrupt_prompt": STRING, "x_labels": STRINGS, "scores": OBJECT, "validation": OBJECT.or_null(),
    "circuit": OBJECT.or_null(), "pruned_from": INTEGER.or_null(), "node_threshold": NUMBER.or_null(),
    "metric": STRING.or_null(), "cards": OBJECT.or_null(),
}
#: A component circuit's selection record (``scrying.metadata.circuit``): the fields the page reads.
CIRCUIT = {"rule": STRING.or_null()}
#: A validation (``GraphValidation.to_json``), one report of it, one row of a report (the scatter
#: leaves out a value that is not finite: code may pass NaN there; a file holds none).
VALIDATION = {"headline": STRING, "reports": OBJECT}
REPORT = {
    "target": STRING, "method": STRING, "spearman": NUMBER.or_null(), "spearman_ci": INTERVAL.or_null(),
    "pearson": NUMBER.or_null(), "pearson_ci": INTERVAL.or_null(), "slope": NUMBER.or_null(),
    "confidence": NUMBER, "rows": OBJECTS,
}
TOKEN_VALUES = Kind(lambda v: isinstance(v, list) and all(isinstance(x, list) and len(x) == 2 and isinstance(x[0], str)
                                                       and is_number(x[1]) for x in v), "a list of [token, number] pairs")
MATRIX = Kind(lambda v: isinstance(v, list) and all(isinstance(r, list) and all(is_number(x) for x in r) for r in v),
              "a list of rows of numbers")
#: A node's card (``scrying.metadata.cards[node_id]``, :mod:`scrying.attribution.cards`) and one of its contexts.
CARD = {"kind": STRING, "promotes": TOKEN_VALUES, "suppresses": TOKEN_VALUES, "contexts": OBJECTS,
        "contexts_from": STRING, "effect": NUMBER, "effect_of": STRING, "pattern": MATRIX}
CONTEXT = {"activation": NUMBER, "tokens": STRINGS, "values": Kind(lambda v: isinstance(v, list) and all(is_number(x) for x in v),
                                                                   "a list of numbers"), "at": INTEGER}
ROW = {name: Kind(lambda v: isinstance(v, int | float) and not isinstance(v, bool), "a number").or_null()
       for name in ("predicted", "measured")}


def check_fields(obj: Any, where: str, fields: dict[str, Kind], required: tuple[str, ...] = ()) -> None:
    """Raise an error naming ``where`` and the field unless ``obj`` is an object that has its
    ``required`` fields and whose ``fields``, where present, have their kind."""
    check_each([obj], lambda _: where, fields, required)


def check_each(
    items: list[Any], where: Callable[[int], str], fields: dict[str, Kind], required: tuple[str, ...] = ()
) -> None:
    """:func:`check_fields` for each of ``items``, ``where(i)`` naming the i-th (one call for a
    list, so that a large graph is checked fast even under the test suite's runtime checks)."""
    checks = [(name, kind.test, kind.expected) for name, kind in fields.items()]
    for i, obj in enumerate(items):
        if not isinstance(obj, dict):
            raise InvalidInputError(f"{where(i)} must be an object, got {show(obj)}")
        for name in required:
            if name not in obj:
                raise InvalidInputError(f"{where(i)}: {name!r} is missing")
        for name, test, expected in checks:
            if name in obj and not test(obj[name]):
                raise InvalidInputError(f"{where(i)}: {name!r} must be {expected}, got {show(obj[name])}")


def check_plain(data: Any, where: str) -> None:
    """Refuse what JSON (and a UTF-8 page) cannot hold: NaN or Infinity, text with lone
    surrogates, nesting deeper than :data:`MAX_DEPTH`. Iterative, so any depth is safe; one loop
    with no call per value, so a large graph is walked fast."""
    stack: list[tuple[Any, tuple | None, int]] = [(data, None, 0)] if isinstance(data, dict | list | tuple) else []
    while stack:
        value, at, depth = stack.pop()  # a container, its place (parent place, key), its depth
        if depth > MAX_DEPTH:
            raise InvalidInputError(f"{where} nests deeper than {MAX_DEPTH} levels (at {_path(at)})")
        for key, item in value.items() if isinstance(value, dict) else enumerate(value):
            if isinstance(key, str) and not key.isascii() and not _is_text(key):
                raise InvalidInputError(f"{where}: a key {show(key)} of {_path(at)} holds a lone surrogate, not text")
            if isinstance(item, dict | list | tuple):  # only containers go on the stack
                stack.append((item, (at, key), depth + 1))
            elif isinstance(item, float) and not math.isfinite(item):
                raise InvalidInputError(f"{where} may hold no NaN or Infinity: {_path((at, key))} is {item}")
            elif isinstance(item, str) and not item.isascii() and not _is_text(item):
                raise InvalidInputError(f"{where}: {_path((at, key))} holds a lone surrogate, not text")
    if isinstance(data, float) and not math.isfinite(data):
        raise InvalidInputError(f"{where} may hold no NaN or Infinity: it is {data}")
    if isinstance(data, str) and not _is_text(data):
        raise InvalidInputError(f"{where} holds a lone surrogate, not text")


def _is_text(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (Python strings may hold lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _path(at: tuple | None) -> str:
    """``nodes[3].clerp`` from the chain ``(((None, "nodes"), 3), "clerp")``."""
    keys = []
    while at is not None:
        at, key = at
        keys.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    path = "".join(reversed(keys)).lstrip(".") or "the top"
    return path if len(path) <= 80 else path[:77] + "..."


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number (a number must be finite)")


def read_json_file(path: str | Path) -> Any:
    """The JSON value of file ``path`` (:func:`scrying.jsonl.read_json`, NaN and Infinity
    refused), passed by :func:`check_plain`."""
    data = read_json(path, parse_constant=_refuse_constant)
    check_plain(data, repr(str(path)))
    return data

def check_validation(validation: Any, where: str) -> None:
    """A validation as :func:`~scrying.viewer.report.validation_html` reads it."""
    check_fields(validation, where, VALIDATION, required=tuple(VALIDATION))
    reports = validation["reports"]
    if validation["headline"] not in reports:
        headline = show(validation["headline"])
        raise InvalidInputError(f"{where}: 'headline' {headline} names none of its reports {show(list(reports))}")
    for name, report in reports.items():
        at = f"{where}.reports[{show(name)}]"
        check_fields(report, at, REPORT, required=("target", "method", "spearman", "pearson", "slope", "rows"))
        check_each(report["rows"], lambda i, at=at: f"{at}.rows[{i}]", ROW)


def check_graph(data: Any) -> None:
    """Everything the viewer reads of a graph JSON (see the module docstring) but its
    ``qParams``, which :meth:`~scrying.viewer.state.ViewState.from_qparams` checks."""
    check_plain(data, "a graph JSON")
    top = {"nodes": LIST, "links": LIST, "metadata": OBJECT, "scrying": OBJECT.or_null(), "qParams": OBJECT.or_null()}
    check_fields(data, "a graph JSON", top, required=("nodes", "links", "metadata"))
    check_each(data["nodes"], lambda i: f"node {i}", NODE, required=("node_id",))
    check_each(data["links"], lambda i: f"link {i}", LINK, required=tuple(LINK))
    first: dict[str, int] = {}
    for i, node in enumerate(data["nodes"]):
        earlier = first.setdefault(node["node_id"], i)
        if earlier != i:
            raise InvalidInputError(f"node {i}: 'node_id' {show(node['node_id'])} repeats node {earlier}'s")
    for i, link in enumerate(data["links"]):
        for end in ("source", "target"):
            if link[end] not in first:
                raise InvalidInputError(f"link {i}: {end} {show(link[end])} names no node of the graph")
    check_fields(data["metadata"], "metadata", METADATA)
    own = data.get("scrying")
    if own is None:
        return
    check_fields(own, "scrying", OWN, required=("nodes",))
    if len(own["nodes"]) != len(data["nodes"]):
        counts = f"{len(own['nodes'])} and {len(data['nodes'])}"
        raise InvalidInputError(f"the 'scrying' nodes do not match the graph's nodes one to one ({counts})")
    check_each(own["nodes"], lambda i: f"scrying.nodes[{i}]", OWN_NODE, required=("kind", "layer", "pos"))
    meta = own.get("metadata") or {}
    check_fields(meta, "scrying.metadata", OWN_METADATA)
    if meta.get("circuit"):
        check_fields(meta["circuit"], "scrying.metadata.circuit", CIRCUIT)
    for name, value in (meta.get("scores") or {}).items():
        if not NUMBER.or_null().test(value):
            expected = NUMBER.or_null().expected
            raise InvalidInputError(f"scrying.metadata.scores: {show(name)} must be {expected}, got {show(value)}")
    if meta.get("validation"):
        check_validation(meta["validation"], "scrying.metadata.validation")
    own_ids = {n.get("node_id") for n in own["nodes"] if isinstance(n.get("node_id"), str)}
    for node_id, card in (meta.get("cards") or {}).items():
        where = f"scrying.metadata.cards[{show(node_id)}]"
        if node_id not in own_ids:
            raise InvalidInputError(f"{where} names no node of the graph (scrying.nodes[].node_id)")
        check_fields(card, where, CARD)
        check_each(card.get("contexts") or [], lambda i, w=where: f"{w}.contexts[{i}]", CONTEXT, required=tuple(CONTEXT))
        for i, c in enumerate(card.get("contexts") or []):
            if len(c["values"]) != len(c["tokens"]) or not -1 <= c["at"] < len(c["tokens"]):
                raise InvalidInputError(f"{where}.contexts[{i}]: expected as many values as tokens and 'at' the index of one of them (or -1)")
