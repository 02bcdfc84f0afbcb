"""EAP-IG over all edges vs exact per-edge patching on the default model (IOI prompt).

Times EAP-IG (``--steps`` interpolation points) scoring every edge, then exact patching of a
sample of edges (the ``--top`` highest-|score| edges plus ``--random`` random others), and
extrapolates the exact cost to all edges: per-edge time x number of edges. Prints the speed-up
and the Spearman correlation between EAP-IG and exact effects on the sampled edges.

    python benchmarks/eap_speed.py [--steps 5] [--top 16] [--random 16]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.stats import spearmanr

from scrying.circuits.circuit import find_circuit, prompt_pair
from scrying.circuits.config import EAPConfig, PatchConfig
from scrying.circuits.nodes import ComponentNodes
from scrying.circuits.patching import edge_effects
from scrying.models import load_model

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When Mary and John went to the store, Mary gave a drink to"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=16)
    parser.add_argument("--random", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    clean, corrupt, metric = prompt_pair(model, CLEAN, CORRUPT, " Mary", " John")
    print(f"prompt: {clean.shape[-1]} tokens (clean and corrupt)")

    start = time.perf_counter()
    circuit = find_circuit(model, clean, corrupt, metric, EAPConfig(method="eap-ig", ig_steps=args.steps, chunk=args.chunk))
    t_ig = time.perf_counter() - start
    n_edges = len(circuit.edges)
    print(f"metric clean {circuit.clean_metric:.3f}, corrupt {circuit.corrupt_metric:.3f}")
    print(f"EAP-IG ({args.steps} steps), all {n_edges} edges: {t_ig:.1f} s")

    rng = np.random.default_rng(0)
    rest = np.arange(args.top, n_edges)
    pick = np.concatenate([np.arange(args.top), rng.choice(rest, size=min(args.random, len(rest)), replace=False)])
    sample = circuit.edges.iloc[pick]
    pairs = ComponentNodes.of(model).edge_index(sample["source"], sample["target"])
    start = time.perf_counter()
    effects = edge_effects(model, clean, circuit.pair, metric, pairs, PatchConfig(chunk=args.chunk))
    t_exact = time.perf_counter() - start
    per_edge = t_exact / len(pairs)
    full = per_edge * n_edges
    print(f"exact patching, {len(pairs)} sampled edges ({args.chunk} per forward): {t_exact:.1f} s, {per_edge:.3f} s/edge")
    print(f"exact patching, all {n_edges} edges (extrapolated {per_edge:.3f} s x {n_edges}): {full:.0f} s")
    print(f"EAP-IG speed-up over exact per-edge patching: {full / t_ig:.1f}x")
    rho = spearmanr(sample["score"].to_numpy(), effects.numpy()).statistic
    print(f"Spearman(EAP-IG, exact) on the {len(pairs)} sampled edges: {rho:.3f}")
    for (s, t, sc), eff in list(zip(sample[["source", "target", "score"]].itertuples(index=False), effects.tolist(), strict=True))[:10]:
        print(f"  {s:>8} -> {t:<8} EAP-IG {sc:+.3f}  exact {eff:+.3f}")


if __name__ == "__main__":
    main()
