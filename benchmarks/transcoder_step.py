"""One transcoder layer's training step (loss and backward) at the recipe's shape: the sparse
encoder gradient (``train_loss.layer_loss``: only the TopK and AuxK picks under autograd) against
the same loss under dense autograd (the baseline: the pre-activations computed with autograd, as
the recipe ran before), on the same weights and rows, alternating, in one run.

Run: .venv/bin/python benchmarks/transcoder_step.py [--rows 2048] [--features 8192] [--repeat 5]
Prints the median seconds of each and the ratio sparse / dense, and the largest gradient difference.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from scrying.transcoders.train_loss import layer_loss
from scrying.transcoders.transcoder import Transcoder, TranscoderSpec


def dense_loss(tc: Transcoder, x: torch.Tensor, y: torch.Tensor, dead: torch.Tensor, k_aux: int, aux_coef: float) -> torch.Tensor:
    """The baseline: every pre-activation under autograd (the backward is a dense
    ``rows x features`` by ``rows x d_model`` product)."""
    pre = tc.pre_activations(x)
    top = pre.topk(tc.spec.k, dim=-1)
    y_hat = tc.decode_sparse(top.indices, torch.relu(top.values), x)
    loss = (y_hat - y).pow(2).sum(-1).mean()
    error = (y - y_hat).detach()
    columns = dead.nonzero()[:, 0]
    values, picked = pre.index_select(-1, columns).topk(min(k_aux, len(columns)), dim=-1)
    e_hat = tc.decode_rows(columns[picked], torch.relu(values))
    aux = (e_hat - error).pow(2).sum(-1).mean() / (error - error.mean(0)).pow(2).sum(-1).mean()
    return loss + aux_coef * aux


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--features", type=int, default=8192)
    parser.add_argument("--d-model", type=int, default=640)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--k-aux", type=int, default=256)
    parser.add_argument("--dead", type=float, default=0.05, help="fraction of features marked dead (AuxK's share)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    tc = Transcoder(TranscoderSpec(d_model=args.d_model, n_features=args.features, activation="topk", k=args.k, skip=True))
    with torch.no_grad():
        for p in tc.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    x, y = torch.randn(args.rows, args.d_model, generator=gen), torch.randn(args.rows, args.d_model, generator=gen)
    dead = torch.rand(args.features, generator=gen) < args.dead

    def sparse() -> list[torch.Tensor]:
        total = layer_loss(tc, x, y, dead=dead, k_aux=args.k_aux, aux_coef=1 / 32, l1=0.0).total
        return list(torch.autograd.grad(total, list(tc.parameters())))

    def dense() -> list[torch.Tensor]:
        return list(torch.autograd.grad(dense_loss(tc, x, y, dead, args.k_aux, 1 / 32), list(tc.parameters())))

    times: dict[str, list[float]] = {"sparse": [], "dense": []}
    grads = {"sparse": sparse(), "dense": dense()}  # warm-up, and the gradients compared
    for _ in range(args.repeat):
        for name, fn in (("sparse", sparse), ("dense", dense)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    diff = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-30)) for a, b in zip(grads["sparse"], grads["dense"], strict=True))
    s, d = statistics.median(times["sparse"]), statistics.median(times["dense"])
    print(f"one layer's step, {args.rows} rows x {args.features} features x d_model {args.d_model}, TopK-{args.k}, "
          f"AuxK-{args.k_aux} over {int(dead.sum())} dead, {torch.get_num_threads()} thread(s), median of {args.repeat}")
    print(f"sparse encoder gradient {s:.3f} s   dense autograd {d:.3f} s   ratio sparse/dense {s / d:.2f}")
    print(f"largest gradient difference, relative to that weight's largest gradient: {diff:.1e}")


if __name__ == "__main__":
    main()
