"""Throughput of transcoder training on the default model: harvest (tokens/s, every layer's MLP
input and output in one pass) and Adam steps/s for all 18 layers at once, per preset.

Run: .venv/bin/python benchmarks/transcoder_throughput.py [--preset quick] [--steps 3]
Extrapolates the preset's wall time as harvest + training (chunk by chunk, as train.py runs).
"""

from __future__ import annotations

import argparse
import time

import torch

from scrying.models import default_cache_dir, load_model
from scrying.transcoders.corpus import build_default_corpus, read_texts
from scrying.transcoders.train import (
    _harvest_chunk,
    _init,
    _optimizer,
    _train_chunk,
    token_windows,
)
from scrying.transcoders.train_config import PRESETS
from scrying.transcoders.transcoder import TranscoderSpec


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    parser.add_argument("--windows", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    config = PRESETS[args.preset]
    model = load_model("gemma-3-270m")
    texts = read_texts([build_default_corpus(default_cache_dir())])
    windows = [w for _, w in zip(range(args.windows), token_windows(model, texts, config.seq_len), strict=False)]
    start = time.perf_counter()
    x, y = _harvest_chunk(model, windows, config, torch.float32)
    harvest = x.shape[1] / (time.perf_counter() - start)
    spec = TranscoderSpec(d_model=model.cfg.d_model, n_features=config.n_features, activation=config.activation, k=config.k, skip=config.skip)
    transcoders = [_init(spec, layer, torch.float32, y[layer].mean(0)) for layer in range(model.cfg.n_layers)]
    optimizer = _optimizer(transcoders, config)
    rows = config.batch_size * args.steps
    reps = -(-rows // x.shape[1])
    xs, ys = x.repeat(1, reps, 1)[:, :rows], y.repeat(1, reps, 1)[:, :rows]
    start = time.perf_counter()
    _train_chunk(transcoders, optimizer, xs, ys, config, 0)
    steps = args.steps / (time.perf_counter() - start)
    total_steps = config.total_tokens / config.batch_size
    hours = (config.total_tokens / harvest + total_steps / steps) / 3600
    print(f"{args.preset}: harvest {harvest:.0f} tok/s, {steps:.2f} steps/s (18 layers, batch {config.batch_size}, "
          f"{config.n_features} features); preset estimate {hours:.2f} h")


if __name__ == "__main__":
    main()
