"""Cost of tracing the IOI prompt on the default model, at both levels, and EAP-IG's speed-up.

Each level runs in its own process (``scrying trace``), so its wall time and peak resident
memory are its own; then ``benchmarks/eap_speed.py`` measures EAP-IG over all edges against
exact per-edge patching in one run.

    .venv/bin/python benchmarks/trace_cost.py [--skip-speedup]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When Mary and John went to the store, Mary gave a drink to"
SCRYING = [sys.executable, "-m", "scrying.cli.main"]


def run_level(level: str, out: Path) -> None:
    args = [*SCRYING, "trace", PROMPT, "--level", level, "--out", str(out / f"{level}.html")]
    if level == "components":
        args += ["--corrupt", CORRUPT]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if result.returncode:
        print(f"{level}: failed\n{result.stderr[-2000:]}")
        return
    summary = result.stdout.strip().splitlines()[-3:] if level == "neurons" else result.stdout.strip().splitlines()[-1:]
    peak_note = f"{peak / 1e6:.2f} GB" if peak > before else f"<= {peak / 1e6:.2f} GB (max over runs)"
    print(f"{level}: {seconds:.1f} s wall (model load included), peak RSS {peak_note}")
    for line in summary:
        print(f"  {line}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-speedup", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for level in ("neurons", "components"):
            run_level(level, Path(tmp))
    if not args.skip_speedup:
        print("EAP-IG vs exact per-edge patching (benchmarks/eap_speed.py):")
        subprocess.run([sys.executable, str(Path(__file__).with_name("eap_speed.py"))], check=False)


if __name__ == "__main__":
    main()
