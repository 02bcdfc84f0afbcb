"""Reference points: real models scored on the study's items, drawn beside a family's curves.

A toy family trained here spans a narrow compute range; where real models stand on the same task
is context a reader needs, not a member of the family (their training differs in kind, so they
never enter the breakthroughness or the verdict). A references file has the family format
(``[{"model": spec, "scale": number, "label": ...}]``, one entry is enough), its scale on the
family's axis (for the toy presets: training compute ``6 N D``).

Phases of :func:`score_references`: each reference not yet in the study's journal is loaded and
scored on the same items (:func:`~scrying.emergence.item_scoring.score_items`) and appended to the
journal under the key ``"reference:" + spec``; a reference whose model is not installed (a
:class:`~scrying.errors.ModelLoadError`) is skipped with a warning and named in the result.
:func:`reference_curves` gives each reference's mean per metric with a bootstrap interval over
items (:func:`scrying.stats.interval`, the same resampling as the family's curves).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pandas as pd
import torch

from scrying.axes import Float, Model, Tensor
from scrying.emergence.item_scoring import ScoringConfig, score_items
from scrying.emergence.metrics import METRICS
from scrying.emergence.outputs import OutputRecord, parse_output
from scrying.emergence.study import Member, records_of
from scrying.emergence.tasks import Item
from scrying.errors import ModelLoadError
from scrying.journal import Journal, model_fingerprint
from scrying.stats import BootstrapConfig, interval

logger = logging.getLogger(__name__)
PREFIX = "reference:"


def score_references(
    references: list[Member],
    items: list[Item],
    journal: Journal,
    load: Callable[[str], Model],
    config: ScoringConfig,
) -> tuple[list[OutputRecord], list[str]]:
    """The references' output records (from the journal or by scoring), and the specs skipped
    because their model could not be loaded."""
    skipped = []
    for member in references:
        key = PREFIX + member.model
        if key in journal.done:
            continue
        try:
            model = load(member.model)
        except ModelLoadError as err:
            logger.warning("reference %s skipped: %s", member.model, err)
            skipped.append(member.model)
            continue
        records = records_of(member, score_items(model, items, config))
        journal.append({"model": key, "model_fingerprint": model_fingerprint(model),
                        "records": [r.to_json() for r in records]})
    out = []
    for member in references:
        key = PREFIX + member.model
        if key in journal.done:
            out += [parse_output(r, f"{journal.path.name} record of {key}") for r in journal.done[key]["records"]]
    return out, skipped


def reference_curves(scores: pd.DataFrame, bootstrap: BootstrapConfig) -> pd.DataFrame:
    """Per reference model and metric: mean over items and its bootstrap interval (columns
    metric, model, label, scale, mean, ci_low, ci_high, n_items)."""
    rows = []
    for (model, metric), part in scores.groupby(["model", "metric"], sort=False):
        if metric not in METRICS:
            continue
        values: Float[Tensor, " item"] = torch.tensor(part["value"].to_numpy(dtype=float))
        low, high = interval(values, bootstrap)
        rows.append({"metric": metric, "model": model, "label": part["label"].iloc[0], "scale": part["scale"].iloc[0],
                     "mean": float(values.mean()), "ci_low": float(low), "ci_high": float(high), "n_items": len(part)})
    return pd.DataFrame(rows, columns=["metric", "model", "label", "scale", "mean", "ci_low", "ci_high", "n_items"])
