"""Held-out FVU against the learning-rate schedule, on one layer of Gemma 3 270M.

    .venv/bin/python benchmarks/transcoder_schedule.py [--layer 8] [--steps 384] [--windows 2048] [--threads 2] \
        [--variants cosine constant cosine-2x constant-2x cosine-4x cosine-8x]

Harvests one layer's MLP input and output on ``--windows`` windows of 128 tokens of the mix's
training text and 128 windows of its held-out text, normalises them as the recipe does (one
root-mean-square scale per side), and trains one recipe-shaped transcoder (8,192 TopK-64
features, skip, the recipe's start for ``--layer``: rows drawn from the centred inputs at layers
0-11, centred random rows at 12-17, the decoder matched; batches of 2,048 rows drawn with a seeded
generator, AuxK 1/32 with k_aux 256, dead after 262,144 rows) per variant for ``--steps`` steps,
the same start and batches for each:

* ``cosine``: the recipe's first schedule compressed to ``--steps`` (8e-4, warmup 100, cosine to
  10%), as the one-session set was trained (the recipe now peaks at 3.2e-3, ``cosine-4x``, after
  this measurement);
* ``constant``: 8e-4 after the warmup, no decay (what the uncut 31-chunk run still had at step 384);
* ``cosine-2x``, ``constant-2x``: the same with a peak of 1.6e-3; ``cosine-4x``, ``cosine-8x``: cosine with 3.2e-3, 6.4e-3.

The question it answers: at the one-session budget, does decaying the learning rate cost held-out
FVU (the one-session set ended worse than the uncut run's checkpoint at the same tokens)?
Prints each variant's held-out FVU and dead and rare fractions.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

VARIANTS = {"cosine": (8e-4, 0.1), "constant": (8e-4, 1.0), "cosine-2x": (1.6e-3, 0.1), "constant-2x": (1.6e-3, 1.0),
            "cosine-4x": (3.2e-3, 0.1), "cosine-8x": (6.4e-3, 0.1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layer", type=int, default=8)
    p.add_argument("--steps", type=int, default=384)
    p.add_argument("--windows", type=int, default=2048)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variants", nargs="+", default=["cosine", "constant", "cosine-2x", "constant-2x"], choices=list(VARIANTS))
    args = p.parse_args()

    import torch
    from layer_data import harvest_layer, held_out_figures, normalised, train_layer

    from scrying.models import default_cache_dir, load_model
    from scrying.transcoders.corpus_mix import CorpusMixConfig, build_mixed_corpus
    from scrying.transcoders.train import _data_rows, _init
    from scrying.transcoders.train_config import PRESETS
    from scrying.transcoders.train_loss import lr_at
    from scrying.transcoders.transcoder import TranscoderSpec

    torch.set_num_threads(args.threads)
    recipe = PRESETS["recipe"]
    model = load_model("gemma-3-270m")
    mix = build_mixed_corpus(Path(default_cache_dir()), CorpusMixConfig())

    started = time.perf_counter()
    x, y = harvest_layer(model, mix.train, args.layer, args.windows)
    xe, ye = harvest_layer(model, mix.heldout, args.layer, 128)
    x, y, xe, ye = normalised(x, y, xe, ye)
    sys.stdout.write(f"layer {args.layer}: {x.shape[0]} training rows ({args.steps * 2048 / x.shape[0]:.1f} passes), "
                     f"{xe.shape[0]} held out; harvest {time.perf_counter() - started:.0f} s\n")
    spec = TranscoderSpec(d_model=x.shape[-1], n_features=recipe.n_features, activation="topk", k=recipe.k, skip=True)
    data = _data_rows(recipe, args.layer)
    for variant in args.variants:
        peak, final = VARIANTS[variant]
        tc = _init(spec, recipe.seed * 1000 + args.layer, torch.float32, y.mean(0), x.mean(0), x if data else None, y if data else None)
        started = time.perf_counter()
        train_layer(tc, x, y, steps=args.steps, batch_size=recipe.batch_size, dead_after=recipe.dead_after, k_aux=recipe.k_aux,
                    aux_coef=recipe.aux_coef, lr_of_step=lambda step, peak=peak, final=final: lr_at(step, args.steps, peak, recipe.warmup_steps, final))
        fvu, dead, rare = held_out_figures(tc, xe, ye)
        sys.stdout.write(f"{variant} (peak {peak:g}, final {final:g} of it): {args.steps} steps in {time.perf_counter() - started:.0f} s: "
                         f"held-out FVU {fvu:.3f}, dead {dead:.1%}, rare {rare:.1%}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
