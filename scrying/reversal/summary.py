"""Per relation and direction: accuracies with bootstrap intervals, and the paired test of
forward against reverse over the same pairs.

For each relation (and ``all``), from the per-pair records of :mod:`scrying.reversal.pair_scoring`:

* ``exact``: greedy exact match (of any right answer where the relation declares several);
  ``top1``: the best right answer outranks every random distractor (rank 1); ``top1_hard``: it
  outranks every hard distractor (:func:`scrying.reversal.pairs.hard_distractors`; NaN for results written
  before hard negatives); ``mean_logprob``: the pair's own answer's per-token mean
  log-probability; ``chance``: the mean of ``n_right / n_candidates`` (top-1 accuracy of a scorer
  that guesses; the hard set has as many candidates).
* each as a mean over pairs with a percentile-bootstrap interval (:func:`scrying.stats.interval`),
  and forward minus reverse with :func:`scrying.stats.paired_difference` (bootstrap interval of
  the mean difference, two-sided sign-flip permutation p-value).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import torch

from scrying.reversal.pairs import Direction
from scrying.reversal.records import PairRecord
from scrying.stats import BootstrapConfig, interval, paired_difference

MEASURES = ("exact", "top1", "top1_hard", "mean_logprob")


def known_one_way(records: list[PairRecord]) -> list[int]:
    """Positions of the records known forward (top-1 among candidates) and not in reverse: the
    pairs the lens, causal tracing, graphs and the report look at."""
    return [i for i, r in enumerate(records) if r.forward.rank == 1 and r.reverse.rank > 1]


def _values(records: list[PairRecord], direction: Direction, measure: str) -> list[float]:
    part = [r.direction(direction) for r in records]
    if measure == "top1":
        return [float(p.rank == 1) for p in part]
    if measure == "top1_hard":
        return [math.nan if p.hard_rank is None else float(p.hard_rank == 1) for p in part]
    return [float(getattr(p, measure)) for p in part]


def _mean_interval(values: list[float], config: BootstrapConfig) -> tuple[float, float, float]:
    tensor = torch.tensor(values, dtype=torch.float64)
    if tensor.isnan().any():
        return math.nan, math.nan, math.nan
    low, high = interval(tensor, config)
    return float(tensor.mean()), float(low), float(high)


def summary_row(relation: str, records: list[PairRecord], config: BootstrapConfig) -> dict[str, Any]:
    """One relation's row: ``n``, then per measure ``forward_M``, ``reverse_M`` (with ``_low``
    and ``_high``), ``diff_M`` (forward minus reverse, with interval) and ``p_M``."""
    row: dict[str, Any] = {"relation": relation, "n": len(records)}
    for measure in MEASURES:
        for direction in ("forward", "reverse"):
            mean, low, high = _mean_interval(_values(records, direction, measure), config)
            row.update({f"{direction}_{measure}": mean, f"{direction}_{measure}_low": low, f"{direction}_{measure}_high": high})
        unscored = any(math.isnan(v) for v in _values(records, "forward", measure))
        if len(records) >= 2 and not unscored:
            test = paired_difference(_values(records, "forward", measure), _values(records, "reverse", measure), config)
            d = test.difference
            row.update({f"diff_{measure}": d.value, f"diff_{measure}_low": d.ci_low, f"diff_{measure}_high": d.ci_high,
                        f"p_{measure}": test.p_value})
        else:
            row.update({f"diff_{measure}": math.nan, f"diff_{measure}_low": math.nan, f"diff_{measure}_high": math.nan,
                        f"p_{measure}": math.nan})
    for direction in ("forward", "reverse"):
        part = [r.direction(direction) for r in records]
        row[f"{direction}_chance"] = sum(p.n_right / p.n_candidates for p in part) / len(records)
    return row


def summarize(records: list[PairRecord], config: BootstrapConfig | None = None) -> pd.DataFrame:
    """One row per relation (in first-seen order) and a last row ``all``."""
    config = config or BootstrapConfig()
    relations = list(dict.fromkeys(r.relation for r in records))
    rows = [summary_row(rel, [r for r in records if r.relation == rel], config) for rel in relations]
    if len(relations) > 1:
        rows.append(summary_row("all", records, config))
    return pd.DataFrame(rows)


def interval_cell(row: Any, key: str) -> str:
    """``row[key]`` with its 95% interval (``key_low``, ``key_high``): ``0.65 [0.55, 0.75]``."""
    return f"{row[key]:.2f} [{row[key + '_low']:.2f}, {row[key + '_high']:.2f}]"


def markdown_table(table: pd.DataFrame) -> str:
    """The summary as a Markdown table: accuracies with 95% intervals, paired differences and
    p-values, top-1 among the random and among the hard distractors, chance (top-1, either set)."""
    lines = [
        "| relation | pairs | exact forward | exact reverse | exact fwd − rev (p) | top-1 random forward | "
        "top-1 random reverse | top-1 random fwd − rev (p) | top-1 hard forward | top-1 hard reverse | "
        "top-1 hard fwd − rev (p) | top-1 chance |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, row in table.iterrows():
        lines.append(
            f"| {row.relation} | {row.n} | {interval_cell(row, 'forward_exact')} | {interval_cell(row, 'reverse_exact')} | "
            f"{interval_cell(row, 'diff_exact')} (p={row.p_exact:.3g}) | {interval_cell(row, 'forward_top1')} | {interval_cell(row, 'reverse_top1')} | "
            f"{interval_cell(row, 'diff_top1')} (p={row.p_top1:.3g}) | {interval_cell(row, 'forward_top1_hard')} | "
            f"{interval_cell(row, 'reverse_top1_hard')} | {interval_cell(row, 'diff_top1_hard')} (p={row.p_top1_hard:.3g}) | "
            f"{row.forward_chance:.3f} / {row.reverse_chance:.3f} |"
        )
    return "\n".join(lines) + "\n"


def text_table(table: pd.DataFrame) -> str:
    """A compact plain-text summary for the terminal."""
    lines = [f"{'relation':<18} {'n':>4}  {'exact fwd':>9} {'exact rev':>9} {'p':>7}  {'top1 fwd':>8} {'top1 rev':>8} {'p':>7}"
             f"  {'hard fwd':>8} {'hard rev':>8} {'p':>7}"]
    for _, r in table.iterrows():
        lines.append(f"{r.relation:<18} {r.n:>4}  {r.forward_exact:>9.2f} {r.reverse_exact:>9.2f} {r.p_exact:>7.3g}  "
                     f"{r.forward_top1:>8.2f} {r.reverse_top1:>8.2f} {r.p_top1:>7.3g}  "
                     f"{r.forward_top1_hard:>8.2f} {r.reverse_top1_hard:>8.2f} {r.p_top1_hard:>7.3g}")
    return "\n".join(lines) + "\n"
