"""What a reader did to a graph page: pinned nodes, supernodes, the clicked node, thresholds.

The fields and their spelling are circuit-tracer's ``qParams`` (``frontend/graph_models.py``:
``pinnedIds``, ``supernodes`` as ``[name, node_id, ...]`` lists, ``linkType``, ``clickedId``,
``sg_pos``; its viewer also reads ``pruningThreshold`` from the URL), so a state saved by scrying's
page, put in a graph JSON's ``qParams`` or in circuit-tracer's URL, opens the same subgraph there.
``edgeThreshold`` is scrying's own (circuit-tracer has no edge slider; it ignores the key).

In the page the state lives in the URL fragment, written as circuit-tracer writes its query
string: ``#pinnedIds=a,b&supernodes=[["name","a","b"]]&clickedId=a&pruningThreshold=0.8``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from scrying.errors import ConfigError, InvalidInputError
from scrying.viewer.schema import is_number, read_json_file, show


@dataclass(frozen=True, kw_only=True)
class ViewState:
    """A page's view state; ``None`` thresholds mean the page's defaults."""

    pinned_ids: tuple[str, ...] = ()
    supernodes: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (name, member node_ids)
    clicked_id: str = ""
    node_threshold: float | None = None
    edge_threshold: float | None = None
    link_type: str = "both"
    sg_pos: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # other qParams, kept as read

    def __post_init__(self) -> None:
        for name in ("node_threshold", "edge_threshold"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"ViewState.{name} must be in [0, 1] or None, got {value}")
        for name, members in self.supernodes:
            if not members:
                raise ConfigError(f"ViewState.supernodes: supernode {name!r} has no members")

    def to_qparams(self) -> dict[str, Any]:
        """circuit-tracer's ``qParams`` dict (plus the thresholds when set)."""
        out: dict[str, Any] = {
            **self.extra,
            "pinnedIds": list(self.pinned_ids),
            "supernodes": [[name, *members] for name, members in self.supernodes],
            "linkType": self.link_type,
            "clickedId": self.clicked_id,
            "sg_pos": self.sg_pos,
        }
        if self.node_threshold is not None:
            out["pruningThreshold"] = self.node_threshold
        if self.edge_threshold is not None:
            out["edgeThreshold"] = self.edge_threshold
        return out

    @classmethod
    def from_qparams(cls, q: Any) -> ViewState:
        """Read a ``qParams`` dict as circuit-tracer's viewer does: ``pinnedIds`` a list or a
        comma-separated string, ``supernodes`` a list or its JSON text; anything else is an
        :class:`InvalidInputError` naming the field."""
        if not isinstance(q, dict):
            raise InvalidInputError(f"qParams must be a JSON object, got {type(q).__name__}")
        pinned = q.get("pinnedIds")
        if pinned is None or isinstance(pinned, str):
            pinned = [p for p in (pinned or "").split(",") if p]
        groups = q.get("supernodes")
        if groups is None or isinstance(groups, str):
            try:
                groups = json.loads(groups) if groups else []
            except (ValueError, RecursionError) as err:
                raise InvalidInputError(f"qParams supernodes is not JSON: {show(groups)}") from err
        if not isinstance(pinned, list) or not all(isinstance(p, str) for p in pinned):
            raise InvalidInputError(f"qParams pinnedIds must be node ids, got {show(pinned)}")
        if not isinstance(groups, list) or not all(
            isinstance(g, list) and len(g) >= 2 and all(isinstance(m, str) for m in g) for g in groups
        ):
            raise InvalidInputError(f"qParams supernodes must be [name, node_id, ...] lists, got {show(groups)}")
        known = {"pinnedIds", "supernodes", "clickedId", "linkType", "sg_pos", "pruningThreshold", "edgeThreshold"}
        return cls(
            pinned_ids=tuple(pinned),
            supernodes=tuple((g[0], tuple(g[1:])) for g in groups),
            clicked_id=_text(q.get("clickedId"), "clickedId", ""),
            node_threshold=_number(q.get("pruningThreshold"), "pruningThreshold"),
            edge_threshold=_number(q.get("edgeThreshold"), "edgeThreshold"),
            link_type=_text(q.get("linkType"), "linkType", "both"),
            sg_pos=_text(q.get("sg_pos"), "sg_pos", ""),
            extra={k: v for k, v in q.items() if k not in known},
        )

    def to_fragment(self) -> str:
        """The URL fragment (without ``#``) the page writes for this state."""
        q = self.to_qparams()
        pairs = []
        if q["pinnedIds"]:
            pairs.append(("pinnedIds", ",".join(q["pinnedIds"])))
        if q["supernodes"]:
            pairs.append(("supernodes", json.dumps(q["supernodes"], separators=(",", ":"), ensure_ascii=False)))
        if q["clickedId"]:
            pairs.append(("clickedId", q["clickedId"]))
        for key in ("pruningThreshold", "edgeThreshold"):
            if key in q:
                pairs.append((key, str(q[key])))
        return urlencode(pairs)

    @classmethod
    def from_fragment(cls, fragment: str) -> ViewState:
        """The state in a page URL's fragment (or a circuit-tracer URL's query string)."""
        text = fragment.split("#", 1)[1] if "#" in fragment else fragment.split("?", 1)[-1]
        return cls.from_qparams(dict(parse_qsl(text, keep_blank_values=True)))


def _number(value: Any, name: str) -> float | None:
    """A threshold: a number, or its text as a URL carries it; ``None`` or ``""`` if unset."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError as err:
            raise InvalidInputError(f"qParams {name} must be a number, got {show(value)}") from err
    if not is_number(value):
        raise InvalidInputError(f"qParams {name} must be a number, got {show(value)}")
    return float(value)


def _text(value: Any, name: str, default: str) -> str:
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise InvalidInputError(f"qParams {name} must be a string, got {show(value)}")
    return value


def read_state(path: str | Path) -> ViewState:
    """A state exported by the page (``{"qParams": {...}}``), a graph JSON (its ``qParams``) or
    a bare ``qParams`` object; anything else is an :class:`InvalidInputError` naming the file."""
    data = read_json_file(path)
    if isinstance(data, dict) and "qParams" in data:
        data = data["qParams"]
    try:
        return ViewState.from_qparams(data)
    except InvalidInputError as err:
        raise InvalidInputError(f"{str(path)!r}: {err}") from err


def with_state(graph_json: dict[str, Any], state: ViewState) -> dict[str, Any]:
    """A copy of a graph JSON whose ``qParams`` hold ``state`` (what circuit-tracer's viewer
    opens with); node ids the graph lacks are an error."""
    ids = {n["node_id"] for n in graph_json.get("nodes", [])}
    named = set(state.pinned_ids) | {m for _, members in state.supernodes for m in members}
    named |= {state.clicked_id} if state.clicked_id else set()
    missing = sorted(named - ids)
    if missing:
        raise InvalidInputError(f"the state names nodes the graph does not have: {missing[:5]}")
    return {**graph_json, "qParams": state.to_qparams()}
