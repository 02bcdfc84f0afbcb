"""Cost of tracing the IOI prompt on the default model, at both levels, and EAP-IG's speed-up.

Each level runs in its own process (``scrying trace``), so its wall time and peak resident
memory are its own; then ``benchmarks/eap_speed.py`` measures EAP-IG over all edges against
exact per-edge patching in one run.

    .venv/bin/python benchmarks/trace_cost.py [--skip-speedup]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When Mary and John went to the store, Mary gave a drink to"
# The child reports its own peak resident memory when the command returns.
SCRYING = [
    sys.executable,
    "-c",
    "import resource, sys\n"
    "from scrying.cli.main import main\n"
    "code = main(sys.argv[1:])\n"
    "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    "sys.exit(code)",
]


def run_level(level: str, out: Path) -> None:
    args = [*SCRYING, "trace", PROMPT, "--level", level, "--out", str(out / f"{level}.html")]
    if level == "components":
        args += ["--corrupt", CORRUPT]
    start = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode:
        print(f"{level}: failed\n{result.stderr[-2000:]}")
        return
    lines = result.stdout.strip().splitlines()
    peak_kb = int(lines[-1].split()[1])
    print(f"{level}: {seconds:.1f} s wall (model load included), peak RSS {peak_kb / 1e6:.2f} GB")
    for line in lines[:-1]:
        if not line.startswith("wrote"):
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
