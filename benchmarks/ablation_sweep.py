"""Benchmark: full head sweep of the default model, batched vs one forward per head.

Run: ``.venv/bin/python benchmarks/ablation_sweep.py [--prompts 32] [--heads 72] [--method mean]``.
Both sweeps run in this one process on the same prompts (the packaged IOI set, logit difference);
prints wall-clock and process CPU seconds (CPU time is the steadier figure on a shared machine),
the speed-ups and the largest absolute difference between the two. ``--heads N`` sweeps only the first N heads (layer-major) for a quick check; the reported figure is the
default full run (all 72 heads of Gemma 3 270M, 32 prompts).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from scrying.ablation import (
    AblationConfig,
    all_heads,
    head_sweep,
    head_sweep_loop,
    ioi_records,
    prompt_set,
)
from scrying.models import LoadConfig, default_cache_dir, load_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--heads", type=int, default=None, help="first N heads only (quick check)")
    parser.add_argument("--method", default="mean", choices=["zero", "mean", "resample"])
    parser.add_argument("--metric", default="logit-diff")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cache = Path(os.environ.get("SCRYING_CACHE_DIR") or default_cache_dir())
    model = load_model(args.model, LoadConfig(cache_dir=cache))
    records = (ioi_records() * 8)[: args.prompts]
    prompts = prompt_set(model, records)
    config = AblationConfig(metric=args.metric, method=args.method, batch_size=args.batch_size)
    heads = all_heads(model)[: args.heads]
    n_heads = len(heads)
    print(f"{args.model}: {n_heads} heads x {prompts.n_prompts} prompts of {prompts.tokens.shape[1]} tokens, "
          f"{args.metric}, {args.method} ablation, {torch.get_num_threads()} threads")
    head_sweep(model, prompts, config, heads=[(0, 0)])  # warm-up
    start, cpu = time.perf_counter(), time.process_time()
    batched = head_sweep(model, prompts, config, heads=heads)
    t_batched, c_batched = time.perf_counter() - start, time.process_time() - cpu
    print(f"batched: {t_batched:.1f} s ({c_batched:.1f} s CPU)", flush=True)
    start, cpu = time.perf_counter(), time.process_time()
    looped = head_sweep_loop(model, prompts, config, heads=heads)
    t_loop, c_loop = time.perf_counter() - start, time.process_time() - cpu
    print(f"loop:    {t_loop:.1f} s ({c_loop:.1f} s CPU)", flush=True)
    diff = float((batched.effects - looped.effects).nan_to_num().abs().max())
    clean_diff = float((batched.clean - looped.clean).abs().max())
    print(f"speed-up {t_loop / t_batched:.2f}x wall, {c_loop / c_batched:.2f}x CPU time; max |effect difference| {diff:.2e}; "
          f"max |clean difference| {clean_diff:.2e}")


if __name__ == "__main__":
    main()
