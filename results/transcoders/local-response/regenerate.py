"""The local-response error per layer (scrying.transcoders.local_response) of recipe-trained
transcoder sets on Gemma 3 270M, beside the neuron basis's, on the mix's held-out text.

    .venv/bin/python results/transcoders/local-response/regenerate.py --set NAME=DIR [--set NAME=DIR ...]

Writes ``NAME.csv`` (directions along earlier layers' active features' decoder rows, the default)
and ``NAME-data.csv`` (directions along differences of the MLP's inputs) here for each set
(skipped when it exists; delete it to redo): 64 held-out windows of 128 tokens,
:class:`~scrying.transcoders.local_response.LocalResponseConfig`'s defaults otherwise (256 rows
per layer, 8 directions per row).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", required=True, help="NAME=DIR of a transcoder set")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    from scrying.models import default_cache_dir, load_model
    from scrying.transcoders import read_transcoders
    from scrying.transcoders.corpus import read_texts
    from scrying.transcoders.corpus_mix import CorpusMixConfig, build_mixed_corpus
    from scrying.transcoders.local_response import LocalResponseConfig, local_response_report
    from scrying.transcoders.train import first_windows

    model = load_model("gemma-3-270m")
    mix = build_mixed_corpus(Path(os.environ.get("SCRYING_CACHE_DIR") or default_cache_dir()), CorpusMixConfig())
    windows = first_windows(model, read_texts([mix.heldout]), 128, 64, what=str(mix.heldout))
    for item in args.set:
        name, _, directory = item.partition("=")
        for source, out in (("decoder", HERE / f"{name}.csv"), ("data", HERE / f"{name}-data.csv")):
            if out.exists():
                continue
            started = time.perf_counter()
            report = local_response_report(model, read_transcoders(Path(directory)), windows, LocalResponseConfig(directions_from=source))
            report.to_csv(out, index=False)
            logging.info("%s, %s directions: %.0f s, wrote %s", name, source, time.perf_counter() - started, out)


if __name__ == "__main__":
    main()
