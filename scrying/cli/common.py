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
