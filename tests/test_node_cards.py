"""Node cards (scrying/attribution/cards.py) against independent computations on tiny models: a
neuron's promoted tokens are the direct logit change its output column makes, measured in the
model; its contexts are the largest activations over the windows, read from a plain hook; a
transcoder graph's cards carry labels.json's contexts; a head's card holds its recorded pattern,
and every component's effect equals patching that component by hand to its corrupt value."""

from __future__ import annotations

import pytest
import torch

from scrying.attribution.cards import feature_cards
from scrying.attribution.config import TraceConfig
from scrying.attribution.influence import PruneConfig
from scrying.attribution.trace import trace
from scrying.models.adapter import mlp_output_rows
from scrying.prompts import tokenize
from scrying.sites import Component, Site, hooks, recorded
from scrying.transcoders import TranscoderBasis, label_features
from tests.test_transcoder_graph import random_set
from tests.test_transcoder_labels import direct_logit_change
from tests.tiny_models import tiny

KEEP_ALL = TraceConfig(prune=PruneConfig(node_threshold=1.0, edge_threshold=1.0))


def windows(n: int = 12, seq: int = 10) -> torch.Tensor:
    w = torch.randint(3, 20, (n, seq), generator=torch.Generator().manual_seed(1))
    w[:, 0] = 1
    return w


@pytest.mark.parametrize("arch", ["gpt2", "gemma3"])
def test_a_neuron_card_is_its_direct_logit_effect_and_its_top_contexts(arch, tmp_path):
    model = tiny(arch, tmp_path)
    w = windows()
    result = trace(model, "t3 t4 t5 t6 t7", KEEP_ALL, model_name="tiny", validate=False, card_windows=w, contexts_from="test windows")
    cards = result.pruned.metadata["cards"]
    features = [n for n in result.pruned.nodes if n.kind == "feature"]
    assert features and set(cards) == {n.node_id for n in features}
    with torch.no_grad(), recorded(model, [Site(Component.MLP_POST, ly) for ly in range(model.cfg.n_layers)]) as store:
        model(w)
    decode = model.tokenizer.decode
    for node in features[:4]:
        card = cards[node.node_id]
        row = mlp_output_rows(model, node.layer, [node.feature])[0].detach()
        change = direct_logit_change(model, node.layer, row, w[:1])
        assert [t for t, _ in card["promotes"]] == [decode([t]) for t in change.topk(5).indices.tolist()]
        assert [t for t, _ in card["suppresses"]] == [decode([t]) for t in (-change).topk(5).indices.tolist()]
        acts = store[Site(Component.MLP_POST, node.layer)][..., node.feature].double()[:, 1:]  # past BOS
        top = acts.flatten().topk(5).values
        got = [c["activation"] for c in card["contexts"]]
        assert got == pytest.approx(top[top > 0].tolist(), rel=1e-6)
        first = card["contexts"][0] if card["contexts"] else None
        if first is not None:
            wi, p = divmod(int(acts.flatten().argmax()), acts.shape[1])
            assert first["tokens"][first["at"]] == decode([int(w[wi, p + 1])])
        assert card["contexts_from"] == "test windows"


def test_a_transcoder_card_carries_the_labels_contexts(tmp_path):
    model = tiny("gemma3", tmp_path)
    tset = random_set(model.cfg.d_model, model.cfg.n_layers, seed=7, skip=False)
    result = trace(model, "t3 t4 t5 t6 t7", KEEP_ALL, model_name="tiny", validate=False, basis=TranscoderBasis(tset), cards=False)
    graph = result.pruned
    wanted = sorted({(n.layer, n.feature) for n in graph.nodes if n.kind == "feature"})
    assert wanted
    labels = label_features(model, tset, wanted, windows())
    basis = TranscoderBasis(tset, cards={k: {"contexts": v.contexts} for k, v in labels.items()})
    cards = feature_cards(model, graph, basis)
    for node in graph.nodes:
        if node.kind == "feature":
            card = cards[node.node_id]
            assert card["contexts"] == labels[node.layer, node.feature].contexts
            assert card["contexts_from"] == "the transcoders' labels.json"
            assert [t for t, _ in card["promotes"]] == labels[node.layer, node.feature].promoted


def test_component_cards_hold_the_heads_pattern_and_the_exact_patching_effect(tmp_path):
    """Patching a node to its baseline is, for a model without a post-attention norm, replacing
    its output by the corrupt run's: a head's ``hook_z`` (the output is linear in it), an MLP's
    ``hook_mlp_out``. Computed here with plain hooks, independent of the patching module."""
    model = tiny("gpt2", tmp_path)
    clean, corrupt = "t3 t4 t5 t3 t4", "t3 t6 t5 t3 t4"
    config = TraceConfig(level="components", corrupt=corrupt)
    result = trace(model, clean, config, model_name="tiny")
    graph = result.pruned
    cards = graph.metadata["cards"]
    components = [n for n in graph.nodes if n.kind == "component"]
    assert components and set(cards) == {n.node_id for n in components}
    tokens, bad = tokenize(model, clean), tokenize(model, corrupt)
    with torch.no_grad():
        logits = model(tokens)[0, -1]
        order = model(bad)[0, -1].argsort(descending=True).tolist()
    target = int(logits.argmax())
    incorrect = next(t for t in order if t != target)

    def metric(out: torch.Tensor) -> float:
        return float(out[0, -1, target] - out[0, -1, incorrect])

    sites = [Site(Component.Z, ly) for ly in range(model.cfg.n_layers)] + [Site(Component.MLP_OUT, ly) for ly in range(model.cfg.n_layers)]
    sites += [Site(Component.PATTERN, ly) for ly in range(model.cfg.n_layers)]
    with torch.no_grad(), recorded(model, sites, clone=True) as bad_store:
        model(bad)
    with torch.no_grad(), recorded(model, sites, clone=True) as clean_store:
        base = metric(model(tokens))
    for node in components:
        card = cards[node.node_id]
        if node.feature >= 0:
            site = Site(Component.Z, node.layer)

            def patch(act, hook, h=node.feature, value=bad_store[site]):
                act = act.clone()
                act[:, :, h] = value[:, :, h]
                return act

            want = clean_store[Site(Component.PATTERN, node.layer)][0, node.feature]
            assert torch.tensor(card["pattern"]) == pytest.approx(want.double(), abs=1e-3)
        else:
            site = Site(Component.MLP_OUT, node.layer)

            def patch(act, hook, value=bad_store[site]):
                return value.clone()

        with torch.no_grad(), hooks(model, [(site, patch)]):
            patched = metric(model(tokens))
        assert card["effect"] == pytest.approx(patched - base, rel=2e-3, abs=1e-5)


def test_cards_of_a_stored_graph_equal_the_traces_own(tmp_path):
    """A graph read back from its JSON gets the same cards as the trace wrote (component graphs
    rebuild their metric from the stored target and corrupt prompt)."""
    from scrying.attribution import Graph
    from scrying.attribution.stored_cards import cards_for_graph

    model = tiny("gpt2", tmp_path)
    result = trace(model, "t3 t4 t5 t3 t4", TraceConfig(level="components", corrupt="t3 t6 t5 t3 t4"), model_name="tiny")
    stored = Graph.read_json(result.pruned.write_json(tmp_path / "c.json"))
    assert cards_for_graph(model, stored) == result.pruned.metadata["cards"]
    w = windows()
    neurons = trace(model, "t3 t4 t5 t6 t7", KEEP_ALL, model_name="tiny", validate=False, card_windows=w, contexts_from="w")
    stored = Graph.read_json(neurons.pruned.write_json(tmp_path / "n.json"))
    assert cards_for_graph(model, stored, windows=w, contexts_from="w") == neurons.pruned.metadata["cards"]


def test_the_readme_reads_the_dallas_neuron_from_its_stored_card():
    """The README's reading of L13 neuron 824 on Dallas → Texas is its stored card's."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    card = json.loads((root / "graphs" / "gallery" / "dallas-texas.json").read_text())["scrying"]["metadata"]["cards"]["13_824_8"]
    readme = (root / "README.md").read_text(encoding="utf-8")
    promoted = ", ".join(repr(t) for t, _ in card["promotes"])
    assert f"promotes {promoted} (state names" in readme
    first = card["contexts"][0]
    assert first["tokens"][first["at"]].strip() == "," and "Hebron" in "".join(first["tokens"])
