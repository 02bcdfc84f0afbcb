"""Each model of the validation's unfreezing against the real one, for a transcoder set's three
gallery feature graphs (traced and validated as ``scrying trace`` does: 200 features, 100 nodes):

    .venv/bin/python results/transcoders/local-response/stages_of_a_set.py --transcoders DIR > OUT.txt

One line per prompt: ``id: stage spearman [low, high], ...`` (``stages_vs_real``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transcoders", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from scrying.attribution.trace import trace
    from scrying.models import load_model
    from scrying.transcoders import TranscoderBasis, read_transcoders
    from scrying.transcoders.graph_summary import stages_vs_real

    model = load_model("gemma-3-270m")
    basis = TranscoderBasis(read_transcoders(args.transcoders))
    for line in (ROOT / "graphs" / "gallery-features.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        result = trace(model, item["prompt"], basis=basis, cards=False, model_name="gemma-3-270m")
        stages = stages_vs_real({"validation": result.validation.to_json()})
        cells = ", ".join(f"{name} {v['spearman']:.3f} [{v['low']:.3f}, {v['high']:.3f}]" for name, v in stages.items())
        sys.stdout.write(f"{item['id']}: {cells}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
