"""The feature-basis seam: a second basis goes through the same builder and Graph.

``HalfNeurons`` takes the first half of each MLP's neurons as features and hands the other half
to the builder as the basis's error term (frozen at its clean value, as a transcoder's
reconstruction error is). Its graph must then equal the neuron graph with the second half summed
into the error nodes, and its edges must equal interventions in its own frozen model.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from scrying.attribution import (
    FeatureBasis,
    FeatureGraphConfig,
    NeuronBasis,
    build_feature_graph,
    build_neuron_graph,
)
from scrying.attribution.basis import BasisState, OnError, OnFeatures
from scrying.attribution.replacement import Intervention, clean_run, intervention_pass
from scrying.axes import Model, Tensor
from scrying.prompts import tokenize
from scrying.sites import HookFn, Site
from tests.tiny_models import tiny

PROMPT = "t1 t5 t2 t7 t1 t5"
CONFIG = FeatureGraphConfig(max_feature_nodes=10_000, max_logits=2, batch_size=7, exclude_bos=False)


@dataclasses.dataclass(frozen=True)
class HalfState(BasisState):
    """A basis with more to keep subclasses :class:`BasisState`."""

    rest: Tensor | None = None  # the second half of the neurons, frozen as an error term


class HalfNeurons(NeuronBasis):
    name = "half-neurons"
    feature_type = "first half of the mlp neurons"
    exact = False

    def n_features(self, model: Model) -> int:
        return int(model.cfg.d_mlp) // 2

    def clean_state(self, model: Model, store: dict[Site, Tensor]) -> tuple[Tensor, HalfState]:
        post, state = super().clean_state(model, store)
        k = post.shape[-1] // 2
        return post[..., :k], HalfState(slope=state.slope, rest=post[..., k:])

    def feature_hooks(self, model: Model, state: BasisState, on_features: OnFeatures, on_error: OnError) -> list[tuple[Site, HookFn]]:
        assert isinstance(state, HalfState) and state.rest is not None
        rest = state.rest

        def split(layer: int, act: Tensor) -> Tensor:
            k = act.shape[-1] - rest.shape[-1]
            frozen = rest[layer].expand(act.shape[0], -1, -1).to(act.dtype)
            return torch.cat([on_features(layer, act[..., :k]), on_error(layer, frozen)], dim=-1)

        return super().feature_hooks(model, state, split, on_error)

    def label(self, layer: int, index: int) -> str:
        return f"L{layer} half-neuron {index}"


@pytest.fixture(scope="module", params=["gemma3", "gpt2"])
def graphs(request, tmp_path_factory):
    model = tiny(request.param, tmp_path_factory.mktemp("tiny"))
    return model, build_neuron_graph(model, PROMPT, config=CONFIG), build_feature_graph(model, PROMPT, config=CONFIG, basis=HalfNeurons())


def test_a_basis_is_the_protocol():
    assert isinstance(NeuronBasis(), FeatureBasis) and isinstance(HalfNeurons(), FeatureBasis)


def test_half_basis_graph_is_the_neuron_graph_with_the_rest_in_the_error_nodes(graphs):
    model, full, half = graphs
    k = model.cfg.d_mlp // 2
    assert half.level == "half-neurons" and half.metadata["feature_type"] == "first half of the mlp neurons"
    assert {n.feature for n in half.nodes if n.kind == "feature"} == set(range(k))
    assert next(n for n in half.nodes if n.kind == "feature").label.startswith("L0 half-neuron")
    fi, hi = full.index, half.index
    error_total = 0.0
    for target in (n for n in half.nodes if n.kind in ("feature", "logit")):
        for source in half.nodes:
            got = float(half.adjacency[hi[target.node_id], hi[source.node_id]])
            if source.kind == "error":  # = the second half's direct effects at (layer, pos)
                ids = [f"{source.layer}_{i}_{source.pos}" for i in range(k, model.cfg.d_mlp)]
                want = float(sum(full.adjacency[fi[target.node_id], fi[s]] for s in ids))
                error_total += abs(want)
            else:
                want = float(full.adjacency[fi[target.node_id], fi[source.node_id]])
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12), (target.node_id, source.node_id)
    assert error_total > 1e-3  # the error nodes carry something: the comparison is not vacuous


def test_half_basis_edges_equal_interventions_in_its_frozen_model(graphs):
    model, _, half = graphs
    clean = clean_run(model, tokenize(model, PROMPT), HalfNeurons())
    sources = [s for s, n in enumerate(half.nodes) if n.kind == "feature"]
    interventions = [Intervention()] + [
        Intervention(features={(half.nodes[s].layer, half.nodes[s].pos, half.nodes[s].feature): 0.0}) for s in sources
    ]
    logits = intervention_pass(model, clean, interventions)[0][:, -1]
    for t, target in enumerate(half.nodes):
        if target.kind != "logit":
            continue
        values = logits[:, target.feature] - logits.mean(-1)
        measured = values[0] - values[1:]
        predicted = half.adjacency[t, sources]
        assert torch.allclose(predicted, measured, rtol=1e-4, atol=1e-10)
        assert predicted.abs().max() > 1e-4  # not vacuous
