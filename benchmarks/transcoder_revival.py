"""Dead features of a trained set against ways of reviving them, on one layer of Gemma 3 270M.

    .venv/bin/python benchmarks/transcoder_revival.py --run RUN [--layer 16] [--threads 2] \
        [--variants as-trained more-steps aux-early aux-strong revive-2000 revive-500 resample]

``RUN``: a finished recipe run's ``--out`` folder (its ``checkpoint/`` holds the layer's weights
in the normalised space they were trained in, the scales and the dead-row counters). Harvests
the layer's MLP input and output on 1,024 windows of 128 tokens of the mix's training text past
the 31 chunks the schedule read (``--skip-chunks``: another count; 35 passes over the revival
chunks too, text a finished set never saw) (130,048 rows) and on the first 256 windows of its held-out text
(32,512 rows, the recipe report's), and from the set's weights trains each variant for 64 Adam
steps of 2,048 rows at the schedule's final learning rate (3.2e-4, 8 warmup steps, a fresh
Adam; AuxK 1/32, k_aux 256):

* ``as-trained``: no step (the set itself);
* ``more-steps``: the steps alone (AuxK's dead count: 262,144 rows, the recipe's);
* ``aux-early``: AuxK counting a feature dead after 32,768 rows;
* ``aux-strong``: that, with AuxK's coefficient 1 and a learning rate of 1e-3;
* ``revive-2000`` / ``revive-500``: first :func:`scrying.transcoders.revive.revive_dead` on the
  harvested rows at 1/2,000 or 1/500 of them (the revival chunks' step), then ``aux-early``;
* ``lift-500``: the same with ``rare=True`` (every feature active on fewer than 1/500 of the rows
  lifted to it, as the recipe's revival chunks now do), then ``aux-early``;
* ``resample``: Bricken et al. (2023)'s resampling adapted to a transcoder, then ``aux-early``:
  each feature active on none of the first 32,512 rows gets the encoder row of an input drawn
  with probability proportional to its squared error squared (centred, unit, times the alive rows'
  mean norm; bias so that it reaches that row's k-th value) and a decoder row along that input's
  error (0.2 x the alive rows' mean norm).

Prints each variant's held-out FVU and dead share (active on none of the 32,512 held-out rows).
Run on the full 31-chunk recipe set (2026-12-07; ``results/transcoders/revival/layer-16.txt``,
quoted in :mod:`scrying.transcoders.revive`'s docstring): its ``lift-500`` line came from a copy
of ``revive_dead(..., rare=True)`` written into this script before that option entered the
library, the same computation.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from itertools import islice
from pathlib import Path

VARIANTS = ("as-trained", "more-steps", "aux-early", "aux-strong", "revive-2000", "revive-500", "lift-500", "resample")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--layer", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--skip-chunks", type=int, help="chunks of training text to pass over first (default: the schedule's "
                        "n_chunks; a set with its revival chunks read n_chunks + revive_chunks: pass that for text it never saw)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from scrying.models import default_cache_dir, load_model
    from scrying.transcoders.corpus import read_texts
    from scrying.transcoders.corpus_mix import CorpusMixConfig, build_mixed_corpus
    from scrying.transcoders.train import harvest, token_windows
    from scrying.transcoders.train_checkpoint import read_checkpoint
    from scrying.transcoders.train_config import PRESETS
    from scrying.transcoders.transcoder import Transcoder, TranscoderSpec

    recipe = PRESETS["recipe"]
    model = load_model("gemma-3-270m")
    mix = build_mixed_corpus(default_cache_dir(), CorpusMixConfig())
    stream = token_windows(model, read_texts([mix.train]), recipe.seq_len)
    skip = recipe.n_chunks if args.skip_chunks is None else args.skip_chunks
    for _ in islice(stream, skip * recipe.windows_per_chunk):
        pass
    ly = args.layer

    def layer_rows(windows: list) -> tuple:
        xs, ys = [], []
        for start in range(0, len(windows), recipe.harvest_batch):
            x, y = harvest(model, torch.stack(windows[start : start + recipe.harvest_batch]))
            xs.append(x[ly])
            ys.append(y[ly])
        return torch.cat(xs), torch.cat(ys)

    started = time.perf_counter()
    x_train, y_train = layer_rows(list(islice(stream, 2 * recipe.windows_per_chunk)))
    x_held, y_held = layer_rows(list(islice(token_windows(model, read_texts([mix.heldout]), recipe.seq_len), 256)))
    sys.stdout.write(f"harvested {x_train.shape[0]} training and {x_held.shape[0]} held-out rows of layer {ly} in {time.perf_counter() - started:.0f} s\n")

    tensors, progress = read_checkpoint(args.run / "checkpoint")
    s_in, s_out = progress["scales"][ly]
    x_train, y_train, x_held, y_held = x_train / s_in, y_train / s_out, x_held / s_in, y_held / s_out
    spec = TranscoderSpec(d_model=model.cfg.d_model, n_features=recipe.n_features, activation="topk", k=recipe.k, skip=True)
    prefix = f"L{ly}."
    base = Transcoder(spec).load_tensors({k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)})
    since_fired = tensors["since_fired"][ly]

    for variant in args.variants:
        started = time.perf_counter()
        tc, since = copy.deepcopy(base), since_fired.clone()
        if variant == "more-steps":
            _train(tc, x_train, y_train, since, dead_after=recipe.dead_after, aux_coef=recipe.aux_coef, lr=3.2e-4)
        elif variant == "aux-early":
            _train(tc, x_train, y_train, since, dead_after=32_768, aux_coef=recipe.aux_coef, lr=3.2e-4)
        elif variant == "aux-strong":
            _train(tc, x_train, y_train, since, dead_after=32_768, aux_coef=1.0, lr=1e-3)
        elif variant.startswith(("revive", "lift")) or variant == "resample":
            from scrying.transcoders.revive import revive_dead

            if variant == "resample":
                dead = _resample(tc, x_train, y_train, x_train[: x_held.shape[0]])
            else:
                dead = revive_dead(tc, x_train, 1 / int(variant.split("-")[1]), rare=variant.startswith("lift"))
            since[dead] = 0
            fvu, share = _evaluate(tc, x_held, y_held)
            sys.stdout.write(f"  {variant}: {int(dead.sum())} features revived; before training, held-out FVU {fvu:.4f}, dead {share:.3f}\n")
            _train(tc, x_train, y_train, since, dead_after=32_768, aux_coef=recipe.aux_coef, lr=3.2e-4)
        fvu, share = _evaluate(tc, x_held, y_held)
        sys.stdout.write(f"layer {ly} {variant:12s} held-out FVU {fvu:.4f}, dead {share:.3f}  ({time.perf_counter() - started:.0f} s)\n")
        sys.stdout.flush()


def _evaluate(tc, x, y) -> tuple[float, float]:
    import torch

    fired = torch.zeros(tc.spec.n_features, dtype=torch.bool)
    err = 0.0
    with torch.no_grad():
        for start in range(0, x.shape[0], 4096):
            feats = tc.encode(x[start : start + 4096])
            fired |= (feats != 0).any(0)
            err += float((tc.decode(feats, x[start : start + 4096]) - y[start : start + 4096]).pow(2).sum())
    return err / float((y - y.mean(0)).pow(2).sum()), float((~fired).double().mean())


def _train(tc, x, y, since, *, dead_after: int, aux_coef: float, lr: float, steps: int = 64, batch: int = 2048, warmup: int = 8) -> None:
    import torch

    from scrying.transcoders.train_loss import dead_mask, layer_loss, lr_at

    optimizer = torch.optim.Adam(tc.parameters(), lr=lr)
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
    for step in range(min(steps, x.shape[0] // batch)):
        idx = order[step * batch : (step + 1) * batch]
        part = layer_loss(tc, x[idx], y[idx], dead=dead_mask(since, dead_after), k_aux=256, aux_coef=aux_coef, l1=0.0)
        since[:] = torch.where(part.fired, 0, since + len(idx))
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup, 0.1)
        optimizer.zero_grad()
        part.total.backward()
        optimizer.step()


def _resample(tc, x, y, x_dead):
    """Bricken et al.'s resampling, adapted (see the module docstring); returns the resampled features."""
    import torch

    with torch.no_grad():
        fired = torch.zeros(tc.spec.n_features, dtype=torch.bool)
        for start in range(0, x_dead.shape[0], 4096):
            fired |= (tc.encode(x_dead[start : start + 4096]) != 0).any(0)
        dead = ~fired
        errors, kth = [], []
        for start in range(0, x.shape[0], 4096):
            xb = x[start : start + 4096]
            kth.append(tc.pre_activations(xb).topk(tc.spec.k, dim=-1).values[:, -1])
            errors.append(y[start : start + 4096] - tc(xb))
        error, kth = torch.cat(errors), torch.cat(kth)
        rows = torch.multinomial(error.pow(2).sum(-1).pow(2), int(dead.sum()), replacement=False, generator=torch.Generator().manual_seed(1))
        direction = x[rows] - x.mean(0)
        direction = direction / direction.norm(dim=1, keepdim=True)
        w = direction * tc.W_enc[fired].norm(dim=1).mean()
        tc.W_enc[dead] = w
        tc.b_enc[dead] = kth[rows] - (w * x[rows]).sum(-1)
        tc.W_dec[dead] = error[rows] / error[rows].norm(dim=1, keepdim=True) * tc.W_dec[fired].norm(dim=1).mean() * 0.2
    return dead


if __name__ == "__main__":
    main()
