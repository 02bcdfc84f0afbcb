"""Across sizes: the same probe on every real model of a family, and how each direction and the
gap between them change with parameters (issue 25, item 6).

Phases of :func:`size_table`:

1. **Members**: a family file (``scrying/data/families/real.json`` by default, the emergence
   study's real models: SmolLM2-135M-Instruct, Gemma 3 270M, Qwen2.5-Coder-0.5B- and 1.5B-Instruct,
   with parameter counts from their model cards), in its order; one results file per member
   (``DIR/MODEL.jsonl``, written by ``scrying reversal --pairs packaged -m MODEL --out ...``,
   resumable). A member without results is listed as missing, never silently dropped.
2. **Summaries**: each member's records through :func:`scrying.reversal.summary.summarize`
   (per relation and ``all``: accuracies with bootstrap intervals, forward minus reverse with
   its interval and sign-flip p-value), one row per member and relation, with ``model``,
   ``label`` and ``params``.
3. **Same pairs**: every member must have scored the same pairs (indices and facts), so that the
   rows differ by model only; a mismatch is an error naming both files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

from scrying.errors import InvalidInputError
from scrying.reversal.records import PairRecord, read_results
from scrying.reversal.summary import interval_cell, summarize
from scrying.stats import BootstrapConfig


@dataclass(frozen=True)
class SizeMember:
    """One model of the family: its spec, a display label and its parameter count."""

    model: str
    label: str
    params: float


def family_members(path: Path | str | None = None) -> list[SizeMember]:
    """The members of a family file (``None``: the shipped ``real`` family), in file order."""
    source = Path(path) if path is not None else Path(str(resources.files("scrying.data").joinpath("families", "real.json")))
    try:
        entries = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InvalidInputError(f"cannot read family file {str(source)!r}: {err}") from err
    if not isinstance(entries, list) or not entries:
        raise InvalidInputError(f"family file {str(source)!r}: expected a non-empty JSON list of {{model, scale}} objects")
    members = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("model"), str) or not isinstance(entry.get("scale"), int | float):
            raise InvalidInputError(f"family file {str(source)!r} entry {i}: expected {{\"model\": str, \"scale\": number}}, got {entry!r}")
        members.append(SizeMember(entry["model"], str(entry.get("label", entry["model"])), float(entry["scale"])))
    return members


def results_path(directory: Path | str, model: str) -> Path:
    """Where a member's results file lives: ``DIRECTORY/MODEL.jsonl``."""
    return Path(directory) / f"{model}.jsonl"


def _facts(records: list[PairRecord]) -> list[tuple[int, str, str, str]]:
    return [(r.index, r.relation, r.a, r.b) for r in records]


def size_table(directory: Path | str, members: list[SizeMember], config: BootstrapConfig | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Per member with results and per relation (then ``all``): its summary row with ``model``,
    ``label`` and ``params`` in front; and the members without a results file."""
    config = config or BootstrapConfig()
    frames, missing = [], []
    reference: tuple[Path, list[tuple[int, str, str, str]]] | None = None
    for member in members:
        path = results_path(directory, member.model)
        if not path.exists():
            missing.append(member.model)
            continue
        records = read_results(path)
        facts = _facts(records)
        if reference is None:
            reference = (path, facts)
        elif facts != reference[1]:
            small, large = sorted([(path, facts), reference], key=lambda x: len(x[1]))
            if set(small[1]) < set(large[1]):
                raise InvalidInputError(f"{small[0].name} holds {len(small[1])} of the {len(large[1])} pairs {large[0].name} scored: "
                                        "unfinished (rerun its command to resume)")
            raise InvalidInputError(f"{path.name} and {reference[0].name} scored different pairs; rerun both with the same --pairs and --every")
        summary = summarize(records, config)
        summary.insert(0, "params", member.params)
        summary.insert(0, "label", member.label)
        summary.insert(0, "model", member.model)
        frames.append(summary)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return table, missing


def _params(value: float) -> str:
    return f"{value / 1e9:.2f}B" if value >= 1e9 else f"{value / 1e6:.0f}M"


def pooled_markdown(table: pd.DataFrame) -> str:
    """The ``all`` rows, one per model by size: exact match and top-1 among random and hard
    distractors per direction, and the hard set's forward minus reverse with its p-value."""
    lines = ["| model | params | pairs | exact forward | exact reverse | top-1 random forward | top-1 random reverse | "
             "top-1 hard forward | top-1 hard reverse | top-1 hard fwd − rev (p) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for _, row in table[table.relation == "all"].sort_values("params", kind="stable").iterrows():
        lines.append(f"| {row.label} | {_params(row.params)} | {row.n} | {interval_cell(row, 'forward_exact')} | {interval_cell(row, 'reverse_exact')} | "
                     f"{interval_cell(row, 'forward_top1')} | {interval_cell(row, 'reverse_top1')} | {interval_cell(row, 'forward_top1_hard')} | "
                     f"{interval_cell(row, 'reverse_top1_hard')} | {interval_cell(row, 'diff_top1_hard')} (p={row.p_top1_hard:.3g}) |")
    return "\n".join(lines) + "\n"


def gap_markdown(table: pd.DataFrame) -> str:
    """Per relation (rows) and model (columns, by size): top-1 among hard distractors, forward /
    reverse, and the p-value of their difference."""
    models = table[table.relation == "all"].sort_values("params", kind="stable")
    labels = list(models.label)
    lines = ["| relation | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for relation in dict.fromkeys(table.relation):
        cells = []
        for label in labels:
            row = table[(table.label == label) & (table.relation == relation)].iloc[0]
            cells.append(f"{row.forward_top1_hard:.2f} / {row.reverse_top1_hard:.2f} (p={row.p_top1_hard:.2g})")
        lines.append(f"| {relation} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def size_figure(table: pd.DataFrame):
    """Top-1 among hard distractors against parameters (log axis), one panel per relation, a
    line per direction with its 95% interval as error bars."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    relations = list(dict.fromkeys(table.relation))
    fig = make_subplots(rows=1, cols=len(relations), subplot_titles=relations, shared_yaxes=True)
    colours = {"forward": "#1f77b4", "reverse": "#d62728"}
    for col, relation in enumerate(relations, start=1):
        part = table[table.relation == relation].sort_values("params", kind="stable")
        for direction in ("forward", "reverse"):
            key = f"{direction}_top1_hard"
            fig.add_trace(go.Scatter(
                x=part.params, y=part[key], mode="lines+markers", name=direction, legendgroup=direction, showlegend=col == 1,
                line={"color": colours[direction]}, text=part.label,
                error_y={"type": "data", "symmetric": False, "array": part[key + "_high"] - part[key],
                         "arrayminus": part[key] - part[key + "_low"]},
            ), row=1, col=col)
        fig.update_xaxes(type="log", title_text="parameters", row=1, col=col)
    fig.update_yaxes(title_text="top-1 among hard distractors", range=[0, 1.05], row=1, col=1)
    fig.update_layout(height=360, width=260 * len(relations), title="Reversal across sizes (shipped relations)")
    return fig
