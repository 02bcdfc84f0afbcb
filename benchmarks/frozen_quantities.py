"""Which quantity the local replacement model freezes makes its first-order prediction of an
ablation disagree with the real model (issue 21: why feature graphs miss the real model).

    .venv/bin/python benchmarks/frozen_quantities.py --transcoders DIR [--nodes 100]

For each gallery feature prompt (``graphs/gallery-features.jsonl``) and each basis (the set's
transcoder features; the MLP neurons), the ``--nodes`` active nodes with the largest
``|activation x gradient|`` of the demeaned target logit (the target: the model's top-1 token) in
the real model. Each is ablated in the real model: ``activation x row`` subtracted from the MLP's
output (``mlp.hook_out``) at its position, ``row`` its decoder row (a feature) or its column of
the MLP's output projection (a neuron), a forward pass each. Predicted change:
``-activation x row . gradient`` with the gradient taken in the real model with one kind of
quantity held at its clean value (its gradient cut: what the local replacement model freezes),
alone, then together. The table: Spearman of predicted against measured, per prompt, basis and
what was held, with its 95% bootstrap interval over the nodes (:func:`scrying.stats.spearman`).
The MLPs stay real and live throughout (their gates and the transcoders' masks are not held; the
transcoders' own error is validation's last stages); no graph is built: the candidates are the
real gradient's top nodes, not a graph's, which favours the real gradient's own row.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT / "graphs" / "gallery-features.jsonl"


def _held(n_layers: int) -> dict[str, list]:
    """What can be held, by name: the norms of each kind and the attention patterns."""
    from scrying.sites import Component, Site

    per_layer = {
        "attention patterns": [Component.PATTERN],
        "pre-attention norms": [Component.LN1_SCALE],
        "post-attention norms": [Component.LN1_POST_SCALE],
        "pre-MLP norms": [Component.LN2_SCALE],
        "post-MLP norms": [Component.LN2_POST_SCALE],
        "q/k norms": [Component.Q_NORM_SCALE, Component.K_NORM_SCALE],
    }
    held = {name: [Site(c, layer) for layer in range(n_layers) for c in comps] for name, comps in per_layer.items()}
    held["final norm"] = [Site(Component.FINAL_SCALE)]
    norms = [s for name, sites in held.items() if name != "attention patterns" for s in sites]
    held["every norm"] = norms
    held["every norm but the final"] = [s for s in norms if s.component != Component.FINAL_SCALE]
    held["every norm and pattern (MLPs real)"] = norms + held["attention patterns"]
    held["every norm and pattern but the final norm (MLPs real)"] = held["every norm but the final"] + held["attention patterns"]
    return held


def _one_prompt(model, tset, held: dict[str, list], prompt: str, n_nodes: int) -> list[tuple[str, str, object]]:
    """``(basis, held, spearman estimate)`` rows of one prompt (module docstring)."""
    from scrying.models.adapter import mlp_output_rows
    from scrying.prompts import tokenize
    from scrying.sites import Component, Site, hooks, recorded
    from scrying.stats import spearman

    n_layers = model.cfg.n_layers
    outputs = [Site(Component.MLP_RESULT, layer) for layer in range(n_layers)]  # where neurons write, and this set
    tokens = tokenize(model, prompt)
    sites = sorted({s for frozen in held.values() for s in frozen}, key=str)
    sites += [tset.input_site(layer) for layer in range(n_layers)] + [Site(Component.MLP_POST, layer) for layer in range(n_layers)]
    with torch.no_grad(), recorded(model, sites, clone=True) as clean:
        logits = model(tokens)
    target = int(logits[0, -1].argmax())

    def metric(out: torch.Tensor) -> torch.Tensor:  # the demeaned target logit
        return out[0, -1, target] - out[0, -1].mean()

    base = float(metric(logits))

    def gradients(frozen: list[Site]) -> list[torch.Tensor]:
        leaves = [torch.zeros(1, tokens.shape[1], model.cfg.d_model, dtype=logits.dtype, requires_grad=True) for _ in outputs]
        fwd = [(site, lambda act, hook, v=clean[site]: v.to(act.dtype)) for site in frozen]
        fwd += [(site, lambda act, hook, leaf=leaf: act + leaf.to(act.dtype)) for site, leaf in zip(outputs, leaves, strict=True)]
        with hooks(model, fwd):
            metric(model(tokens)).backward()
        return [leaf.grad[0] for leaf in leaves]

    real = gradients([])
    by_held = {"nothing (the real gradient)": real} | {name: gradients(frozen) for name, frozen in held.items()}
    candidates: dict[str, list[tuple[float, int, int, torch.Tensor]]] = {"features": [], "neurons": []}
    for layer in range(n_layers):
        acts = tset.transcoders[layer].encode(clean[tset.input_site(layer)][0]).detach()
        dec = tset.transcoders[layer].W_dec.detach()
        post = clean[Site(Component.MLP_POST, layer)][0]
        rows = mlp_output_rows(model, layer, list(range(model.cfg.d_mlp))).detach()
        for pos in range(1, tokens.shape[1]):  # position 0: BOS, no nodes (as in the graphs)
            grad = real[layer][pos]
            for index in acts[pos].nonzero().flatten().tolist():
                vector = float(acts[pos, index]) * dec[index]
                candidates["features"].append((abs(float(vector @ grad)), layer, pos, vector))
            scores = post[pos] * (rows.to(grad.dtype) @ grad)
            for index in scores.abs().topk(n_nodes).indices.tolist():
                vector = float(post[pos, index]) * rows[index]
                candidates["neurons"].append((abs(float(vector @ grad)), layer, pos, vector))
    out = []
    for basis, found in candidates.items():
        chosen = sorted(found, key=lambda c: -c[0])[:n_nodes]
        measured = []
        for _, layer, pos, vector in chosen:
            def ablate(act: torch.Tensor, hook: object, pos: int = pos, vector: torch.Tensor = vector) -> torch.Tensor:
                act = act.clone()
                act[:, pos] -= vector.to(act.dtype)
                return act

            with torch.no_grad(), hooks(model, [(outputs[layer], ablate)]):
                measured.append(float(metric(model(tokens))) - base)
        for name, grads in by_held.items():
            predicted = [-float(vector.to(grads[layer].dtype) @ grads[layer][pos]) for _, layer, pos, vector in chosen]
            out.append((basis, name, spearman(predicted, measured)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transcoders", type=Path, required=True)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    from scrying.errors import InvalidInputError
    from scrying.models import load_model
    from scrying.sites import Component, Site
    from scrying.transcoders import read_transcoders

    started = time.perf_counter()
    tset = read_transcoders(args.transcoders)
    if tset.output_site(0) != Site(Component.MLP_RESULT, 0):
        raise InvalidInputError(f"{args.transcoders}: the set writes at {tset.output_hook!r}; this benchmark ablates at mlp.hook_out")
    model = load_model(tset.model_name or "gemma-3-270m")
    held = _held(model.cfg.n_layers)
    prompts = [json.loads(line)["prompt"] for line in PROMPTS.read_text().splitlines() if line.strip()]
    print(f"# benchmarks/frozen_quantities.py --transcoders {args.transcoders.name} --nodes {args.nodes}")
    print("prompt\tbasis\theld\tspearman\tlow\thigh")
    for prompt in prompts:
        for basis, name, rho in _one_prompt(model, tset, held, prompt, args.nodes):
            print(f"{prompt}\t{basis}\t{name}\t{rho.value:.3f}\t{rho.ci_low:.3f}\t{rho.ci_high:.3f}", flush=True)
    print(f"# {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
