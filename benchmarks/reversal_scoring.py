"""Benchmark: scoring reversal pairs batched (scrying.reversal.score_chunk: every candidate of a
chunk teacher-forced in padded batches, greedy decoding batched) vs a per-prompt loop written by
hand: one forward per candidate and TransformerLens ``generate`` (greedy) per prompt.
``generate`` runs without its KV cache (with it, TransformerBridge's greedy output on Gemma 3
270M is wrong; see benchmarks/emergence_scoring.py).

Run: ``.venv/bin/python benchmarks/reversal_scoring.py [--pairs 200] [--distractors 5]``.
The pairs are the first ones of each packaged relation in turn. Both run in this process on the
same pairs of the default model; prints wall-clock and CPU seconds, the speed-up, how many ranks
and exact matches agree, and the largest log-prob difference.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import torch

from scrying.models import LoadConfig, default_cache_dir, load_model
from scrying.reversal.pair_scoring import ModelScorer, ReversalConfig, distractors, score_chunk
from scrying.reversal.pairs import DIRECTIONS
from scrying.reversal.probe import read_pair_files
from scrying.reversal.relations import packaged_relation_files


def per_prompt(model, pairs, chosen, config):  # noqa: ANN001, ANN201 - a benchmark baseline
    out = []
    for i in chosen:
        pair = pairs[i]
        record = {}
        for direction in DIRECTIONS:
            prompt = model.to_tokens(pair.prompt(direction))
            n = prompt.shape[1]
            scores = []
            for candidate in [pair.answer(direction), *(" " + d for d in distractors(pairs, i, direction, config))]:
                target = model.to_tokens(candidate, prepend_bos=False)
                with torch.no_grad():
                    logits = model(torch.cat([prompt, target], dim=1))[0].double().log_softmax(-1)
                scores.append(sum(float(logits[n + j - 1, t]) for j, t in enumerate(target[0].tolist())))
            answer = model.to_tokens(pair.answer(direction), prepend_bos=False)
            tokens = model.generate(prompt, max_new_tokens=answer.shape[1], do_sample=False, stop_at_eos=False,
                                    use_past_kv_cache=False, verbose=False, return_type="tokens")
            record[direction] = {"logprob": scores[0], "rank": 1 + sum(s > scores[0] for s in scores[1:]),
                                 "exact": tokens[0, n:].tolist() == answer[0].tolist()}
        out.append(record)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--distractors", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model, LoadConfig(cache_dir=os.environ.get("SCRYING_CACHE_DIR") or default_cache_dir()))
    by_file = [read_pair_files([f]) for f in packaged_relation_files()]
    interleaved = [p for group in itertools.zip_longest(*by_file) for p in group if p is not None]
    pairs = interleaved[: args.pairs]
    # distractors are drawn from every pair of the relation, not only the benchmarked ones
    everything = [p for group in by_file for p in group]
    index = {(p.relation, p.a, p.b): i for i, p in enumerate(everything)}
    chosen = [index[(p.relation, p.a, p.b)] for p in pairs]
    config = ReversalConfig(distractors=args.distractors, batch_size=args.batch_size, chunk_pairs=len(pairs))
    print(f"{args.model}: {len(pairs)} pairs x 2 directions x {args.distractors + 1} candidates, "
          f"batch {args.batch_size}, {args.threads} threads")

    wall, cpu = time.perf_counter(), time.process_time()
    batched = score_chunk(ModelScorer(model, args.batch_size), everything, chosen, config)
    t_batched, c_batched = time.perf_counter() - wall, time.process_time() - cpu
    wall, cpu = time.perf_counter(), time.process_time()
    looped = per_prompt(model, everything, chosen, config)
    t_loop, c_loop = time.perf_counter() - wall, time.process_time() - cpu

    pairs_dirs = [(b[d], lp[d]) for b, lp in zip(batched, looped, strict=True) for d in DIRECTIONS]
    same_rank = sum(b["rank"] == lp["rank"] for b, lp in pairs_dirs)
    same_exact = sum(b["exact"] == lp["exact"] for b, lp in pairs_dirs)
    diff = max(abs(b["logprob"] - lp["logprob"]) for b, lp in pairs_dirs)
    print(f"batched: {t_batched:.1f} s wall, {c_batched:.1f} s CPU")
    print(f"per-prompt forwards + generate: {t_loop:.1f} s wall, {c_loop:.1f} s CPU")
    print(f"speed-up: {t_loop / t_batched:.2f}x wall, {c_loop / c_batched:.2f}x CPU")
    print(f"ranks equal: {same_rank}/{len(pairs_dirs)}; exact match equal: {same_exact}/{len(pairs_dirs)}; "
          f"max |log-prob difference|: {diff:.2e}")


if __name__ == "__main__":
    main()
