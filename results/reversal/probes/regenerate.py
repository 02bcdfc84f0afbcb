"""Regenerate the linear probes of where each direction is stored (issue 25, item 5) on the
default model, Gemma 3 270M, over every pair of the shipped relations
(``OMP_NUM_THREADS=1 python results/reversal/probes/regenerate.py``; a few minutes on one core).

:func:`scrying.reversal.linear_probes.probe_table` with the default
:class:`~scrying.reversal.linear_probes.LinearProbeConfig` (5 folds by pair, seed 0). Writes
beside this script ``probes.json`` (the settings, the per-pair table and the summary per relation,
direction and layer) and ``summary.md`` (the plain-text table of the pooled relations), and
rewrites ``results/reversal/report.html`` from the stored probe results with this section added.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import torch

from scrying.journal import model_identity
from scrying.models import LoadConfig, load_model
from scrying.reversal.linear_probes import LinearProbeConfig, probe_summary, probe_table
from scrying.reversal.probe import read_pair_files
from scrying.reversal.records import read_results
from scrying.reversal.relations import packaged_relation_files
from scrying.reversal.report import probe_text_table, write_report
from scrying.reversal.summary import summarize

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent
MODEL = "gemma-3-270m"


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)
    start = time.perf_counter()
    config = LinearProbeConfig()
    pairs = read_pair_files(packaged_relation_files())
    model = load_model(MODEL, LoadConfig())
    table = probe_table(model, pairs, config)
    summary = probe_summary(table, config.bootstrap)
    seconds = time.perf_counter() - start
    out = {
        "schema_version": 1,
        "settings": {**model_identity(MODEL, model), **config.settings(), "n_pairs": len(pairs),
                     "pairs": "packaged", "seconds": round(seconds)},
        "table": table.to_dict(orient="list"),
        "summary": summary.to_dict(orient="records"),
    }
    (HERE / "probes.json").write_text(json.dumps(out, indent=None) + "\n", encoding="utf-8")
    (HERE / "summary.md").write_text(probe_text_table(summary), encoding="utf-8")
    records = read_results(RESULTS / "results.jsonl")
    write_report(summarize(records), records, RESULTS / "report.html", title=f"Reversal-curse probe: {MODEL}",
                 probes=summary)
    sys.stdout.write(probe_text_table(summary))
    sys.stdout.write(f"{seconds:.0f} s\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
