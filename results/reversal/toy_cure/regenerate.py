"""Regenerate the toy cure experiment (issue 25, item 4): the curse, Berglund's both-directions
control and reverse training (Golovneva et al. 2024, entity-preserving reversal) on the toy model
trained from scratch, the ``default`` preset of :mod:`scrying.reversal.experiment`, seed 0
(~10 minutes on one core: ``OMP_NUM_THREADS=1 python results/reversal/toy_cure/regenerate.py``).

Trains in a temporary folder (the models are not kept) and writes ``summary.json``,
``summary.md`` and ``records-CONDITION.jsonl`` beside this script.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from scrying.reversal.experiment import experiment_preset, run_experiment

HERE = Path(__file__).resolve().parent


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = run_experiment(experiment_preset("default"), tmp)
        for path in sorted(Path(tmp).iterdir()):
            if path.is_file():
                shutil.copy(path, HERE / path.name)
    sys.stdout.write(result.text())
    sys.stdout.write(f"{time.perf_counter() - start:.0f} s\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
