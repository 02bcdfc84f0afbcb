"""Benchmark: scoring a task batched (scrying.emergence.item_scoring.score_items) vs a per-item loop
of one teacher-forced forward plus TransformerLens ``generate`` (greedy), the way one would write
it by hand. ``generate`` runs without its KV cache: with the cache, TransformerBridge's greedy
output on Gemma 3 270M repeats its first token ("\n\n\n\n" for "606+532="), while without it,
it equals scrying's batched decoding and the one-token-at-a-time reference (measured 2026-11-29,
TransformerLens as pinned here).

Run: ``.venv/bin/python benchmarks/emergence_scoring.py [--items 500] [--task addition:3]``.
Both run in this one process on the same items of the default model; prints wall-clock and CPU
seconds, the speed-up, how many greedy outputs agree, and the largest log-prob difference.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from scrying.emergence.item_scoring import ScoringConfig, score_items
from scrying.emergence.tasks import task_from_spec
from scrying.models import LoadConfig, default_cache_dir, load_model


def per_item(model, items):  # noqa: ANN001, ANN201 - a benchmark baseline
    out = []
    for item in items:
        prompt = model.to_tokens(item.prompt)
        target = model.to_tokens(item.target, prepend_bos=False)
        with torch.no_grad():
            logits = model(torch.cat([prompt, target], dim=1))[0].double().log_softmax(-1)
        n = prompt.shape[1]
        logprobs = [float(logits[n + j - 1, t]) for j, t in enumerate(target[0].tolist())]
        tokens = model.generate(prompt, max_new_tokens=target.shape[1], do_sample=False, stop_at_eos=False,
                                use_past_kv_cache=False, verbose=False, return_type="tokens")
        out.append((logprobs, tokens[0, n:].tolist()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--task", default="addition:3")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model, LoadConfig(cache_dir=os.environ.get("SCRYING_CACHE_DIR") or default_cache_dir()))
    items = task_from_spec(args.task, n_items=args.items, seed=0)
    print(f"{args.model}: {len(items)} items of {args.task}, batch {args.batch_size}, {args.threads} threads")

    wall, cpu = time.perf_counter(), time.process_time()
    batched = score_items(model, items, ScoringConfig(batch_size=args.batch_size))
    t_batched, c_batched = time.perf_counter() - wall, time.process_time() - cpu
    wall, cpu = time.perf_counter(), time.process_time()
    looped = per_item(model, items)
    t_loop, c_loop = time.perf_counter() - wall, time.process_time() - cpu

    same = sum(b.output_tokens == tokens for b, (_, tokens) in zip(batched, looped, strict=True))
    diff = max(abs(x - y) for b, (lp, _) in zip(batched, looped, strict=True) for x, y in zip(b.target_logprobs, lp, strict=True))
    print(f"batched: {t_batched:.1f} s wall, {c_batched:.1f} s CPU")
    print(f"per-item forward + generate: {t_loop:.1f} s wall, {c_loop:.1f} s CPU")
    print(f"speed-up: {t_loop / t_batched:.2f}x wall, {c_loop / c_batched:.2f}x CPU")
    print(f"greedy outputs equal: {same}/{len(items)}; max |log-prob difference|: {diff:.2e}")


if __name__ == "__main__":
    main()
