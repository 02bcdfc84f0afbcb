"""Argument style shared by every subcommand, and the objects built from it."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from scrying.models import DEFAULT_MODEL, LoadConfig, default_cache_dir, load_model


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """``--model`` (default: the offline Gemma 3 270M) and ``--device``."""
    parser.add_argument(
        "--model",
        "-m",
        default=DEFAULT_MODEL,
        help=f"registered name, local HF directory, .gguf file or hub name (default: {DEFAULT_MODEL})",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")


def add_global_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verbose", "-v", action="store_true", help="log progress details")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="converted-model cache (default: $SCRYING_CACHE_DIR or ~/.cache/scrying)",
    )


def cache_dir_of(args: argparse.Namespace) -> Path:
    return Path(args.cache_dir or os.environ.get("SCRYING_CACHE_DIR") or default_cache_dir())


def load_config(args: argparse.Namespace) -> LoadConfig:
    return LoadConfig(device=args.device, cache_dir=cache_dir_of(args))


def model_from_args(args: argparse.Namespace) -> Any:
    logging.getLogger(__name__).info("loading %s", args.model)
    return load_model(args.model, load_config(args))


def add_ray_args(parser: argparse.ArgumentParser) -> None:
    """``--ray [ADDRESS]`` and each worker's resources (:class:`scrying.batch.RayConfig`)."""
    group = parser.add_argument_group("Ray cluster (pip install 'scrying[ray]')")
    group.add_argument("--ray", nargs="?", const=LOCAL_RAY, default=None, metavar="ADDRESS",
                       help="run the batch on Ray: 'auto' or HOST:PORT joins a cluster; no ADDRESS starts a local one "
                       "(give it last, or as --ray=ADDRESS)")
    group.add_argument("--ray-workers", type=int, default=None, metavar="N",
                       help="workers, each loading the model once (default: as many as the cluster's CPUs, or GPUs, fit)")
    group.add_argument("--ray-cpus", type=float, default=1.0, metavar="C", help="CPUs per worker, also its torch threads (default 1)")
    group.add_argument("--ray-gpus", type=float, default=0.0, metavar="G", help="GPUs per worker (default 0; 1 with --device cuda)")
    group.add_argument("--ray-memory", type=float, default=None, metavar="GIB", help="memory reserved per worker, GiB")


#: ``--ray`` given without an address: start a local cluster.
LOCAL_RAY = "local"


def ray_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~scrying.batch.RayConfig` of ``--ray`` (None without it); checked before
    any model loads, ray itself not imported."""
    import importlib.util

    from scrying.batch import RayConfig
    from scrying.errors import InvalidInputError

    if args.ray is None:
        given = [o for o, v in (("--ray-workers", args.ray_workers), ("--ray-memory", args.ray_memory)) if v is not None]
        given += [o for o, v, d in (("--ray-cpus", args.ray_cpus, 1.0), ("--ray-gpus", args.ray_gpus, 0.0)) if v != d]
        if given:
            raise InvalidInputError(f"{', '.join(given)} configure the Ray workers; give --ray [ADDRESS] too")
        return None
    if importlib.util.find_spec("ray") is None:
        raise InvalidInputError("--ray needs Ray, which is not installed; pip install 'scrying[ray]'")
    return RayConfig(address=None if args.ray == LOCAL_RAY else args.ray, workers=args.ray_workers, cpus=args.ray_cpus,
                     gpus=args.ray_gpus, memory_gb=args.ray_memory)


def throughput_lines(stats: Any, what: str) -> list[str]:
    """Per worker: items, items/s while busy, model-load seconds; then the total (a Ray run's
    summary, :class:`scrying.batch.PoolStats`)."""
    lines = [f"  worker {w.worker}: {w.items} {what}, {w.items_per_second:.2f}/s busy, model load {w.load_seconds:.1f} s"
             for w in sorted(stats.workers.values(), key=lambda w: w.worker)]
    return [*lines, f"  all: {stats.items} {what} in {stats.wall_seconds:.1f} s ({stats.items_per_second:.2f}/s) "
            f"over {len(stats.workers)} worker(s)"]
