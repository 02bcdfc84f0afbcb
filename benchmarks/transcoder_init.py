"""Dead features against encoder initialisation, on one layer of Gemma 3 270M.

    .venv/bin/python benchmarks/transcoder_init.py [--layer 4] [--steps 160] [--threads 1] \
        [--variants random centred centred-early centred-data]

Harvests one layer's MLP input and output on 512 windows of 128 tokens of the mix's training
text (65,024 rows past BOS) and 128 windows of its held-out text, normalises them as the recipe
does (one root-mean-square scale per side), and trains one recipe-shaped transcoder (8,192
TopK-64 features, skip, Adam 8e-4 with 100 warmup steps, batches of 2,048 rows drawn with a
seeded generator, AuxK 1/32 with k_aux 256) per variant for ``--steps`` steps:

* ``random``: the recipe's first initialisation (Gaussian unit encoder rows, ``b_enc`` = 0);
* ``centred``: the same rows, ``b_enc = -W_enc x_mean`` (``centre_encoder``);
* ``centred-early``: centred, AuxK counting a feature dead after 16,384 rows instead of 65,536;
* ``centred-data``: rows drawn from the centred inputs, centred (``encoder_init="data"``);
* ``centred-data-matched``: and the decoder scaled so that the first reconstructions are as
  large as the outputs' spread (``match_decoder``);
* ``centred-data-matched-early``: that, with AuxK counting a feature dead after 16,384 rows;
* ``centred-mixed-matched``: half the rows drawn from the centred inputs, half random, centred,
  the decoder matched.

Prints, per variant, the held-out FVU, dead (never fired on the held-out rows) and rare (fired
on fewer than one in 1,000) fractions, and the training's own dead share at the end. Measured
2026-12-06 (layer 4, 160 steps, 1 thread): random FVU 0.323, 54.9% dead; centred 0.306, 19.1%;
centred-early 0.306, 19.3%; centred-data 0.350, 5.0%; centred-data-matched 0.327, 6.0%.
Layer 16 (whose mean input holds 19% of its mean square; 160 steps, 1 thread, 2026-12-06):
centred-data-matched FVU 0.385, 36.9% dead; centred-data-matched-early the same; centred 0.348,
6.2%; centred-mixed-matched 0.389, 62.5% (the random half died), hence the recipe's
``random_init_layers``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layer", type=int, default=4)
    p.add_argument("--steps", type=int, default=160)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--variants", nargs="+", default=["random", "centred", "centred-early", "centred-data", "centred-data-matched"],
                   choices=["random", "centred", "centred-early", "centred-data", "centred-data-matched", "centred-data-matched-early",
                            "centred-mixed-matched"])
    args = p.parse_args()

    import torch
    from layer_data import harvest_layer, held_out_figures, normalised, train_layer

    from scrying.models import default_cache_dir, load_model
    from scrying.transcoders.corpus_mix import CorpusMixConfig, build_mixed_corpus
    from scrying.transcoders.train import _init
    from scrying.transcoders.train_loss import dead_mask
    from scrying.transcoders.transcoder import TranscoderSpec

    torch.set_num_threads(args.threads)
    model = load_model("gemma-3-270m")
    mix = build_mixed_corpus(Path(default_cache_dir()), CorpusMixConfig())

    x, y = harvest_layer(model, mix.train, args.layer, 512)
    xe, ye = harvest_layer(model, mix.heldout, args.layer, 128)
    x, y, xe, ye = normalised(x, y, xe, ye)
    share = float(x.mean(0).pow(2).sum() / x.pow(2).sum(-1).mean())
    sys.stdout.write(f"layer {args.layer}: {x.shape[0]} training rows, {xe.shape[0]} held out; the mean input holds {share:.1%} of the mean square\n")
    spec = TranscoderSpec(d_model=x.shape[-1], n_features=8192, activation="topk", k=64, skip=True)
    for variant in args.variants:
        centred = variant.startswith("centred")
        data = variant.startswith(("centred-data", "centred-mixed"))
        tc = _init(spec, 4, torch.float32, y.mean(0), x.mean(0) if centred else None, x if data else None,
                   y if variant.endswith(("-matched", "-matched-early")) else None,
                   data_share=0.5 if "mixed" in variant else 1.0)
        dead_after = 16_384 if variant.endswith("-early") else 65_536
        started = time.perf_counter()
        since = train_layer(tc, x, y, steps=args.steps, batch_size=2048, dead_after=dead_after, k_aux=256, aux_coef=1 / 32,
                            lr_of_step=lambda step: 8e-4 * min(1.0, (step + 1) / 100))
        fvu, dead, rare = held_out_figures(tc, xe, ye)
        sys.stdout.write(f"{variant}: {args.steps} steps in {time.perf_counter() - started:.0f} s: held-out FVU {fvu:.3f}, "
                         f"dead {dead:.1%}, rare {rare:.1%}; training's dead share {float(dead_mask(since, dead_after).float().mean()):.1%}\n")


if __name__ == "__main__":
    main()
