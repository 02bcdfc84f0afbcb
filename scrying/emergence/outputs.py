"""Model outputs of a study, one line per model and item (``outputs.jsonl``), and their scores.

A line: ``{"model": "m1", "scale": 1e8, "item": "7+5", "target": "12", "output": "12",
"target_logprobs": [-0.01, -0.2]}``; optional ``"label"``, ``"choices": {"A": logprob, ...}``
(with ``target`` among its keys; used by multiple-choice grade and Brier score),
``"target_tokens"`` and ``"output_tokens"`` (token ids; token edit distance falls back to
characters without them, and per-token accuracy needs them), ``"samples"`` (outputs sampled at
temperature 1, scored as sampled exact match). Studies run on models write exactly this file, so any study can be
rescored without rerunning a model. Every error names the file and the line.

:func:`score_outputs` turns records into the tidy table ``model, label, scale, item, metric,
value, n_tokens, n_samples`` (one row per metric that the record allows; ``n_tokens`` is the
target's token count ``L``, ``n_samples`` the outputs behind the value: the sample count for
sampled exact match, else 1).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from scrying.emergence import metrics as m
from scrying.errors import InvalidInputError
from scrying.jsonl import read_jsonl


@dataclass(frozen=True)
class OutputRecord:
    model: str
    scale: float
    item: str
    target: str
    output: str
    target_logprobs: tuple[float, ...]
    label: str = ""
    choices: dict[str, float] | None = None
    target_tokens: tuple[int, ...] | None = None
    output_tokens: tuple[int, ...] | None = None
    samples: tuple[str, ...] | None = None
    target_hits: tuple[bool, ...] | None = None  # teacher-forced: each target token the argmax?
    where: str = field(default="", compare=False)

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "where" and v is not None}
        for key in ("target_logprobs", "target_tokens", "output_tokens", "samples", "target_hits"):
            if key in out:
                out[key] = list(out[key])
        if not out.get("label"):
            out.pop("label", None)
        return out


def parse_output(obj: Any, where: str) -> OutputRecord:
    """One outputs line (already parsed JSON), checked; errors name ``where``."""
    if not isinstance(obj, dict):
        raise InvalidInputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for key in ("model", "scale", "item", "target", "output", "target_logprobs"):
        if key not in obj:
            raise InvalidInputError(f"{where}: missing {key!r}")
    scale = obj["scale"]
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale < 1e308:  # also NaN, inf, huge ints
        raise InvalidInputError(f"{where}: 'scale' must be a positive number, got {scale!r}")
    for key in ("model", "target", "output"):
        if not isinstance(obj[key], str):
            raise InvalidInputError(f"{where}: {key!r} must be a string, got {obj[key]!r}")
    logprobs = obj["target_logprobs"]
    if not isinstance(logprobs, list) or not logprobs or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and v <= 0 for v in logprobs
    ):
        raise InvalidInputError(f"{where}: 'target_logprobs' must be a non-empty list of log-probabilities (<= 0), got {logprobs!r}")
    choices = obj.get("choices")
    if choices is not None:
        if not isinstance(choices, dict) or not all(isinstance(v, int | float) for v in choices.values()):
            raise InvalidInputError(f"{where}: 'choices' must map each choice to its log-probability, got {choices!r}")
        if obj["target"] not in choices:
            raise InvalidInputError(f"{where}: 'choices' {sorted(choices)!r} do not include the target {obj['target']!r}")
    tokens = {}
    for key in ("target_tokens", "output_tokens"):
        value = obj.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(t, int) for t in value)):
            raise InvalidInputError(f"{where}: {key!r} must be a list of token ids, got {value!r}")
        tokens[key] = None if value is None else tuple(value)
    samples = obj.get("samples")
    if samples is not None and not (isinstance(samples, list) and samples and all(isinstance(t, str) for t in samples)):
        raise InvalidInputError(f"{where}: 'samples' must be a non-empty list of sampled outputs (strings), got {samples!r}")
    hits = obj.get("target_hits")
    if hits is not None and not (isinstance(hits, list) and len(hits) == len(logprobs) and all(isinstance(h, bool) for h in hits)):
        raise InvalidInputError(
            f"{where}: 'target_hits' must be one true/false per target token ({len(logprobs)}), got {hits!r}"
        )
    return OutputRecord(
        model=obj["model"], scale=float(scale), item=str(obj["item"]), target=obj["target"], output=obj["output"],
        target_logprobs=tuple(float(v) for v in logprobs), label=str(obj.get("label", "")),
        choices=None if choices is None else {str(k): float(v) for k, v in choices.items()},
        target_tokens=tokens["target_tokens"], output_tokens=tokens["output_tokens"],
        samples=None if samples is None else tuple(samples),
        target_hits=None if hits is None else tuple(hits), where=where,
    )


def read_outputs(path: Path | str) -> list[OutputRecord]:
    """The records of an outputs file, checked line by line; at least one."""
    path = Path(path)
    records = [parse_output(obj, where) for obj, where in read_jsonl(path, what="outputs file")]
    if not records:
        raise InvalidInputError(f"outputs file {str(path)!r} has no lines")
    check_family(records)
    return records


def check_family(records: list[OutputRecord]) -> None:
    """At least two models, one scale each, distinct scales, no item twice for a model."""
    scales: dict[str, float] = {}
    seen: set[tuple[str, str]] = set()
    for r in records:
        if r.model in scales and scales[r.model] != r.scale:
            raise InvalidInputError(f"{r.where}: model {r.model!r} has scale {r.scale:g} here and {scales[r.model]:g} before")
        scales[r.model] = r.scale
        if (r.model, r.item) in seen:
            raise InvalidInputError(f"{r.where}: item {r.item!r} of model {r.model!r} appears twice")
        seen.add((r.model, r.item))
    if len(scales) < 2:
        raise InvalidInputError(f"an emergence study needs at least 2 models of different scales; got {len(scales)} ({', '.join(scales)})")
    by_scale: dict[float, str] = {}
    for model, scale in scales.items():
        if scale in by_scale:
            raise InvalidInputError(f"models {by_scale[scale]!r} and {model!r} have the same scale {scale:g}; scales must differ")
        by_scale[scale] = model


def write_outputs(records: list[OutputRecord], path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r.to_json()) + "\n" for r in records), encoding="utf-8")
    return path


def score_outputs(records: list[OutputRecord]) -> pd.DataFrame:
    """Tidy scores: one row per record and metric it allows (choices metrics need choices,
    per-token accuracy tokens, per-token argmax accuracy argmax flags, sampled exact match
    samples). Argmax flags count only when every record has them (a journal resumed from an
    older version may mix records with and without)."""
    with_hits = all(r.target_hits is not None for r in records)
    rows = []
    for r in records:
        values = {
            "exact_match": m.exact_match(r.output, r.target),
            "token_edit_distance": m.token_edit_distance(
                r.output_tokens if r.output_tokens is not None and r.target_tokens is not None else r.output.strip(),
                r.target_tokens if r.output_tokens is not None and r.target_tokens is not None else r.target.strip(),
            ),
            "per_token_probability": m.per_token_probability(r.target_logprobs),
            "target_log_likelihood": m.target_log_likelihood(r.target_logprobs),
            "predicted_accuracy": m.predicted_accuracy(r.target_logprobs),
        }
        if r.choices is not None:
            values["multiple_choice_grade"] = m.multiple_choice_grade(r.choices, r.target)
            values["brier_score"] = m.brier_score(r.choices, r.target)
        if r.target_tokens is not None and r.output_tokens is not None:
            values["per_token_accuracy"] = m.per_token_accuracy(r.output_tokens, r.target_tokens)
        if with_hits and r.target_hits is not None:
            values["per_token_argmax_accuracy"] = m.per_token_argmax_accuracy(r.target_hits)
        if r.samples is not None:
            values["sampled_exact_match"] = m.sampled_exact_match(r.samples, r.target)
        for name, value in values.items():
            rows.append({"model": r.model, "label": r.label or r.model, "scale": r.scale, "item": r.item, "metric": name,
                         "value": value, "n_tokens": len(r.target_logprobs),
                         "n_samples": len(r.samples) if name == "sampled_exact_match" and r.samples else 1})
    return pd.DataFrame(rows, columns=list(SCORE_COLUMNS))


SCORE_COLUMNS = ("model", "label", "scale", "item", "metric", "value", "n_tokens", "n_samples")
