"""Store a finished training run's record beside its results: its history, log lines and clock.

    .venv/bin/python results/transcoders/gemma-3-270m-recipe/store_run.py --set DIR --log LOG \
        --out FOLDER --started 2026-12-07T11:52:09 [--event NAME=TIME ...]

* ``history.json``: the run's config, chunks done and per-chunk history (MSE, AuxK, dead fraction
  per layer; harvest and training seconds), read from the progress its checkpoint carries in its
  safetensors metadata (``DIR/checkpoint/state.safetensors``; the header alone is read).
* ``training-log.txt``: the log's ``scrying.transcoders.train`` lines (per chunk, and a resume's
  warning), without the progress bar between them.
* ``run-times.json``: ``--started`` (the shell's ``date`` when the command was launched), each
  ``--event`` (e.g. a kill and a restart), and the set's files and ``report.csv`` as their
  modification times (UTC).
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
from pathlib import Path

from safetensors import safe_open

LINE = re.compile(r"(?:INFO|WARNING) scrying\.transcoders\.train: .*?(?=transcoders:|INFO |WARNING |\r|\n|$)")


def _mtime(path: Path) -> str:
    stamp = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", type=Path, required=True, help="the run's --out folder")
    parser.add_argument("--log", type=Path, required=True, help="the run's captured stderr")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--started", required=True, help="ISO time the command was launched (UTC)")
    parser.add_argument("--event", action="append", default=[], metavar="NAME=TIME")
    args = parser.parse_args()
    ckpt, layers = args.set / "checkpoint" / "state.safetensors", sorted(args.set.glob("layer_*.safetensors"))
    for need, what in ((ckpt, "its checkpoint"), (args.set / "report.csv", "its report (the run writes it last)"), (args.log, "--log")):
        if not need.is_file():
            parser.error(f"{need}: not found ({what}); expected a finished `scrying transcoders train` run")
    if not layers:
        parser.error(f"{args.set}: no layer_<i>.safetensors (the run writes the set when its last chunk is done)")
    bad = [e for e in args.event if "=" not in e]
    if bad:
        parser.error(f"--event {bad[0]!r}: expected NAME=TIME")
    args.out.mkdir(parents=True, exist_ok=True)
    with safe_open(str(ckpt), "pt") as f:
        progress = json.loads(f.metadata()["progress"])
    kept = {k: progress[k] for k in ("config", "model_name", "chunks_done", "history") if k in progress}
    (args.out / "history.json").write_text(json.dumps(kept, indent=1) + "\n", encoding="utf-8")
    lines = [m.group(0).rstrip() for m in LINE.finditer(args.log.read_text(encoding="utf-8", errors="replace"))]
    (args.out / "training-log.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    times = {"note": "wall clock (UTC): the command's start (the shell's date when it was launched), the events named, "
                     "the set's files and the report as their modification times",
             "started": args.started}
    times |= dict(e.split("=", 1) for e in args.event)
    times |= {"set_written": max(_mtime(p) for p in layers), "report_written": _mtime(args.set / "report.csv")}
    (args.out / "run-times.json").write_text(json.dumps(times, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
