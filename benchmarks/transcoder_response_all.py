"""Does fixing the local response fix the graphs? Every layer fine-tuned with the response term,
then the gallery's three feature graphs validated with the result.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/transcoder_response_all.py --transcoders DIR --out OUT \
        [--steps 150] [--coef 1] [--windows 256] [--directions 2] [--lr 1e-4]

The experiment behind :mod:`benchmarks.transcoder_response_term` (one layer), on all of them:

1. **Rows**: ``--windows`` windows of 128 tokens spread evenly over the mix's training text; one
   forward pass per 16 records every layer's MLP input and output and its input norm's input.
2. **Directions**: each layer's active features on every row, computed once with the set as
   trained; per layer ``L >= 1`` and row, ``--directions`` decoder rows of features active on
   that row at earlier layers (a layer drawn uniformly, then one of its active features), carried
   through ``L``'s input norm with its scale frozen and scaled to unit length (as
   :func:`scrying.transcoders.local_response.decoder_directions`, from the cached features); the
   MLP's response to each (:func:`~scrying.transcoders.local_response.mlp_response`).
3. **Fine-tune** each layer ``L >= 1`` from the set's weights, ``--steps`` Adam steps of 1,024
   rows on ``|y - y_hat|^2 / var(y) + coef * sum |J_mlp v - J_tc v|^2 / sum |J_mlp v|^2``
   (layer 0, with no earlier features, is kept). Each finished layer is saved under
   ``OUT/.layers/`` at once; a rerun resumes from them.
4. **Write** the set to ``OUT`` (``config.yaml`` + ``layer_<i>.safetensors``; no labels: the
   features moved) and **report**: per layer held-out FVU and the local-response errors along
   decoder directions (64 held-out windows), then the three gallery prompts traced and validated
   on 100 nodes with the fine-tuned set: frozen vs real, with its interval.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from transcoder_response_term import fine_tune  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transcoders", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--coef", type=float, default=1.0)
    parser.add_argument("--windows", type=int, default=256)
    parser.add_argument("--directions", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    from safetensors.torch import load_file, save_file

    from scrying.attribution.trace import trace
    from scrying.models import default_cache_dir, load_model
    from scrying.models.adapter import mlp_input_norm
    from scrying.sites import Component, Site, hooks, recorded
    from scrying.transcoders import TranscoderBasis, read_transcoders, write_transcoders
    from scrying.transcoders.corpus import read_texts
    from scrying.transcoders.corpus_mix import CorpusMixConfig, build_mixed_corpus
    from scrying.transcoders.local_response import (
        local_response_report,
        mlp_response,
    )
    from scrying.transcoders.quality import quality_report
    from scrying.transcoders.train import first_windows, token_windows

    model = load_model("gemma-3-270m")
    tset = read_transcoders(args.transcoders)
    n = model.cfg.n_layers
    mix = build_mixed_corpus(Path(os.environ.get("SCRYING_CACHE_DIR") or default_cache_dir()), CorpusMixConfig())
    started = time.perf_counter()
    every = list(token_windows(model, read_texts([mix.train]), 128))
    train = torch.stack(every[:: max(1, len(every) // args.windows)][: args.windows])
    heldout = first_windows(model, read_texts([mix.heldout]), 128, 64, what=str(mix.heldout))
    ins, outs, norms = [tset.input_site(ly) for ly in range(n)], [tset.output_site(ly) for ly in range(n)], [Site(Component.LN2_IN, ly) for ly in range(n)]
    store_all: dict = {s: [] for s in ins + outs + norms}
    for batch in train.split(16):
        with torch.no_grad(), recorded(model, ins + outs + norms) as store:
            model(batch)
        for s in store_all:
            store_all[s].append(store[s][:, 1:].flatten(0, 1))
    x = [torch.cat(store_all[s]) for s in ins]
    y = [torch.cat(store_all[s]) for s in outs]
    norm_in = [torch.cat(store_all[s]) for s in norms]
    del store_all
    rows = len(x[0])
    active = []
    with torch.no_grad():
        for ly, tc in enumerate(tset.transcoders):
            pre = torch.cat([tc.pre_activations(part) for part in x[ly].split(4096)])
            vals, idx = pre.topk(tc.spec.k, dim=-1)
            active.append((idx, vals > 0))
            del pre
    print(f"{len(train)} training windows spread over {len(every):,} ({rows:,} rows), recorded with every layer's features in "
          f"{time.perf_counter() - started:.0f} s", flush=True)

    saved = args.out / ".layers"
    saved.mkdir(parents=True, exist_ok=True)
    tuned = list(tset.transcoders)
    for layer in range(1, n):
        path = saved / f"layer_{layer}.safetensors"
        if path.exists():
            tuned[layer] = copy.deepcopy(tset.transcoders[layer]).load_tensors(load_file(path))
            continue
        begun = time.perf_counter()
        gen = torch.Generator().manual_seed(layer)
        source = torch.randint(0, layer, (rows, args.directions), generator=gen)
        picked = torch.empty(rows, args.directions, x[0].shape[-1])
        for up in range(layer):
            idx, on = active[up]
            weights = on.double() + (on.sum(-1, keepdim=True) == 0)  # no feature active: any of the top k
            choice = idx.gather(1, torch.multinomial(weights, args.directions, replacement=True, generator=gen))
            where = source == up
            picked[where] = tset.transcoders[up].W_dec.detach()[choice[where]]
        v = torch.empty_like(picked)
        with hooks(model, [(Site(Component.LN2_SCALE, layer), lambda act, hook: act.detach())]):
            for start in range(0, rows, 512):
                part = slice(start, start + 512)
                xs = norm_in[layer][part][:, None].expand(-1, args.directions, -1).reshape(1, -1, x[0].shape[-1])
                _, out = torch.autograd.functional.jvp(mlp_input_norm(model, layer), xs, picked[part].reshape(1, -1, x[0].shape[-1]))
                v[part] = out.reshape(-1, args.directions, x[0].shape[-1])
        v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        target = torch.cat([mlp_response(model, layer, a, b) for a, b in zip(x[layer].split(256), v.split(256), strict=True)])
        tc = fine_tune(tset.transcoders[layer], x[layer], y[layer], v, target, steps=args.steps, lr=args.lr, coef=args.coef,
                       gen=gen).detached()
        save_file({k: p.contiguous() for k, p in tc.tensors().items()}, path)
        tuned[layer] = tc
        print(f"layer {layer}: {args.steps} steps in {time.perf_counter() - begun:.0f} s", flush=True)

    new = type(tset)(tuned, tset.model_name, tset.input_hook, tset.output_hook)
    write_transcoders(new, args.out)
    quality = quality_report(model, new, heldout)
    before = local_response_report(model, tset, heldout)
    after = local_response_report(model, new, heldout)
    old_quality = quality_report(model, tset, heldout)
    for ly in range(n):
        print(f"layer {ly}: held-out FVU {old_quality.fvu[ly]:.4f} -> {quality.fvu[ly]:.4f}; response error along decoder directions "
              f"{before.transcoder_error[ly]:.3f} -> {after.transcoder_error[ly]:.3f} (neurons {after.neuron_error[ly]:.3f})")
    print(f"mean held-out FVU {old_quality.fvu.mean():.4f} -> {quality.fvu.mean():.4f}; mean response error "
          f"{before.transcoder_error.mean():.3f} -> {after.transcoder_error.mean():.3f} (neurons {after.neuron_error.mean():.3f})", flush=True)
    prompts = [json.loads(line) for line in (HERE.parent / "graphs" / "gallery-features.jsonl").read_text().splitlines() if line.strip()]
    for item in prompts:
        result = trace(model, item["prompt"], basis=TranscoderBasis(new), cards=False, model_name="gemma-3-270m")
        report = result.pruned.metadata["validation"]["reports"]["frozen vs real, scale 0"]
        low, high = report["spearman_ci"]
        print(f"{item['id']}: frozen vs real {report['spearman']:.3f} [{low:.3f}, {high:.3f}] on {len(report['rows'])} nodes", flush=True)
    print(f"# OMP_NUM_THREADS={args.threads} .venv/bin/python benchmarks/transcoder_response_all.py --transcoders DIR --out OUT "
          f"--steps {args.steps} --coef {args.coef:g} --windows {args.windows} --directions {args.directions} --lr {args.lr:g}")


if __name__ == "__main__":
    main()
