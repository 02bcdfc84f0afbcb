"""The neuron-basis graph is exact: edges equal interventions in the frozen model; conservation."""

import pytest
import torch

from scrying.attribution import FeatureGraphConfig, Graph, build_neuron_graph
from scrying.attribution.replacement import Intervention, clean_run, intervention_pass
from scrying.prompts import tokenize
from tests.tiny_models import tiny

PROMPT = "t1 t5 t2 t7 t1 t5"


@pytest.fixture(scope="module", params=["gemma3", "llama", "gpt2"])
def tiny_graph(request, tmp_path_factory):
    model = tiny(request.param, tmp_path_factory.mktemp("tiny"))
    config = FeatureGraphConfig(max_feature_nodes=10_000, max_logits=2, batch_size=7, exclude_bos=False)
    graph = build_neuron_graph(model, PROMPT, config=config)
    return request.param, model, graph


def test_every_edge_equals_its_intervention(tiny_graph):
    """Ablate each source alone (one batched run per target layer) and measure every target."""
    arch, model, graph = tiny_graph
    clean = clean_run(model, tokenize(model, PROMPT))
    sources = [s for s, n in enumerate(graph.nodes) if n.kind in ("feature", "embedding")]
    interventions = [Intervention()]
    for s in sources:
        node = graph.nodes[s]
        if node.kind == "feature":
            interventions.append(Intervention(features={(node.layer, node.pos, node.feature): 0.0}))
        else:
            interventions.append(Intervention(resid0={node.pos: torch.zeros_like(clean.resid0[0])}))
    runs = {}
    checked = 0
    for t, target in enumerate(graph.nodes):
        if target.kind == "feature":
            if target.layer not in runs:
                runs[target.layer] = intervention_pass(model, clean, interventions, free_layer=target.layer)[1]
            values = runs[target.layer][:, target.layer, target.pos, target.feature]
        elif target.kind == "logit":
            if "logits" not in runs:
                runs["logits"] = intervention_pass(model, clean, interventions)[0][:, -1]
            rows = runs["logits"]
            values = rows[:, target.feature] - rows.mean(-1)
        else:
            continue
        measured = values[0] - values[1:]
        predicted = graph.adjacency[t, sources]
        tolerance = 1e-4 * measured.abs() + 1e-10
        bad = ((predicted - measured).abs() > tolerance).nonzero().flatten().tolist()
        assert not bad, [(arch, graph.nodes[sources[i]].node_id, target.node_id, float(predicted[i]), float(measured[i])) for i in bad[:5]]
        checked += len(sources)
    assert checked > 500
    assert (graph.adjacency != 0).sum() > 100  # the check is not vacuous


def test_conservation_against_the_forward_pass(tiny_graph):
    """Each node's incoming edges plus its bias equal its value, every quantity computed on its
    own: the value from the clean forward pass (the neuron's activation, the demeaned logit), the
    edges from the adjacency, the bias from a frozen-model run in which every source (every
    neuron and every embedding) is zero, so only the model's bias terms remain."""
    arch, model, graph = tiny_graph
    tokens = tokenize(model, PROMPT)
    clean = clean_run(model, tokens)
    n_layers, n_pos, d_mlp = clean.features.shape
    silent = Intervention(
        features={(ly, p, i): 0.0 for ly in range(n_layers) for p in range(n_pos) for i in range(d_mlp)},
        resid0={p: torch.zeros_like(clean.resid0[0]) for p in range(n_pos)},
    )
    bias_logits = intervention_pass(model, clean, [silent])[0][0, -1]
    bias_layers = {ly: intervention_pass(model, clean, [silent], free_layer=ly)[1][0, ly] for ly in range(n_layers)}
    checked = 0
    for i, node in enumerate(graph.nodes):
        if node.kind == "feature":
            value = clean.features[node.layer, node.pos, node.feature]
            bias = bias_layers[node.layer][node.pos, node.feature]
        elif node.kind == "logit":
            value = clean.last_logits[node.feature] - clean.last_logits.mean()
            bias = bias_logits[node.feature] - bias_logits.mean()
        else:
            continue
        incoming = graph.adjacency[i].sum()
        assert float(incoming + bias) == pytest.approx(float(value), rel=1e-5, abs=1e-8), (arch, node.node_id)
        checked += 1
    assert checked > 20
    if arch in ("gemma3", "llama"):  # no biases anywhere: edges alone conserve
        assert float(bias_logits.abs().max()) < 1e-9
    errors = [i for i, n in enumerate(graph.nodes) if n.kind == "error"]
    assert graph.adjacency[:, errors].abs().max() < 1e-12  # every neuron selected: nothing left over


def test_conservation_fails_on_a_corrupted_edge(tiny_graph):
    """Teeth: the same check on a graph with one edge changed finds the node it feeds."""
    _, model, graph = tiny_graph
    clean = clean_run(model, tokenize(model, PROMPT))
    logit = next(i for i, n in enumerate(graph.nodes) if n.kind == "logit")
    node = graph.nodes[logit]
    value = float(clean.last_logits[node.feature] - clean.last_logits.mean())
    corrupted = graph.adjacency[logit].clone()
    corrupted[int(corrupted.abs().argmax())] *= 1.5
    assert float(graph.adjacency[logit].sum() + graph.bias[logit]) == pytest.approx(value, rel=1e-5, abs=1e-8)
    assert float(corrupted.sum() + graph.bias[logit]) != pytest.approx(value, rel=1e-5, abs=1e-8)


def test_values_are_the_real_activations(tiny_graph):
    _, model, graph = tiny_graph
    clean = clean_run(model, tokenize(model, PROMPT))
    values = graph.metadata["node_values"]
    for i, node in enumerate(graph.nodes):
        if node.kind == "feature":
            # Gemma's RMSNorm computes in float32 internally, and TransformerLens rebuilds a norm
            # whose scale is hooked: agreement to float32 rounding, not float64's.
            assert values[i] == pytest.approx(float(clean.features[node.layer, node.pos, node.feature]), rel=1e-5, abs=1e-8)


def test_json_roundtrip_is_lossless(tiny_graph, tmp_path):
    _, _, graph = tiny_graph
    path = graph.write_json(tmp_path / "g.json")
    again = Graph.read_json(path)
    assert [n.node_id for n in again.nodes] == [n.node_id for n in graph.nodes]
    assert torch.equal(again.adjacency, graph.adjacency)
    assert torch.equal(again.bias, graph.bias)
    assert again.nodes == graph.nodes and again.prompt == graph.prompt
    assert len({n.node_id for n in graph.nodes}) == len(graph.nodes)
    nxg = graph.to_networkx()
    assert nxg.number_of_edges() == int((graph.adjacency != 0).sum())


def test_selection_keeps_conservation_through_error_nodes(tiny_graph):
    _, model, full = tiny_graph
    small = build_neuron_graph(model, PROMPT, config=FeatureGraphConfig(max_feature_nodes=5, max_logits=1))
    features = [n for n in small.nodes if n.kind == "feature"]
    assert len(features) == 5 and all(n.pos > 0 for n in features)  # none at BOS by default
    logit = next(i for i, n in enumerate(small.nodes) if n.kind == "logit")
    values = small.metadata["node_values"]
    assert float(small.adjacency[logit].sum() + small.bias[logit]) == pytest.approx(values[logit], abs=1e-9)


def test_a_softcap_the_replacement_model_cannot_freeze_is_refused(tiny_graph):
    from scrying.errors import ConfigError

    _, model, _ = tiny_graph
    model.cfg.output_logits_soft_cap = 30.0
    try:
        with pytest.raises(ConfigError, match="final logit softcap"):
            clean_run(model, tokenize(model, PROMPT))
    finally:
        model.cfg.output_logits_soft_cap = -1.0
