"""Feature-level attribution graphs in any feature basis: one builder, one :class:`Graph`.

The basis (:mod:`scrying.attribution.basis`) says what the features are; the neuron basis
(:class:`~scrying.attribution.basis.NeuronBasis`, exact, no trained dictionary) is the default
and :func:`build_neuron_graph` its shorthand. A transcoder basis adds its features, its error
terms and its labels through this same builder.

Algorithm (circuit-tracer's, Ameisen et al. 2025 §2-3):

1. **Clean run** — record norm scales, attention patterns, what the basis freezes (MLP gates),
   feature activations and the first residual (:mod:`scrying.attribution.replacement`).
2. **Logit targets** — the requested token (or the top-1) plus the most likely tokens up to
   ``logit_probability`` cumulative mass (at most ``max_logits``); each target is its logit
   minus the mean logit over the vocabulary (demeaned, as circuit-tracer does).
3. **Feature selection** — total effect of the probability-weighted logit targets on every
   feature in the frozen model (activation x gradient, one backward pass); keep the
   ``max_feature_nodes`` largest in magnitude. All other features at a (layer, position) are
   lumped into that position's *error node*, with the basis's own error term there (a
   transcoder's reconstruction error; none for neurons), so nothing is dropped. Position 0 (the
   BOS token, an attention sink whose linearisation is poor) gets no feature nodes by default,
   as circuit-tracer zeroes transcoder features there.
4. **Edges** — for batches of targets (selected features and logits), seed the backward pass
   with each target's value on its own copy of the prompt, with features cut from the gradient,
   and read direct effects = activation x gradient at every source (features, error nodes,
   embeddings) in one backward per batch. All targets share one forward pass of ``batch_size``
   copies up to the last block, whose graph every batch's backward pass reuses (circuit-tracer's
   phases 1-4); logit targets read the final norm (clean scale) at the last position and only
   their own columns of the unembedding with its mean row (the demeaned logit), so no pass
   reads the whole vocabulary. Features are tracked in the compact order of the basis's
   :class:`~scrying.attribution.basis.ActiveSet`: a transcoder's active features only, whose
   gradients are contracted with their decoder rows alone.
5. **Bias terms** — each node's value minus its incoming edges (zero for bias-free models such
   as Llama and Gemma: the frozen model is linear and homogeneous). A transcoder's decoder bias
   ``b_dec`` is such a constant. Position 0 is one too: its residual stream depends on the first
   token alone, and with a transcoder basis its nodes (the error nodes hold the whole MLP
   output there, since no features are kept at position 0) carry thousands of logits that
   cancel against the transcoders' bias constants, ``b_enc`` and ``b_dec`` (Gemma 3 270M, Dallas prompt: +9,782 from its error
   nodes and +481 from its embedding against a target logit of 30.4), which would make
   influence, pruning and the scores about them alone (no feature survived pruning). For
   inexact bases (``bos_error_as_bias``, default) position 0's error and embedding nodes are
   therefore moved into the bias terms, with the transcoders' biases: every node's value is still its
   edges plus its bias.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from tqdm.auto import tqdm

from scrying.attribution.basis import FeatureBasis, NeuronBasis
from scrying.attribution.graph import Graph
from scrying.attribution.nodes import (
    LogitTarget,
    Node,
    embedding_node,
    error_node,
    feature_node,
    logit_node,
)
from scrying.attribution.replacement import (
    CleanRun,
    Leaves,
    attribution_pass,
    checked_clean_run,
    clean_run,
    frozen_demeaned_logits,
)
from scrying.axes import Float, Int, Model, Tensor
from scrying.errors import ConfigError
from scrying.models.adapter import final_resid
from scrying.prompts import single_token, token_strings, tokenize

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class FeatureGraphConfig:
    """How to build a feature-level attribution graph."""

    max_feature_nodes: int = 200
    max_logits: int = 5
    logit_probability: float = 0.95
    batch_size: int = 16
    # No feature nodes at position 0 when it holds a special token (BOS), as circuit-tracer
    # (zero_positions where the first token is special); a model without BOS keeps them.
    exclude_bos: bool = True
    # With exclude_bos: position 0's error and embedding nodes become part of each node's constant
    # (bias) term.
    # None: yes for inexact bases (transcoders), no for exact ones (neurons). See step 5 above.
    bos_error_as_bias: bool | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if self.max_feature_nodes < 0:
            raise ConfigError(f"FeatureGraphConfig.max_feature_nodes must be >= 0, got {self.max_feature_nodes}")
        if self.max_logits < 1:
            raise ConfigError(f"FeatureGraphConfig.max_logits must be >= 1, got {self.max_logits}")
        if not 0 < self.logit_probability <= 1:
            raise ConfigError(f"FeatureGraphConfig.logit_probability must be in (0, 1], got {self.logit_probability}")
        if self.batch_size < 1:
            raise ConfigError(f"FeatureGraphConfig.batch_size must be >= 1, got {self.batch_size}")


def logit_targets(model: Model, clean: CleanRun, target: str | None, config: FeatureGraphConfig) -> list[LogitTarget]:
    """The requested (or top-1) token first, then likely tokens up to the probability mass."""
    probs = clean.last_logits.double().softmax(-1)
    # The max_logits + 1 most likely: enough for max_logits - 1 tokens other than the first.
    order = probs.topk(min(config.max_logits + 1, probs.shape[-1])).indices.tolist()
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


def select_features(
    model: Model, clean: CleanRun, targets: list[LogitTarget], k: int, *, exclude_bos: bool = True
) -> list[tuple[int, int, int]]:
    """The ``k`` features with the largest total effect on the weighted logit targets, among
    those the frozen model can move (a sparse basis's active features), sorted by
    ``(layer, pos, index)``."""
    with attribution_pass(model, clean, 1, cut=False) as leaves:
        resid = final_resid(model, clean.tokens)
    columns = torch.tensor([[t.token_id for t in targets]])
    logits = frozen_demeaned_logits(model, clean, resid[:, -1], columns)[0]  # the last position only
    seed = (logits * torch.tensor([t.probability for t in targets], dtype=logits.dtype)).sum()
    seed.backward()
    effects = []
    for ly, active in enumerate(leaves.active):
        effect = (_grad(leaves.features[ly])[0] * active.compact(clean.features[ly])).abs()
        if exclude_bos:
            effect[active.pos == 0] = -1.0
        effects.append(effect)
    effect = torch.cat(effects)
    eligible = int((effect >= 0).sum())
    top = effect.topk(min(k, eligible)).indices
    offsets = torch.tensor([0, *torch.cumsum(torch.tensor([len(a) for a in leaves.active]), 0).tolist()])
    layer = torch.searchsorted(offsets, top, right=True) - 1
    picked = []
    for ly in layer.unique().tolist():
        pos, index = leaves.active[ly].coords_of(top[layer == ly] - offsets[ly])
        picked += [(ly, p, i) for p, i in zip(pos.tolist(), index.tolist(), strict=True)]
    return sorted(picked)


def build_neuron_graph(
    model: Model,
    prompt: str,
    target: str | None = None,
    config: FeatureGraphConfig | None = None,
    *,
    model_name: str = "",
) -> Graph:
    """The neuron-basis attribution graph of ``prompt`` towards ``target`` (default: top-1)."""
    return build_feature_graph(model, prompt, target, config, basis=NeuronBasis(), model_name=model_name)


def build_feature_graph(
    model: Model,
    prompt: str,
    target: str | None = None,
    config: FeatureGraphConfig | None = None,
    *,
    basis: FeatureBasis,
    model_name: str = "",
    clean: CleanRun | None = None,
) -> Graph:
    """The attribution graph of ``prompt`` towards ``target`` (default: top-1) in ``basis``
    (phases 1-5 of the module docstring); ``clean``: the prompt's clean run in ``basis``, where
    the caller has it (:func:`~scrying.attribution.trace.trace` shares one with validation)."""
    config = config or FeatureGraphConfig()
    tokens = tokenize(model, prompt)
    clean = checked_clean_run(clean, tokens, basis) if clean is not None else clean_run(model, tokens, basis)
    targets = logit_targets(model, clean, target, config)
    exclude_bos = config.exclude_bos and starts_with_special(model, tokens)
    features = select_features(model, clean, targets, config.max_feature_nodes, exclude_bos=exclude_bos)
    strings = token_strings(model, tokens[0])
    layout = Layout(len(features), *clean.features.shape[:2], len(targets))
    adjacency, values = direct_effects(model, clean, features, targets, layout, config)
    fold = exclude_bos and (not basis.exact if config.bos_error_as_bias is None else config.bos_error_as_bias)
    if fold:  # position 0 is a constant of the prompt's first token: its errors join the constants
        adjacency[:, [layout.errors(ly).start for ly in range(layout.n_layers)] + [layout.embeddings.start]] = 0.0
    bias = bias_terms(adjacency, values, layout)
    return Graph(
        prompt=prompt,
        prompt_tokens=strings,
        model_name=model_name,
        level=basis.name,
        nodes=graph_nodes(clean, features, targets, basis, strings),
        adjacency=adjacency,
        bias=bias,
        metadata={
            "targets": [t.token for t in targets],
            "max_feature_nodes": config.max_feature_nodes,
            "basis": basis.name,
            "exact_basis": basis.exact,
            "feature_type": basis.feature_type,
            "n_features_total": int(clean.features.numel()),
            "node_values": values.tolist(),
            "bos_error_as_bias": fold,
        },
    )


def starts_with_special(model: Model, tokens: Int[Tensor, "1 pos"]) -> bool:
    """Whether position 0 holds a special token (BOS and the like), as circuit-tracer decides
    whether to zero it."""
    special = set(getattr(model.tokenizer, "all_special_ids", []) or [])
    return int(tokens[0, 0]) in special


class Layout(NamedTuple):
    """Where each kind of node sits in the graph's order: the ``n_feat`` selected features,
    then one error node per (layer, position), one embedding per position, the logits."""

    n_feat: int
    n_layers: int
    n_pos: int
    n_logits: int

    @property
    def n_err(self) -> int:
        return self.n_layers * self.n_pos

    @property
    def n(self) -> int:
        return self.n_feat + self.n_err + self.n_pos + self.n_logits

    def errors(self, layer: int) -> slice:
        """The error nodes of ``layer``, one per position."""
        return slice(self.n_feat + layer * self.n_pos, self.n_feat + (layer + 1) * self.n_pos)

    @property
    def embeddings(self) -> slice:
        return slice(self.n_feat + self.n_err, self.n_feat + self.n_err + self.n_pos)


def graph_nodes(
    clean: CleanRun, features: list[tuple[int, int, int]], targets: list[LogitTarget], basis: FeatureBasis, strings: list[str]
) -> list[Node]:
    """The nodes in :class:`Layout`'s order (the logits at the last position, the first one the
    target)."""
    n_layers, n_pos, _ = clean.features.shape
    nodes = [feature_node(ly, p, i, basis.label(ly, i), float(clean.features[ly, p, i])) for ly, p, i in features]
    nodes += [error_node(ly, p, basis.name) for ly in range(n_layers) for p in range(n_pos)]
    nodes += [embedding_node(p, token_id, strings[p]) for p, token_id in enumerate(clean.tokens[0].tolist())]
    nodes += [logit_node(n_layers, n_pos - 1, t, is_target=j == 0) for j, t in enumerate(targets)]
    return nodes


class _Sources(NamedTuple):
    """What an attribution pass's gradients are read against: per layer, the clean activations
    in the compact order of its :class:`~scrying.attribution.basis.ActiveSet` (``clean_active``),
    the compact entries of the layer's selected features (``selected``), and their first node
    (``starts``, one more entry at the end)."""

    clean_active: list[Tensor]
    selected: list[Tensor]
    starts: list[int]


def direct_effects(
    model: Model,
    clean: CleanRun,
    features: list[tuple[int, int, int]],
    targets: list[LogitTarget],
    layout: Layout,
    config: FeatureGraphConfig,
) -> tuple[Float[Tensor, "node node"], Float[Tensor, " node"]]:
    """Phase 4: every edge, and each target's value (its seed), in batches of targets.

    One forward pass for every target (circuit-tracer's phases 1-4): ``copies`` copies of the
    prompt up to the last block, whose graph each batch's backward pass reuses; logits only at
    the last position and only the targets' columns (:func:`frozen_demeaned_logits`).
    """
    dtype = clean.features.dtype
    adjacency = torch.zeros(layout.n, layout.n, dtype=dtype)
    values = torch.zeros(layout.n, dtype=dtype)
    feature_rows = [(r, ("feature", features[r])) for r in range(layout.n_feat)]
    logit_rows = [(layout.n - len(targets) + j, ("logit", t.token_id)) for j, t in enumerate(targets)]
    copies = min(config.batch_size, max(layout.n_feat, len(targets)))
    with attribution_pass(model, clean, copies) as leaves:
        resid = final_resid(model, clean.tokens.expand(copies, -1))
    sources = _sources(clean, leaves, features, layout.n_layers)
    batches = _chunks(logit_rows, config.batch_size) + _chunks(feature_rows, config.batch_size)
    bar = tqdm(total=len(feature_rows) + len(logit_rows), disable=not config.progress, desc="attribution")
    for k, batch in enumerate(batches):
        seed = _seeds(model, clean, leaves, resid, batch)
        _clear_grads(leaves)
        seed.sum().backward(retain_graph=k < len(batches) - 1)
        rows = torch.tensor([row for row, _ in batch])
        adjacency[rows] = _batch_effects(clean, leaves, sources, layout, len(batch))
        values[rows] = seed.detach()
        bar.update(len(batch))
    bar.close()
    return adjacency, values


def _sources(clean: CleanRun, leaves: Leaves, features: list[tuple[int, int, int]], n_layers: int) -> _Sources:
    """The :class:`_Sources` of an attribution pass. ``features`` are sorted by
    ``(layer, pos, index)`` (:func:`select_features`), the compact order of every ActiveSet."""
    index: Int[Tensor, "feat 3"] = torch.tensor(features, dtype=torch.long).reshape(-1, 3)
    per_layer = torch.bincount(index[:, 0], minlength=n_layers) if len(features) else torch.zeros(n_layers, dtype=torch.long)
    starts = [0, *torch.cumsum(per_layer, 0).tolist()]
    clean_active = [a.compact(clean.features[ly]) for ly, a in enumerate(leaves.active)]
    selected = [
        leaves.active[ly].lookup(index[starts[ly] : starts[ly + 1], 1], index[starts[ly] : starts[ly + 1], 2])
        for ly in range(n_layers)
    ]
    return _Sources(clean_active, selected, starts)


def _batch_effects(clean: CleanRun, leaves: Leaves, sources: _Sources, layout: Layout, nb: int) -> Float[Tensor, "batch node"]:
    """The direct effects on a batch's ``nb`` targets (read after its backward pass) of every
    source: activation x gradient at the selected features; at the error nodes, the unselected
    features' effects summed per position plus the basis's error term; at the embeddings."""
    dtype = clean.features.dtype
    out = torch.zeros(nb, layout.n, dtype=dtype)
    starts = sources.starts
    for ly in range(layout.n_layers):
        leaf = leaves.features.get(ly)
        if leaf is not None and leaf.grad is not None:
            contrib = leaf.grad[:nb] * sources.clean_active[ly]  # b n_active
            if starts[ly + 1] > starts[ly]:
                out[:, starts[ly] : starts[ly + 1]] = contrib[:, sources.selected[ly]]
                contrib = contrib.index_fill(1, sources.selected[ly], 0.0)
            lumped = leaves.active[ly].position_sums(contrib)  # b pos
        else:
            lumped = torch.zeros(nb, layout.n_pos, dtype=dtype)
        error = leaves.errors.get(ly)
        if error is not None and error.grad is not None:
            lumped = lumped + error.grad[:nb, :, 0].to(dtype)  # the error term's direct effect
        out[:, layout.errors(ly)] = lumped
    out[:, layout.embeddings] = (_grad(leaves.resid0)[:nb] * clean.resid0.unsqueeze(0)).sum(-1)  # b pos
    return out


def bias_terms(adjacency: Float[Tensor, "node node"], values: Float[Tensor, " node"], layout: Layout) -> Float[Tensor, " node"]:
    """Phase 5: each node's value minus its incoming edges (0 for error and embedding nodes,
    which have no inputs)."""
    bias = values - adjacency.sum(-1)
    bias[layout.n_feat : layout.n - layout.n_logits] = 0.0
    return bias


def _seeds(
    model: Model, clean: CleanRun, leaves: Leaves, resid: torch.Tensor, batch: list[tuple[int, Any]]
) -> torch.Tensor:
    """Each target's value on its own copy (copy ``b`` for the batch's ``b``-th target).

    Logit targets: the demeaned logit at the last position (:func:`frozen_demeaned_logits` of the
    copies' last residual rows). Feature targets: one gather per layer (indexing element by
    element would make each backward pass fill a zero tensor of a layer's features per target).
    """
    if batch[0][1][0] == "logit":
        columns = torch.tensor([[what] for _, (_, what) in batch])  # b 1
        return frozen_demeaned_logits(model, clean, resid[: len(batch), -1], columns)[:, 0]
    where = torch.tensor([what for _, (_, what) in batch], dtype=torch.long)  # b (layer pos index)
    copies = torch.arange(len(batch))
    parts, order = [], []
    for layer in where[:, 0].unique().tolist():
        rows = where[:, 0] == layer
        entries = leaves.active[layer].lookup(where[rows, 1], where[rows, 2])
        parts.append(leaves.live[layer][copies[rows], entries])
        order.append(copies[rows])
    return torch.cat(parts)[torch.cat(order).argsort()]


def _chunks(rows: list[Any], size: int) -> list[list[Any]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def _clear_grads(leaves: Leaves) -> None:
    """Forget the previous backward pass's gradients (a shared forward is backpropagated again)."""
    for leaf in [*leaves.features.values(), *leaves.errors.values(), leaves.resid0]:
        if leaf is not None:
            leaf.grad = None


def _grad(leaf: torch.Tensor) -> torch.Tensor:
    """A leaf's gradient; zeros where the backward pass never reached it."""
    return leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
