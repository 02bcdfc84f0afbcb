"""Load time of the default model: first (conversion) and second (cached) load.

Run: .venv/bin/python benchmarks/load_time.py [--fresh]
``--fresh`` converts into a temporary cache first (about a minute), so both loads are measured
in this run; without it the first load is whatever the user cache holds.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch

from scrying.models import LoadConfig, default_cache_dir, load_model


def timed_load(cache: Path) -> float:
    start = time.perf_counter()
    model = load_model("gemma-3-270m", LoadConfig(cache_dir=cache))
    elapsed = time.perf_counter() - start
    with torch.no_grad():
        model(model.to_tokens("warm up"))
    del model
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args()
    import_start = time.perf_counter()
    import transformer_lens.model_bridge  # noqa: F401  (import cost, reported separately)

    print(f"import transformer_lens: {time.perf_counter() - import_start:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) if args.fresh else default_cache_dir()
        first = timed_load(cache)
        print(f"first load ({'fresh conversion' if args.fresh else 'user cache'}): {first:.1f} s")
        second = timed_load(cache)
        print(f"second load (cached safetensors): {second:.1f} s  (target <= 15 s)")
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"peak RSS: {peak_gb:.2f} GB")


if __name__ == "__main__":
    main()
