"""Feature-level attribution graphs in the neuron basis (exact, no trained dictionary).

Algorithm (circuit-tracer's, Ameisen et al. 2025 §2-3, with MLP neurons as features):

1. **Clean run** — record norm scales, attention patterns, MLP gates, neuron activations and the
   first residual (:mod:`scrying.attribution.replacement`).
2. **Logit targets** — the requested token (or the top-1) plus the most likely tokens up to
   ``logit_probability`` cumulative mass (at most ``max_logits``); each target is its logit
   minus the mean logit over the vocabulary (demeaned, as circuit-tracer does).
3. **Feature selection** — total effect of the probability-weighted logit targets on every
   neuron in the frozen model (activation x gradient, one backward pass); keep the
   ``max_feature_nodes`` largest in magnitude. All other neurons at a (layer, position) are
   lumped into that position's *error node*, so nothing is dropped: error = unselected neurons.
   Position 0 (the BOS token, an attention sink whose linearisation is poor) gets no feature
   nodes by default, as circuit-tracer zeroes transcoder features there.
4. **Edges** — for batches of targets (selected neurons and logits), seed the backward pass with
   each target's value on its own copy of the prompt, with MLP outputs cut from the gradient,
   and read direct effects = activation x gradient at every source (neurons, error nodes,
   embeddings) in one backward per batch.
5. **Bias terms** — each node's value minus its incoming edges (zero for bias-free models such
   as Llama and Gemma: the frozen model is linear and homogeneous).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from scrying.attribution.graph import Graph, Node
from scrying.attribution.replacement import CleanRun, attribution_pass, clean_run
from scrying.errors import ConfigError
from scrying.prompts import single_token, token_strings, tokenize

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class NeuronGraphConfig:
    """How to build a neuron-basis attribution graph."""

    max_feature_nodes: int = 200
    max_logits: int = 5
    logit_probability: float = 0.95
    batch_size: int = 16
    exclude_bos: bool = True  # no feature nodes at position 0, as circuit-tracer (zero_positions)
    progress: bool = False

    def __post_init__(self) -> None:
        if self.max_feature_nodes < 0:
            raise ConfigError(f"NeuronGraphConfig.max_feature_nodes must be >= 0, got {self.max_feature_nodes}")
        if self.max_logits < 1:
            raise ConfigError(f"NeuronGraphConfig.max_logits must be >= 1, got {self.max_logits}")
        if not 0 < self.logit_probability <= 1:
            raise ConfigError(f"NeuronGraphConfig.logit_probability must be in (0, 1], got {self.logit_probability}")
        if self.batch_size < 1:
            raise ConfigError(f"NeuronGraphConfig.batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class LogitTarget:
    token_id: int
    token: str
    probability: float


def logit_targets(model: Any, clean: CleanRun, target: str | None, config: NeuronGraphConfig) -> list[LogitTarget]:
    """The requested (or top-1) token first, then likely tokens up to the probability mass."""
    probs = clean.logits[-1].double().softmax(-1)
    order = probs.argsort(descending=True).tolist()
    first = single_token(model, target, what="target token") if target is not None else order[0]
    chosen = [first]
    mass = float(probs[first])
    for token_id in order:
        if len(chosen) >= config.max_logits or mass >= config.logit_probability:
            break
        if token_id != first:
            chosen.append(token_id)
            mass += float(probs[token_id])
    return [LogitTarget(t, model.tokenizer.decode([t]), float(probs[t])) for t in chosen]


def _demeaned(logits: torch.Tensor, token_id: int) -> torch.Tensor:
    return logits[..., token_id] - logits.mean(-1)


def select_features(
    model: Any, clean: CleanRun, targets: list[LogitTarget], k: int, *, exclude_bos: bool = True
) -> list[tuple[int, int, int]]:
    """The ``k`` neurons with the largest total effect on the weighted logit targets."""
    n_layers, n_pos, d_mlp = clean.post.shape
    first = 1 if exclude_bos else 0
    if k >= n_layers * (n_pos - first) * d_mlp:
        return [(ly, p, i) for ly in range(n_layers) for p in range(first, n_pos) for i in range(d_mlp)]
    with attribution_pass(model, clean, 1, cut_mlps=False) as leaves:
        logits = model(clean.tokens)[0, -1]
        seed = sum(t.probability * _demeaned(logits, t.token_id) for t in targets)
        seed.backward()
    grads = torch.stack([_grad(leaves.post[ly])[0] for ly in range(n_layers)])
    effect = (grads * clean.post).abs()
    if exclude_bos:
        effect[:, 0] = -1.0
    top = effect.flatten().topk(k).indices
    layer, rest = top // (n_pos * d_mlp), top % (n_pos * d_mlp)
    picked = sorted(zip(layer.tolist(), (rest // d_mlp).tolist(), (rest % d_mlp).tolist(), strict=True))
    return picked


def build_neuron_graph(
    model: Any,
    prompt: str,
    target: str | None = None,
    config: NeuronGraphConfig | None = None,
    *,
    model_name: str = "",
) -> Graph:
    """The neuron-basis attribution graph of ``prompt`` towards ``target`` (default: top-1)."""
    config = config or NeuronGraphConfig()
    tokens = tokenize(model, prompt)
    clean = clean_run(model, tokens)
    targets = logit_targets(model, clean, target, config)
    features = select_features(model, clean, targets, config.max_feature_nodes, exclude_bos=config.exclude_bos)
    n_layers, n_pos, d_mlp = clean.post.shape
    strings = token_strings(model, tokens[0])

    nodes: list[Node] = []
    for ly, p, i in features:
        nodes.append(Node(f"{ly}_{i}_{p}", "feature", ly, p, i, f"L{ly} neuron {i}", float(clean.post[ly, p, i])))
    for ly in range(n_layers):
        for p in range(n_pos):
            nodes.append(Node(f"{ly}_-1_{p}", "error", ly, p, -1, f"L{ly} other neurons @{p}"))
    for p, token_id in enumerate(tokens[0].tolist()):
        nodes.append(Node(f"E_{token_id}_{p}", "embedding", -1, p, token_id, f"{strings[p]!r} @{p}"))
    for t in targets:
        nodes.append(
            Node(
                f"{n_layers + 1}_{t.token_id}_{n_pos - 1}", "logit", n_layers, n_pos - 1, t.token_id,
                f"Output {t.token!r} (p={t.probability:.3f})", None, None, t.probability, t is targets[0],
            )
        )
    n_feat, n_err = len(features), n_layers * n_pos
    n = len(nodes)
    dtype = clean.post.dtype
    adjacency = torch.zeros(n, n, dtype=dtype)
    values = torch.zeros(n, dtype=dtype)

    feature_index = torch.tensor(features, dtype=torch.long).reshape(-1, 3)
    selected_mask = torch.zeros(n_layers, n_pos, d_mlp, dtype=torch.bool)
    if n_feat:
        selected_mask[feature_index[:, 0], feature_index[:, 1], feature_index[:, 2]] = True

    rows: list[tuple[int, Any]] = [(r, ("feature", features[r])) for r in range(n_feat)]
    rows += [(n - len(targets) + j, ("logit", t.token_id)) for j, t in enumerate(targets)]
    batches = [rows[i : i + config.batch_size] for i in range(0, len(rows), config.batch_size)]
    for batch in tqdm(batches, disable=not config.progress, desc="attribution"):
        kinds = {kind for _, (kind, _) in batch}
        # Batches of neuron targets stop after the last target layer: no unembedding needed.
        stop = None if "logit" in kinds else max(what[0] for _, (_, what) in batch) + 1
        with attribution_pass(model, clean, len(batch)) as leaves:
            logits = model(tokens.expand(len(batch), -1), stop_at_layer=stop)
            seeds = []
            for b, (_, (kind, what)) in enumerate(batch):
                if kind == "feature":
                    ly, p, i = what
                    seeds.append(leaves.live_post[ly][b, p, i])
                else:
                    seeds.append(_demeaned(logits[b, -1], what))
            seed = torch.stack(seeds)
            seed.sum().backward()
        missing = torch.zeros(len(batch), n_pos, d_mlp, dtype=dtype)  # layers after a stop
        grads = torch.stack(
            [_grad(leaves.post[ly]) if ly in leaves.post else missing for ly in range(n_layers)], dim=1
        )  # batch layer pos d_mlp
        contrib = grads * clean.post.unsqueeze(0)
        embed = (_grad(leaves.resid0) * clean.resid0.unsqueeze(0)).sum(-1)  # b pos
        for b, (row, _) in enumerate(batch):
            if n_feat:
                adjacency[row, :n_feat] = contrib[b][selected_mask]
            adjacency[row, n_feat : n_feat + n_err] = (contrib[b] * ~selected_mask).sum(-1).flatten()
            adjacency[row, n_feat + n_err : n_feat + n_err + n_pos] = embed[b]
            values[row] = seed[b].detach()
    # select_features returns (layer, pos, index) in sorted order, the order selected_mask flattens.
    bias = values - adjacency.sum(-1)
    bias[n_feat : n - len(targets)] = 0.0  # error and embedding nodes have no inputs
    return Graph(
        prompt=prompt,
        prompt_tokens=strings,
        model_name=model_name,
        level="neurons",
        nodes=nodes,
        adjacency=adjacency,
        bias=bias,
        metadata={
            "targets": [t.token for t in targets],
            "max_feature_nodes": config.max_feature_nodes,
            "n_neurons_total": n_layers * n_pos * d_mlp,
            "node_values": values.tolist(),
        },
    )


def _grad(leaf: torch.Tensor) -> torch.Tensor:
    """A leaf's gradient; zeros where the backward pass never reached it."""
    return leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
