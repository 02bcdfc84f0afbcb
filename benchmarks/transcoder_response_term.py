"""Can a response term teach a trained transcoder how its MLP *moves*? One layer, fine-tuned.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/transcoder_response_term.py --transcoders DIR \
        [--layer 12] [--steps 300] [--coefs 0 1] [--windows 256] [--lr 1e-4]

The frozen local replacement model carries an intervention through each later layer's
frozen-mask response (:mod:`scrying.transcoders.local_response`); a transcoder trained on
reconstruction alone answers changes along earlier features' decoder rows poorly. This
benchmark fine-tunes layer ``--layer``'s transcoder of the set for ``--steps`` Adam steps
(batch 1,024 rows, ``--lr``) on

    ``|y - y_hat|^2 / var(y)  +  coef * sum |J_mlp v - J_tc v|^2 / sum |J_mlp v|^2``

for each ``--coefs`` value, each from the set's weights (0: the control, the same steps without
the term). Training rows: ``--windows`` windows of 128 tokens spread evenly over the mix's
training text (every k-th window), 4 decoder directions per row
(:func:`~scrying.transcoders.local_response.decoder_directions`, the set's earlier layers as
trained) and the MLP's response to each (:func:`~scrying.transcoders.local_response.mlp_response`),
computed once. Reported before and after, on the mix's held-out text (64 windows): the layer's
FVU and its local-response errors along decoder and data directions
(:func:`~scrying.transcoders.local_response.local_response_report`, the neuron basis's beside
them).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import os
import time
from pathlib import Path

import torch


def _response(tc, x: torch.Tensor, v: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The transcoder's reconstruction and its frozen-mask response to ``v``, differentiable in
    its weights (TopK: the ``k`` largest positive pre-activations)."""
    pre = x @ tc.W_enc.T + tc.b_enc
    vals, idx = pre.topk(k, dim=-1)
    on = (vals.detach() > 0).to(vals.dtype)
    dec = tc.W_dec[idx]  # [row k d]
    moved = torch.einsum("rkd,rvd->rvk", tc.W_enc[idx], v) * on[:, None]
    response = torch.einsum("rvk,rkd->rvd", moved, dec) + v @ tc.W_skip.T
    y_hat = torch.einsum("rk,rkd->rd", vals * on, dec) + tc.b_dec + x @ tc.W_skip.T
    return y_hat, response


def fine_tune(tc, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, target: torch.Tensor, *, steps: int, lr: float,
              coef: float, gen: torch.Generator):
    """A float32 copy of ``tc`` after ``steps`` Adam steps on batches of 1,024 of the rows drawn with
    ``gen``: reconstruction loss (over the outputs' variance) plus ``coef`` times the relative
    squared error of its frozen-mask response to ``v`` against ``target`` (the MLP's)."""
    tc = copy.deepcopy(tc).float()
    for p in tc.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam(tc.parameters(), lr=lr)
    var = float(((y - y.mean(0)) ** 2).sum(-1).mean())
    for _ in range(steps):
        rows = torch.randint(0, len(x), (1024,), generator=gen)
        y_hat, response = _response(tc, x[rows], v[rows], tc.spec.k)
        loss = ((y[rows] - y_hat) ** 2).sum(-1).mean() / var
        if coef:
            t = target[rows]
            loss = loss + coef * ((t - response) ** 2).sum() / (t**2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return tc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transcoders", type=Path, required=True)
    parser.add_argument("--layer", type=int, default=12)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--coefs", type=float, nargs="+", default=[0.0, 1.0])
    parser.add_argument("--windows", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from scrying.models import default_cache_dir, load_model
    from scrying.sites import Component, Site, recorded
    from scrying.transcoders import read_transcoders
    from scrying.transcoders.corpus import read_texts
    from scrying.transcoders.corpus_mix import CorpusMixConfig, build_mixed_corpus
    from scrying.transcoders.local_response import (
        LocalResponseConfig,
        active_masks,
        decoder_directions,
        local_response_report,
        mlp_response,
    )
    from scrying.transcoders.train import first_windows, token_windows

    model = load_model("gemma-3-270m")
    tset = read_transcoders(args.transcoders)
    layer = args.layer
    mix = build_mixed_corpus(Path(os.environ.get("SCRYING_CACHE_DIR") or default_cache_dir()), CorpusMixConfig())
    started = time.perf_counter()
    every = list(token_windows(model, read_texts([mix.train]), 128))
    train = torch.stack(every[:: max(1, len(every) // args.windows)][: args.windows])
    heldout = first_windows(model, read_texts([mix.heldout]), 128, 64, what=str(mix.heldout))
    sites = [tset.input_site(ly) for ly in range(layer + 1)] + [Site(Component.LN2_IN, layer), tset.output_site(layer)]
    xs, vs, targets, ys = [], [], [], []
    for batch in train.split(16):
        with torch.no_grad(), recorded(model, sites) as store:
            model(batch)
        inputs = [store[s][:, 1:].flatten(0, 1) for s in sites]
        v = decoder_directions(model, tset, layer, active_masks(tset, inputs[:layer]), inputs[layer + 1], 4, seed=len(xs))
        xs.append(inputs[layer])
        ys.append(inputs[layer + 2])
        vs.append(v)
        targets.append(torch.cat([mlp_response(model, layer, x, d) for x, d in zip(inputs[layer].split(256), v.split(256), strict=True)]))
    x, y, v, target = torch.cat(xs), torch.cat(ys), torch.cat(vs), torch.cat(targets)
    print(f"{train.shape[0]} training windows of 128 tokens spread over {len(every):,} ({len(x):,} rows, 4 decoder directions each), "
          f"set up in {time.perf_counter() - started:.0f} s")

    def evaluate(tc) -> str:
        trial = dataclasses.replace(tset, transcoders=[*tset.transcoders[:layer], tc, *tset.transcoders[layer + 1 :]])
        rows = []
        for source in ("decoder", "data"):
            r = local_response_report(model, trial, heldout, LocalResponseConfig(directions_from=source, layers=(layer,))).iloc[0]
            rows.append(f"{source}: transcoder {r.transcoder_error:.3f}, skip alone {r.skip_only_error:.3f}, neurons {r.neuron_error:.3f}")
        with torch.no_grad(), recorded(model, [tset.input_site(layer), tset.output_site(layer)]) as store:
            model(heldout)
        hx, hy = (store[s][:, 1:].flatten(0, 1) for s in (tset.input_site(layer), tset.output_site(layer)))
        with torch.no_grad():
            fvu = float(((hy - tc(hx)) ** 2).sum() / ((hy - hy.mean(0)) ** 2).sum())
        return f"held-out FVU {fvu:.4f}; response error along {'; '.join(rows)}"

    print(f"layer {layer} as trained: {evaluate(tset.transcoders[layer])}")
    for coef in args.coefs:
        begun = time.perf_counter()
        tc = fine_tune(tset.transcoders[layer], x, y, v, target, steps=args.steps, lr=args.lr, coef=coef,
                       gen=torch.Generator().manual_seed(1))
        print(f"layer {layer}, {args.steps} steps, coef {coef:g} ({time.perf_counter() - begun:.0f} s): {evaluate(tc)}")
    print(f"# OMP_NUM_THREADS={args.threads} .venv/bin/python benchmarks/transcoder_response_term.py --transcoders DIR --layer {layer} "
          f"--steps {args.steps} --coefs {' '.join(f'{c:g}' for c in args.coefs)} --windows {args.windows} --lr {args.lr:g}")


if __name__ == "__main__":
    main()
