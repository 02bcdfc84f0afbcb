"""Regenerate the reversal probe across sizes (issue 25, item 6): the shipped relations, every 4th
pair of each (83 of 332, as the README's Gemma table), on every model of the shipped ``real``
family (SmolLM2-135M-Instruct, Gemma 3 270M, Qwen2.5-Coder-0.5B- and 1.5B-Instruct), each into
``MODEL.jsonl`` beside this script, then the tables across sizes.

``OMP_NUM_THREADS=1 python results/reversal/sizes/regenerate.py`` runs, per member,
``scrying reversal --pairs packaged --every 4 -m MODEL --out results/reversal/sizes/MODEL.jsonl``
(each a resumable journal: a finished member costs only its model load), skipping a member that
is not installed (``scrying models`` says how to install it) with a warning; ``--summary-only``
only rebuilds the tables from the stored journals. Writes ``summary.json`` (the rows of
:func:`scrying.reversal.sizes.size_table`, the missing members and the seconds each member took
in this call) and ``summary.md`` (:func:`~scrying.reversal.sizes.pooled_markdown` and
:func:`~scrying.reversal.sizes.gap_markdown`).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import torch

from scrying.models.loading import default_cache_dir
from scrying.models.registry import REGISTRY, availability
from scrying.reversal.run import ProbeJobConfig, run_probe_job
from scrying.reversal.sizes import (
    family_members,
    gap_markdown,
    pooled_markdown,
    results_path,
    size_table,
)

HERE = Path(__file__).resolve().parent
EVERY = 4

logger = logging.getLogger("regenerate")


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)
    members = family_members()
    seconds: dict[str, float] = {}
    if "--summary-only" not in argv:
        for member in members:
            status = availability(REGISTRY[member.model], default_cache_dir())
            if status.startswith("not installed"):
                logger.warning("%s: %s; skipped", member.model, status)
                continue
            start = time.perf_counter()
            run_probe_job(ProbeJobConfig(pairs=("packaged",), model=member.model, out=results_path(HERE, member.model), every=EVERY))
            seconds[member.model] = round(time.perf_counter() - start)
    table, missing = size_table(HERE, members)
    out = {"schema_version": 1, "every": EVERY, "missing": missing, "seconds_this_call": seconds,
           "rows": json.loads(table.to_json(orient="records"))}
    (HERE / "summary.json").write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    text = pooled_markdown(table) + "\n" + gap_markdown(table)
    (HERE / "summary.md").write_text(text, encoding="utf-8")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
