"""Two-hop tools (:mod:`scrying.attribution.hops`) against references computed another way, on a
tiny float64 Llama: logit lens vs the model's own logits, neuron ablation vs a plain PyTorch hook
on the HF module, steering vs the final norm and unembedding applied by hand, and the graph's
shortcut share on a hand-made graph whose paths are known."""

from __future__ import annotations

import pytest
import torch

from scrying.attribution.graph import Graph
from scrying.attribution.hops import (
    ReadTokens,
    ablate_neurons,
    bridge_nodes,
    logit_lens,
    residual_streams,
    shortcut_share,
    state_direction,
    steer,
)
from scrying.attribution.nodes import LogitTarget, Node, embedding_node, feature_node, logit_node
from scrying.errors import InvalidInputError
from scrying.prompts import tokenize
from tests.tiny_models import tiny

PROMPT = "t1 t2 t3 t4 t5"
READ = ReadTokens(answer="t7", alternative="t8", bridge="t9")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny("llama", tmp_path_factory.mktemp("hops"))


def _probs(model, ids):
    with torch.no_grad():
        return model(ids)[0, -1].double().softmax(-1)


def test_logit_lens_after_the_last_block_is_the_models_own_output(model):
    ids = tokenize(model, PROMPT)
    lens = logit_lens(model, PROMPT, ["t7", "t8"], positions=[-1, 2])
    last = lens[(lens.layer == model.cfg.n_layers - 1) & (lens.pos == ids.shape[-1] - 1)]
    with torch.no_grad():
        logits = model(ids)[0, -1].double()
    for row in last.itertuples():
        tid = tokenize(model, row.token, prepend_bos=False)[0, 0]
        assert row.prob == pytest.approx(float(logits.softmax(-1)[tid]), abs=1e-12)
        assert row.rank == int((logits > logits[tid]).sum())
    assert len(lens) == 2 * 2 * model.cfg.n_layers
    with pytest.raises(InvalidInputError, match="outside the prompt"):
        logit_lens(model, PROMPT, ["t7"], positions=[40])


def test_neuron_ablation_equals_a_plain_pytorch_hook(model):
    ids = tokenize(model, PROMPT)
    clean = _probs(model, ids)
    unchanged = ablate_neurons(model, PROMPT, [(1, 3, 2), (2, 5, 0)], READ, scale=1.0)
    ids_of = READ.ids(model)
    for name, value in unchanged.items():
        assert value == pytest.approx(float(clean[ids_of[name]]), abs=1e-12)

    # reference: zero the same neurons at the input of the HF down projection, no TL hooks
    handles = []
    for layer, pos, neuron in [(1, 3, 2), (2, 5, 0)]:
        down = model.blocks[layer].mlp.out.original_component

        def pre(module, args, pos=pos, neuron=neuron):
            x = args[0].clone()
            x[:, pos, neuron] = 0.0
            return (x,)

        handles.append(down.register_forward_pre_hook(pre))
    try:
        reference = _probs(model, ids)
    finally:
        for handle in handles:
            handle.remove()
    ablated = ablate_neurons(model, PROMPT, [(1, 3, 2), (2, 5, 0)], READ, scale=0.0)
    assert max(abs(ablated[n] - float(clean[ids_of[n]])) for n in ablated) > 1e-6  # it did something
    for name, value in ablated.items():
        assert value == pytest.approx(float(reference[ids_of[name]]), abs=1e-12)


def test_steering_the_last_block_adds_to_the_final_residual(model):
    ids = tokenize(model, PROMPT)
    n = model.cfg.n_layers
    direction = torch.zeros(n, model.cfg.d_model, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    direction[n - 1] = torch.randn(model.cfg.d_model, generator=gen, dtype=torch.float64)
    table = steer(model, PROMPT, direction, READ, pos=-1, layers=[0, n - 1], alpha=2.0)
    clean = _probs(model, ids)
    ids_of = READ.ids(model)
    assert table.iloc[0].p_answer == pytest.approx(float(clean[ids_of["answer"]]), abs=1e-12)  # zero direction
    resid = residual_streams(model, ids)[n - 1, 0, -1] + 2.0 * direction[n - 1]
    with torch.no_grad():
        by_hand = model.unembed(model.ln_final(resid[None, None]))[0, 0].double().softmax(-1)
    for name, tid in ids_of.items():
        assert table.iloc[1][f"p_{name}"] == pytest.approx(float(by_hand[tid]), abs=1e-12)


def test_state_direction_is_the_difference_of_mean_filler_streams(model):
    template = "t1 t2 {} t3"
    direction = state_direction(model, template, ["t5", "t6"], ["t7"])
    streams = {f: residual_streams(model, tokenize(model, template.format(f)))[:, 0, 3] for f in ("t5", "t6", "t7")}
    expected = (streams["t5"] + streams["t6"]) / 2 - streams["t7"]
    assert torch.allclose(direction, expected, atol=1e-12)
    with pytest.raises(InvalidInputError, match="exactly one"):
        state_direction(model, "no slot", ["t5"], ["t6"])


def test_shortcut_share_on_a_graph_with_known_paths():
    """embedding e (pos 0) -> bridge b (pos 1) -> logit, and e -> logit directly; a second
    feature c at pos 1 feeds the logit from nowhere. Row-normalised: the logit takes 0.5 from b,
    0.25 from e, 0.25 from c; b takes everything from e. So e's influence is 0.25 direct + 0.5
    through b."""
    target = LogitTarget(7, " x", 1.0)
    nodes: list[Node] = [
        embedding_node(0, 3, "e"),
        feature_node(0, 1, 5, "bridge", 1.0),
        feature_node(0, 1, 6, "other", 1.0),
        logit_node(2, 1, target, is_target=True),
    ]
    adjacency = torch.zeros(4, 4, dtype=torch.float64)
    adjacency[1, 0] = 3.0  # e -> b
    adjacency[3, 1] = -2.0  # b -> logit (sign does not matter to influence)
    adjacency[3, 0] = 1.0  # e -> logit
    adjacency[3, 2] = 1.0  # c -> logit
    graph = Graph(prompt="e x", prompt_tokens=["e", " x"], model_name="hand", level="neurons",
                  nodes=nodes, adjacency=adjacency, bias=torch.zeros(4, dtype=torch.float64))
    share = shortcut_share(graph, 0, [nodes[1].node_id])
    assert share["total"] == pytest.approx(0.75)
    assert share["avoiding_bridge"] == pytest.approx(0.25)
    assert share["through_bridge"] == pytest.approx(0.5)
    assert share["direct_to_answer"] == pytest.approx(0.25)
    with pytest.raises(InvalidInputError, match="position 5 is outside"):
        shortcut_share(graph, 5, [])


def test_bridge_nodes_write_what_the_output_row_reads_out(model):
    """``writes`` is activation × (the demeaned logit of the neuron's output row through the final
    norm's gain and the unembedding), computed here from the HF modules' weights by hand."""
    from scrying.attribution import FeatureGraphConfig, build_neuron_graph

    graph = build_neuron_graph(model, PROMPT, config=FeatureGraphConfig(max_feature_nodes=12))
    table = bridge_nodes(model, graph, READ.bridge, positions=[-1, 2], answer=READ.answer)
    n_pos = len(graph.prompt_tokens)
    assert len(table) == sum(1 for n in graph.nodes if n.kind == "feature" and n.pos in (n_pos - 1, 2)) > 0
    assert table.writes.is_monotonic_decreasing
    gain = model.ln_final.original_component.weight.double()
    unembed = model.unembed.original_component.weight.double()
    ids = READ.ids(model)
    for row in table.itertuples():
        w_out = model.blocks[row.layer].mlp.out.original_component.weight[:, row.neuron].double()
        logits = unembed @ (gain * w_out)
        for column, tid in (("writes", ids["bridge"]), ("writes_answer", ids["answer"])):
            expected = row.activation * float(logits[tid] - logits.mean())
            assert getattr(row, column) == pytest.approx(expected, rel=1e-6)  # node activations are float32


def test_a_bridge_node_at_the_source_position_does_not_count_as_avoiding():
    """As above plus d, a bridge node at the source position itself (d -> logit): its influence
    passes through a bridge node (itself), so it is not part of the avoiding share. The logit
    row normalises to b 1/3, d 1/3, e 1/6, c 1/6."""
    target = LogitTarget(7, " x", 1.0)
    nodes: list[Node] = [
        embedding_node(0, 3, "e"),
        feature_node(0, 1, 5, "bridge", 1.0),
        feature_node(0, 1, 6, "other", 1.0),
        feature_node(0, 0, 9, "bridge at the source", 1.0),
        logit_node(2, 1, target, is_target=True),
    ]
    adjacency = torch.zeros(5, 5, dtype=torch.float64)
    adjacency[1, 0] = 3.0  # e -> b
    adjacency[4, 1] = -2.0  # b -> logit
    adjacency[4, 0] = 1.0  # e -> logit
    adjacency[4, 2] = 1.0  # c -> logit
    adjacency[4, 3] = 2.0  # d -> logit
    graph = Graph(prompt="e x", prompt_tokens=["e", " x"], model_name="hand", level="neurons",
                  nodes=nodes, adjacency=adjacency, bias=torch.zeros(5, dtype=torch.float64))
    share = shortcut_share(graph, 0, [nodes[1].node_id, nodes[3].node_id])
    assert share["total"] == pytest.approx(1 / 6 + 1 / 3 + 1 / 3)
    assert share["avoiding_bridge"] == pytest.approx(1 / 6)
    assert share["direct_to_answer"] == pytest.approx(1 / 6 + 1 / 3)
