"""Regenerate the committed head-ablation results on Gemma 3 270M (``make results``).

* ``ioi_heads_gemma.csv`` and its report ``ioi_heads_gemma.html``: ``scrying ablate`` on the
  packaged IOI prompts (32, logit difference, mean ablation, 1,000 bootstrap resamples);
* ``gemma_induction_heads.csv``: :func:`scrying.ablation.detect_heads` with its defaults (16
  repeated random-token prompts of 20 tokens, loss, mean ablation).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scrying.ablation import detect_heads
from scrying.cli.main import main as cli
from scrying.models import LoadConfig, default_cache_dir, load_model

HERE = Path(__file__).resolve().parent


def run(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ioi = Path(__file__).resolve().parents[2] / "scrying" / "data" / "ioi.jsonl"
    journal = out / "ioi_heads_gemma.effects.jsonl"
    journal.unlink(missing_ok=True)  # a fresh run, not a resume of an older one
    code = cli(["ablate", "--prompts", str(ioi), "--out", str(out / "ioi_heads_gemma.csv"), "--html", str(out / "ioi_heads_gemma.html")])
    journal.unlink(missing_ok=True)  # per-prompt effects are not committed
    if code:
        raise SystemExit(code)
    model = load_model("gemma-3-270m", LoadConfig(cache_dir=default_cache_dir()))
    detect_heads(model).to_csv(out / "gemma_induction_heads.csv", index=False)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output directory (default: beside this script)")
    run(parser.parse_args().out)
