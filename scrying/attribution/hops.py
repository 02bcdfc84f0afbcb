"""Two-hop recall in one prompt: where the bridge entity lives, and whether the answer uses it.

The seed's example: "Fact: the capital of the state containing Dallas is" → (Texas) → Austin.
Anthropic's attribution-graph paper (Lindsey et al. 2025, "Biology of a Large Language Model",
§ multi-step reasoning) and circuit-tracer's tutorial test the hop by intervention: suppress the
features that stand for the bridge (Texas) and swap in another value (California), then read
whether the answer moves (Austin → Sacramento). Here the same questions are asked of the real
model, each as one table:

1. :func:`logit_lens` — rank and probability of named tokens decoded from the residual stream
   after every block (final norm, unembedding), at chosen positions: when does ' Texas' appear?
2. :func:`bridge_nodes` — a neuron graph's nodes (at chosen positions) ranked by how much their
   output writes the bridge token directly: activation × the ' Texas' direct-logit weight of the
   neuron's output row (:func:`~scrying.models.adapter.mlp_output_logits`, demeaned over the
   vocabulary), so a node "promotes Texas" by what it writes, not by a label.
3. :func:`ablate_neurons` — those neurons set to ``scale`` × their clean value in the real model
   (every other activation live); the probabilities of the answer and its alternative, next to
   the same ablation of an equal number of the graph's other nodes (the control).
4. :func:`steer` — the mean residual-stream difference between contexts of two bridge values
   (Texas cities vs California cities, read at the city's last token after block ``layer``)
   added to the prompt's residual stream at one position after one block; per layer, the
   answer's and the alternative's probabilities. If the state is what the answer reads, the
   California direction turns Austin into Sacramento.
5. :func:`shortcut_share` — in the graph, how much of the source token's influence on the answer
   logit flows through paths that avoid the bridge nodes (a direct Dallas → Austin shortcut)
   versus through them.

Nothing here is specific to Texas: tokens, positions and contexts are arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from scrying.attribution.graph import Graph
from scrying.axes import Float, Model, Tensor
from scrying.errors import InvalidInputError
from scrying.models.adapter import logits_at, mlp_output_logits, mlp_output_rows
from scrying.path_influence import influence, normalize_rows
from scrying.prompts import prepends_bos, single_token, token_strings, tokenize
from scrying.sites import Component, Site, hooks


@dataclass(frozen=True)
class ReadTokens:
    """The tokens an experiment reads: the answer (' Austin'), the alternative it should turn
    into under the swap (' Sacramento'), and the bridge token (' Texas')."""

    answer: str
    alternative: str
    bridge: str

    def ids(self, model: Model) -> dict[str, int]:
        return {
            name: single_token(model, text, what=f"{name} token")
            for name, text in (("answer", self.answer), ("alternative", self.alternative), ("bridge", self.bridge))
        }


@torch.no_grad()
def residual_streams(model: Model, tokens: Tensor) -> Float[Tensor, "layer batch pos d_model"]:
    """The residual stream after every block (``resid_post``), stacked by layer."""
    store: dict[int, Tensor] = {}

    def keep(layer: int):  # noqa: ANN202
        def fn(act: Tensor, hook: Any) -> None:
            store[layer] = act.detach().clone()

        return fn

    n = model.cfg.n_layers
    with hooks(model, [(Site(Component.RESID_POST, ly), keep(ly)) for ly in range(n)]):
        model(tokens, return_type=None)
    return torch.stack([store[ly] for ly in range(n)])


@torch.no_grad()
def logit_lens(model: Model, prompt: str, tokens: Sequence[str], positions: Sequence[int]) -> pd.DataFrame:
    """One row per (layer, position, token): the token's ``rank`` (0 = top) and ``prob`` decoded
    from the residual stream after that block, and the ``top`` token there."""
    ids = tokenize(model, prompt)
    strings = token_strings(model, ids[0])
    wanted = {t: single_token(model, t, what="lens token") for t in tokens}
    resid = residual_streams(model, ids)[:, 0]  # layer pos d_model
    n_pos = resid.shape[1]
    rows = []
    for pos in positions:
        if not -n_pos <= pos < n_pos:
            raise InvalidInputError(f"lens position {pos} is outside the prompt's {n_pos} tokens")
        logits = torch.cat(list(logits_at(model, resid[:, pos]))).double()  # layer vocab
        probs = logits.softmax(-1)
        top = logits.argmax(-1)
        for layer in range(resid.shape[0]):
            for text, tid in wanted.items():
                rows.append({
                    "layer": layer,
                    "pos": pos % n_pos,
                    "pos_token": strings[pos],
                    "token": text,
                    "rank": int((logits[layer] > logits[layer, tid]).sum()),
                    "prob": float(probs[layer, tid]),
                    "top": model.tokenizer.decode([int(top[layer])]),
                })
    return pd.DataFrame(rows)


@torch.no_grad()
def bridge_nodes(
    model: Model, graph: Graph, bridge: str, positions: Sequence[int], *, answer: str | None = None
) -> pd.DataFrame:
    """The graph's neuron nodes at ``positions``, each with ``writes``: its activation times the
    demeaned direct-logit weight of its output row on ``bridge`` (what it writes towards that
    token, up to the positive norm scales), sorted from the most promoting; with ``answer``,
    ``writes_answer`` the same for the answer token, so a node that writes the answer at least
    as much as the bridge can be told apart from one that stands for the bridge."""
    tid = single_token(model, bridge, what="bridge token")
    aid = single_token(model, answer, what="answer token") if answer is not None else None
    wanted = {p % len(graph.prompt_tokens) for p in positions}
    rows = []
    for node in graph.nodes:
        if node.kind != "feature" or node.pos not in wanted:
            continue
        direct = mlp_output_logits(model, node.layer, mlp_output_rows(model, node.layer, [node.feature]))[0].double()
        activation = float(node.activation or 0.0)
        row = {
            "node_id": node.node_id,
            "layer": node.layer,
            "pos": node.pos,
            "neuron": node.feature,
            "activation": activation,
            "writes": float(activation * (direct[tid] - direct.mean())),
            "influence": node.influence,
        }
        if aid is not None:
            row["writes_answer"] = float(activation * (direct[aid] - direct.mean()))
        rows.append(row)
    return pd.DataFrame(rows).sort_values("writes", ascending=False, ignore_index=True)


@torch.no_grad()
def ablate_neurons(
    model: Model, prompt: str, neurons: Sequence[tuple[int, int, int]], read: ReadTokens, *, scale: float = 0.0
) -> dict[str, float]:
    """Probabilities of the answer, the alternative and the bridge (at the last position) when
    every ``(layer, pos, neuron)`` is set to ``scale`` × its clean activation in the real model."""
    ids = tokenize(model, prompt)
    by_layer: dict[int, list[tuple[int, int]]] = {}
    for layer, pos, neuron in neurons:
        by_layer.setdefault(layer, []).append((pos, neuron))

    def edit(pairs: list[tuple[int, int]]):  # noqa: ANN202
        pos = torch.tensor([p for p, _ in pairs])
        idx = torch.tensor([i for _, i in pairs])

        def fn(act: Tensor, hook: Any) -> Tensor:
            act = act.clone()
            act[:, pos, idx] = act[:, pos, idx] * scale
            return act

        return fn

    with hooks(model, [(Site(Component.MLP_POST, ly), edit(pairs)) for ly, pairs in by_layer.items()]):
        probs = model(ids)[0, -1].double().softmax(-1)
    return {name: float(probs[tid]) for name, tid in read.ids(model).items()}


@torch.no_grad()
def state_direction(
    model: Model, template: str, towards: Sequence[str], away: Sequence[str]
) -> Float[Tensor, "layer d_model"]:
    """Mean residual stream (after each block) at the last token of the filler in ``template``
    filled with each of ``towards``, minus the same mean over ``away``."""
    def mean_at_filler(fillers: Sequence[str]) -> Tensor:
        rows = []
        for filler in fillers:
            ids, pos = _filled(model, template, filler)
            rows.append(residual_streams(model, ids)[:, 0, pos])
        return torch.stack(rows).mean(0)

    return mean_at_filler(towards) - mean_at_filler(away)


def _filled(model: Model, template: str, filler: str) -> tuple[Tensor, int]:
    """Tokens of ``template`` with ``{}`` filled, and the position of the filler's last token."""
    if template.count("{}") != 1:
        raise InvalidInputError(f"template {template!r} must hold exactly one '{{}}'")
    prefix = template.split("{}")[0]
    ids = tokenize(model, template.format(filler), what=f"template with {filler!r}")
    through = tokenize(model, prefix + filler, what=f"template head with {filler!r}").shape[-1]
    before = tokenize(model, prefix.rstrip(), what="template head").shape[-1] if prefix.strip() else int(prepends_bos(model))
    if through <= before:
        raise InvalidInputError(f"filler {filler!r} adds no token to {template!r}")
    return ids, through - 1


@torch.no_grad()
def steer(
    model: Model,
    prompt: str,
    direction: Float[Tensor, "layer d_model"],
    read: ReadTokens,
    *,
    pos: int,
    layers: Sequence[int],
    alpha: float = 1.0,
) -> pd.DataFrame:
    """Per layer: ``alpha`` × ``direction[layer]`` added to the residual stream after that block at
    ``pos``; the answer's, the alternative's and the bridge's probabilities at the last position."""
    ids = tokenize(model, prompt)
    tok = read.ids(model)
    rows = []
    for layer in layers:
        delta = (alpha * direction[layer]).to(next(model.parameters()).dtype)

        def add(act: Tensor, hook: Any, delta: Tensor = delta) -> Tensor:
            act = act.clone()
            act[:, pos] += delta
            return act

        with hooks(model, [(Site(Component.RESID_POST, layer), add)]):
            probs = model(ids)[0, -1].double().softmax(-1)
        rows.append({"layer": layer, "pos": pos % ids.shape[-1], "alpha": alpha,
                     **{f"p_{name}": float(probs[t]) for name, t in tok.items()},
                     "top": model.tokenizer.decode([int(probs.argmax())])})
    return pd.DataFrame(rows)


def shortcut_share(graph: Graph, source_pos: int, bridge: Sequence[str]) -> dict[str, float]:
    """The graph's influence of every node at ``source_pos`` (the source token's embedding and
    the neurons there) on the target logit: in total, and over the paths that avoid the
    ``bridge`` nodes (a shortcut past them). Influence is circuit-tracer's (sums over paths of
    products of row-normalised absolute edge weights); the avoiding part uses the same
    normalisation with the bridge nodes' rows and columns removed, so the two add up."""
    n_pos = len(graph.prompt_tokens)
    if not -n_pos <= source_pos < n_pos:
        raise InvalidInputError(f"source position {source_pos} is outside the prompt's {n_pos} tokens")
    target = next(i for i, node in enumerate(graph.nodes) if node.kind == "logit" and node.is_target)
    sources = [i for i, node in enumerate(graph.nodes) if node.pos == source_pos % n_pos and node.kind in ("embedding", "feature")]
    if not sources:
        raise InvalidInputError(f"the graph has no embedding or feature node at position {source_pos}")
    names = set(bridge)
    through = torch.tensor([node.node_id in names for node in graph.nodes])
    weights = torch.zeros(len(graph.nodes), dtype=torch.float64)
    weights[target] = 1.0
    normalized = normalize_rows(graph.adjacency)
    full = influence(normalized, weights)
    cut = normalized.clone()
    cut[through] = 0.0
    cut[:, through] = 0.0
    avoiding = float(influence(cut, weights)[sources].sum())
    total = float(full[sources].sum())
    direct = float(normalized[target, sources].sum())
    return {
        "total": total,
        "avoiding_bridge": avoiding,
        "through_bridge": total - avoiding,
        "share_avoiding": avoiding / total if total else float("nan"),
        "direct_to_answer": direct,
    }
