"""Benchmark: a ``trace --prompts`` batch in this process, then on 1 and 2 Ray workers.

Run: ``.venv/bin/python benchmarks/ray_scaling.py [--model gemma-3-270m] [--prompts 8]``.
The same prompts (sentences of ``measure.TEXT``) are traced three times by
:func:`scrying.attribution.batch.run_trace_batch`: in this process with one torch thread, then
on a local Ray cluster started here with 1 and with 2 workers of one CPU each (so each worker
has what the in-process run had; workers at niceness 0, as the in-process run). Prints, per run: the model-load seconds (per worker), the
prompts per second while streaming (load excluded) and end to end, their ratios to the
in-process run, and the driver's own seconds per graph (writing its HTML, JSON and index line),
which bound what any number of workers can reach through one driver. The records of every run
are checked equal to the in-process run's (the same floats: one thread everywhere).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from measure import TEXT

from scrying.attribution.batch import TraceBatchConfig, run_trace_batch
from scrying.attribution.feature_graph import FeatureGraphConfig
from scrying.attribution.trace import TraceConfig, trace, write_trace
from scrying.attribution.validation import ValidationConfig
from scrying.batch import RayConfig
from scrying.models import LoadConfig, default_cache_dir, load_model


def prompts_file(folder: Path, n: int) -> Path:
    """``n`` prompts: the first 6-12 words of successive sentences of ``measure.TEXT``."""
    sentences = [s.strip() for s in TEXT.replace(",", "").split(". ") if len(s.split()) > 8]
    lines = [" ".join(sentences[i % len(sentences)].split()[: 6 + i % 7]) for i in range(n)]
    path = folder / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in lines))
    return path


def records(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()[1:]]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-features", type=int, default=64)
    parser.add_argument("--validate-top", type=int, default=20)
    args = parser.parse_args()
    import ray

    torch.set_num_threads(1)
    load = LoadConfig(cache_dir=Path(os.environ.get("SCRYING_CACHE_DIR") or default_cache_dir()))
    config = TraceConfig(features=FeatureGraphConfig(max_feature_nodes=args.max_features),
                         validation=ValidationConfig(top_k=args.validate_top))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prompts = prompts_file(folder, args.prompts)

        def run(name: str, ray_config: RayConfig | None) -> tuple[float, object]:
            batch = TraceBatchConfig(prompts=prompts, model=args.model, out_dir=folder / name, trace=config, progress=False)
            start = time.perf_counter()
            result = run_trace_batch(batch, load, ray=ray_config)
            return time.perf_counter() - start, result

        runs = {"in-process": run("local", None)}
        # Ray runs its workers at niceness 15; on this shared machine that would starve them
        # against the in-process run (niceness 0). A cluster's nodes run nothing else.
        os.environ["RAY_worker_niceness"] = "0"
        start = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        cluster_start = time.perf_counter() - start
        try:
            runs["ray, 1 worker"] = run("ray1", RayConfig(workers=1, cpus=1))
            runs["ray, 2 workers"] = run("ray2", RayConfig(workers=2, cpus=1))
        finally:
            ray.shutdown()
        same = all(records(folder / d) == records(folder / "local") for d in ("ray1", "ray2"))

        model = load_model(args.model, load)  # the driver's own share: writing one graph
        result = trace(model, prompts.read_text().splitlines()[0].split('"')[3], config, model_name=args.model)
        start = time.perf_counter()
        for i in range(5):
            write_trace(result, html_path=folder / f"w{i}.html", json_path=folder / f"w{i}.json")
        driver_s = (time.perf_counter() - start) / 5

    print(f"{args.model}, {args.prompts} prompts, max {args.max_features} features, {args.validate_top} validated; "
          f"torch {torch.__version__}, {os.cpu_count()} CPUs here, one torch thread per worker")
    print(f"local Ray cluster start: {cluster_start:.1f} s (not in the figures below)")
    base_stream = runs["in-process"][1].stats.items_per_second
    base_total = args.prompts / runs["in-process"][0]
    print(f"{'run':16} {'load s (per worker)':>22} {'stream/s':>9} {'x':>5} {'end-to-end/s':>13} {'x':>5}")
    for name, (wall, result) in runs.items():
        loads = ", ".join(f"{w.load_seconds:.1f}" for w in result.stats.workers.values())
        stream = result.stats.items_per_second
        total = args.prompts / wall
        print(f"{name:16} {loads:>22} {stream:9.3f} {stream / base_stream:5.2f} {total:13.3f} {total / base_total:5.2f}")
        for w in sorted(result.stats.workers.values(), key=lambda w: w.worker):
            print(f"{'':16}   worker {w.worker}: {w.items} prompts, {w.items_per_second:.3f}/s busy")
    print(f"driver: {driver_s:.3f} s per graph written (HTML + JSON), so one driver keeps up with up to "
          f"{1 / driver_s:.1f} graphs/s")
    print(f"records equal to the in-process run's: {same}")


if __name__ == "__main__":
    main()
