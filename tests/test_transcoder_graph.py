"""Transcoder features through the feature-basis seam: one builder, one Graph.

* **Exact**: on a GPT-2-shaped model whose MLP activation is ReLU, the transcoder with
  ``W_enc = W_in``, ``b_enc = b_in``, ``W_dec = W_out``, ``b_dec = b_out`` and a ReLU activation
  *is* the MLP, so its graph must equal the neuron graph edge for edge and its error nodes carry
  nothing. (ReLU because the transcoder activations here are ReLU/JumpReLU/TopK; a GELU MLP has
  no exact transcoder of that kind. The neuron basis freezes a ReLU neuron's slope, 0 or 1,
  which is exactly the transcoder's frozen mask.)
* **Lossy**: a random transcoder on the Gemma-3- and GPT-2-shaped tiny models: the basis's error
  term equals the real MLP output minus the reconstruction, computed independently, and each
  error node's edge to a logit equals the effect of removing that error vector in the frozen
  model; feature edges equal interventions in the frozen model (relative 1e-4).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from scrying.attribution import (
    FeatureBasis,
    FeatureGraphConfig,
    build_feature_graph,
    build_neuron_graph,
)
from scrying.attribution.replacement import Intervention, clean_run, intervention_pass
from scrying.models import LoadConfig, load_model
from scrying.prompts import tokenize
from scrying.sites import Component, Site, recorded
from scrying.toys.train import ToyModelConfig, _save, build_hf_model
from scrying.toys.vocab import build_tokenizer
from scrying.transcoders import Transcoder, TranscoderBasis, TranscoderSet, TranscoderSpec
from tests.tiny_models import tiny

PROMPT = "t1 t5 t2 t7 t1 t5"
CONFIG = FeatureGraphConfig(max_feature_nodes=10_000, max_logits=2, batch_size=7, exclude_bos=False)


def relu_gpt2(tmp):
    """A tiny GPT-2 whose MLPs use ReLU (float64), and its HF weights."""
    tokenizer = build_tokenizer(16)
    hf = build_hf_model(ToyModelConfig(arch="gpt2", d_model=16, n_heads=4, d_mlp=8, n_layers=3, n_ctx=32), len(tokenizer), seed=1)
    hf.config.activation_function = "relu"
    _save(hf.eval(), tokenizer, tmp / "gpt2-relu")
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(tmp / "gpt2-relu").double()
    return load_model(str(tmp / "gpt2-relu"), LoadConfig(dtype="float64")), hf


def exact_set(hf) -> TranscoderSet:
    out = []
    for block in hf.transformer.h:
        tc = Transcoder(TranscoderSpec(d_model=16, n_features=8), dtype=torch.float64)
        tc.load_tensors({"W_enc": block.mlp.c_fc.weight.T, "b_enc": block.mlp.c_fc.bias,
                         "W_dec": block.mlp.c_proj.weight, "b_dec": block.mlp.c_proj.bias})
        out.append(tc)
    return TranscoderSet(out, "gpt2-relu")


def random_set(d_model: int, n_layers: int, *, seed: int, activation="relu", k=None, skip=True) -> TranscoderSet:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_layers):
        tc = Transcoder(TranscoderSpec(d_model=d_model, n_features=24, activation=activation, k=k, skip=skip), dtype=torch.float64)
        tc.load_tensors({name: 0.3 * torch.randn(p.shape, generator=gen, dtype=torch.float64) for name, p in tc.tensors().items()})
        out.append(tc)
    return TranscoderSet(out, "random")


def test_transcoder_basis_is_the_protocol():
    assert isinstance(TranscoderBasis(random_set(4, 1, seed=0)), FeatureBasis)


def test_exact_transcoder_graph_is_the_neuron_graph(tmp_path):
    model, hf = relu_gpt2(tmp_path)
    neurons = build_neuron_graph(model, PROMPT, config=CONFIG)
    basis = TranscoderBasis(exact_set(hf))
    clean = clean_run(model, tokenize(model, PROMPT), basis)
    assert clean.state.error.abs().max() < 1e-12  # the transcoder is the MLP
    graph = build_feature_graph(model, PROMPT, config=CONFIG, basis=basis)
    assert graph.level == "transcoders" and graph.metadata["exact_basis"] is False
    # The transcoder graph tracks the features its frozen mask leaves on; the neuron graph has
    # every neuron, and the ones a frozen ReLU slope of 0 turns off are inert there: no edge in
    # or out. Without them the graphs are equal, node for node and edge for edge.
    inactive = [i for i, n in enumerate(neurons.nodes) if n.kind == "feature" and n.activation == 0]
    assert inactive and neurons.adjacency[inactive].abs().max() == 0 and neurons.adjacency[:, inactive].abs().max() == 0
    keep = [i for i in range(len(neurons.nodes)) if i not in set(inactive)]
    assert [n.node_id for n in graph.nodes] == [neurons.nodes[i].node_id for i in keep]
    assert torch.allclose(graph.adjacency, neurons.adjacency[keep][:, keep], rtol=1e-9, atol=1e-12)
    assert torch.allclose(graph.bias, neurons.bias[keep], rtol=1e-9, atol=1e-12)
    assert neurons.adjacency.abs().max() > 1e-3  # not vacuous
    errors = [i for i, n in enumerate(graph.nodes) if n.kind == "error"]
    assert graph.adjacency[:, errors].abs().max() < 1e-12  # every feature is a node: error nodes carry nothing


def calibrated(model, tset: TranscoderSet) -> TranscoderSet:
    """Decoders rescaled so each layer's reconstruction has the MLP output's size on the prompt
    (the tiny Gemma's MLP outputs are ~1e-4 and its post-norm scales ~1e4: a reconstruction
    10^4 times too large would amplify float rounding into visible disagreement)."""
    sites = [tset.input_site(ly) for ly in range(model.cfg.n_layers)]
    sites += [tset.output_site(ly) for ly in range(model.cfg.n_layers)]
    with recorded(model, sites) as store:
        model(tokenize(model, PROMPT))
    for ly, tc in enumerate(tset.transcoders):
        x, y = store[tset.input_site(ly)], store[tset.output_site(ly)]
        ratio = y.pow(2).mean().sqrt() / tc(x).pow(2).mean().sqrt()
        with torch.no_grad():
            for p in (tc.W_dec, tc.b_dec, tc.W_skip):
                p.mul_(ratio)
    return tset


@pytest.fixture(scope="module", params=["gemma3", "gpt2"])
def lossy(request, tmp_path_factory):
    model = tiny(request.param, tmp_path_factory.mktemp("tiny"))
    basis = TranscoderBasis(calibrated(model, random_set(model.cfg.d_model, model.cfg.n_layers, seed=3)))
    return model, basis, build_feature_graph(model, PROMPT, config=CONFIG, basis=basis)


def test_lossy_error_is_the_mlp_residual(lossy):
    model, basis, _ = lossy
    tokens = tokenize(model, PROMPT)
    sites = [Site(Component.MLP_IN, ly) for ly in range(model.cfg.n_layers)]
    sites += [Site(Component.MLP_RESULT, ly) for ly in range(model.cfg.n_layers)]
    with recorded(model, sites) as store:
        model(tokens)
    clean = clean_run(model, tokens, basis)
    for ly, tc in enumerate(basis.set.transcoders):
        x, y = store[Site(Component.MLP_IN, ly)][0], store[Site(Component.MLP_RESULT, ly)][0]
        pre = x @ tc.W_enc.T + tc.b_enc
        feats = torch.relu(pre)
        recon = feats @ tc.W_dec + tc.b_dec + x @ tc.W_skip.T
        assert torch.allclose(clean.features[ly], feats, atol=1e-12)
        assert torch.allclose(clean.state.error[ly], y - recon, atol=1e-12)
        assert (y - recon).pow(2).mean() > 0.5 * y.pow(2).mean()  # lossy indeed


def test_the_frozen_model_reproduces_the_real_model_at_the_clean_point(lossy):
    """Features (mask frozen) decoded plus the frozen error give back the real MLP output, so
    the replacement model's clean run is the real model's (what makes edges about the model)."""
    model, basis, _ = lossy
    clean = clean_run(model, tokenize(model, PROMPT), basis)
    frozen = intervention_pass(model, clean, [Intervention()])[0][0]
    real = intervention_pass(model, clean, [Intervention()], unfrozen=frozenset({"errors", "patterns", "norms", "basis"}))[0][0]
    with torch.no_grad():
        plain = model(clean.tokens)[0]  # the real model, no hooks
    # 1e-6: the bridge rebuilds hooked norms on another path (the neuron basis differs by ~1e-7)
    assert torch.allclose(frozen, plain, rtol=0, atol=1e-6)
    assert torch.allclose(real, plain, rtol=0, atol=1e-6)
    assert torch.allclose(clean.last_logits, plain[-1], rtol=0, atol=1e-6)


def test_live_basis_is_the_real_model_steered_along_the_decoder(lossy):
    """Unfrozen, an intervention setting feature i at (l, p) to v is the real model with
    (v - a) * W_dec[i] added to the MLP output there (circuit-tracer's convention)."""
    model, basis, graph = lossy
    clean = clean_run(model, tokenize(model, PROMPT), basis)
    ly, p, i = next((n.layer, n.pos, n.feature) for n in graph.nodes if n.kind == "feature" and n.layer == 1 and n.activation)
    a = float(clean.features[ly, p, i])
    everything = frozenset({"errors", "patterns", "norms", "basis"})
    got = intervention_pass(model, clean, [Intervention(features={(ly, p, i): a + 2.0})], unfrozen=everything)[0][0]
    delta = 2.0 * basis.set.transcoders[ly].W_dec[i]

    def steer(act, hook):
        act = act.clone()
        act[:, p] += delta.to(act.dtype)
        return act

    from scrying.sites import hooks

    with hooks(model, [(Site(Component.MLP_RESULT, ly), steer)]):
        want = model(clean.tokens)[0]
    assert torch.allclose(got, want, rtol=0, atol=1e-6)
    with torch.no_grad():
        plain = model(clean.tokens)[0]
    assert (want - plain).abs().max() > 1e-3  # the steering moved something


def test_lossy_error_nodes_carry_exactly_the_residual(lossy):
    """Edge (error node at layer l, pos p) -> logit = the logit change when that error vector is
    removed from the frozen model (every feature is a node, so the error node is only it)."""
    model, basis, graph = lossy
    clean = clean_run(model, tokenize(model, PROMPT), basis)
    checked = 0
    for ly in range(model.cfg.n_layers):
        for p in (1, clean.tokens.shape[1] - 1):
            error = clean.state.error.clone()
            error[ly, p] = 0
            cut = dataclasses.replace(clean, state=dataclasses.replace(clean.state, error=error))
            logits = intervention_pass(model, cut, [Intervention()], free_layer=None)[0][0, -1]
            base = intervention_pass(model, clean, [Intervention()])[0][0, -1]
            for t, node in enumerate(graph.nodes):
                if node.kind != "logit":
                    continue
                measured = (base[node.feature] - base.mean()) - (logits[node.feature] - logits.mean())
                edge = graph.adjacency[t, graph.index[f"{ly}_-1_{p}"]]
                assert float(edge) == pytest.approx(float(measured), rel=1e-4, abs=1e-10)
                checked += abs(float(measured)) > 1e-4
    assert checked > 0


def test_lossy_feature_edges_equal_interventions_in_the_frozen_model(lossy):
    model, basis, graph = lossy
    clean = clean_run(model, tokenize(model, PROMPT), basis)
    sources = [s for s, n in enumerate(graph.nodes) if n.kind == "feature" and n.activation]
    interventions = [Intervention()] + [
        Intervention(features={(graph.nodes[s].layer, graph.nodes[s].pos, graph.nodes[s].feature): 0.0}) for s in sources
    ]
    logits = intervention_pass(model, clean, interventions)[0][:, -1]
    for t, target in enumerate(graph.nodes):
        if target.kind != "logit":
            continue
        values = logits[:, target.feature] - logits.mean(-1)
        measured = values[0] - values[1:]
        predicted = graph.adjacency[t, sources]
        assert torch.allclose(predicted, measured, rtol=1e-4, atol=1e-10)
        assert predicted.abs().max() > 1e-4  # not vacuous


@pytest.mark.parametrize(
    ("input_hook", "output_hook"),
    [("hook_resid_mid", "mlp.hook_out"), ("mlp.hook_in", "hook_mlp_out"), ("hook_resid_mid", "hook_mlp_out")],
)
def test_every_hook_layout_gives_edges_equal_to_interventions(tmp_path, input_hook, output_hook):
    """circuit-tracer's other hook names: reading the residual stream before the pre-norm, and
    writing after Gemma's MLP post-norm. With the output at ``mlp.hook_out`` the attribution pass
    skips the real MLP (its output is replaced whole); after the post-norm it runs it. Either
    way, feature edges to the logits equal interventions in the frozen model."""
    model = tiny("gemma3", tmp_path)
    tset = random_set(model.cfg.d_model, model.cfg.n_layers, seed=4)
    tset = calibrated(model, TranscoderSet(tset.transcoders, "random", input_hook, output_hook))
    basis = TranscoderBasis(tset)
    graph = build_feature_graph(model, PROMPT, config=CONFIG, basis=basis)
    clean = clean_run(model, tokenize(model, PROMPT), basis)
    sources = [s for s, n in enumerate(graph.nodes) if n.kind == "feature" and n.activation]
    interventions = [Intervention()] + [
        Intervention(features={(graph.nodes[s].layer, graph.nodes[s].pos, graph.nodes[s].feature): 0.0}) for s in sources
    ]
    logits = intervention_pass(model, clean, interventions)[0][:, -1]
    checked = 0
    for t, target in enumerate(graph.nodes):
        if target.kind == "logit":
            values = logits[:, target.feature] - logits.mean(-1)
            assert torch.allclose(graph.adjacency[t, sources], values[0] - values[1:], rtol=1e-4, atol=1e-10)
            checked += int(graph.adjacency[t, sources].abs().max() > 1e-4)
    assert checked  # not vacuous


def test_scrying_trace_with_transcoders_writes_a_validated_graph(tmp_path, capsys):
    """``scrying trace --transcoders DIR``: transcoder features and error nodes in the JSON, the
    same pruning, scores and validation as neuron graphs; the unpruned graph equals its frozen
    model (Pearson 1, slope 1) as the neuron graph's does."""
    import json

    from scrying.attribution import Graph
    from scrying.cli.main import main
    from scrying.transcoders import write_transcoders

    model = tiny("gpt2", tmp_path)
    directory = write_transcoders(random_set(model.cfg.d_model, model.cfg.n_layers, seed=5), tmp_path / "tc")
    html, js = tmp_path / "g.html", tmp_path / "g.json"
    code = main(["trace", PROMPT, "--model", str(tmp_path / "gpt2"), "--transcoders", str(directory), "--out", str(html),
                 "--json", str(js), "--max-features", "40", "--validate-top", "10", "--node-threshold", "1", "--edge-threshold", "1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "replacement score unselected as error" in out
    data = json.loads(js.read_text())
    assert data["scrying"]["feature_type"] == "transcoder feature"
    graph = Graph.read_json(js)
    assert graph.level == "transcoders"
    assert any(n.label.startswith("L0 transcoder feature") for n in graph.nodes if n.kind == "feature")
    assert any(n.kind == "error" for n in graph.nodes)
    report = graph.metadata["validation"]["reports"]["unpruned graph vs frozen, scale 0"]
    assert report["pearson"] > 0.9999 and report["slope"] == pytest.approx(1.0, abs=1e-6)
    assert "Validation by intervention" in html.read_text()
    share = graph.metadata["skip_share"]  # the skip connections' share, stored and printed
    assert 0 < share["share"] < 1 and len(share["by_layer"]) == model.cfg.n_layers
    assert f"skip connections' share of the MLP layers' attribution: {share['share']:.3f}" in out


def test_position_zero_errors_join_the_constants_for_transcoders(lossy):
    """With BOS excluded, a transcoder graph moves position 0's error and embedding nodes into the bias terms
    (the default for inexact bases): the other edges are unchanged, each node's value is still
    its edges plus its bias, and the bias grew by exactly the removed edges."""
    model, basis, _ = lossy
    kept = build_feature_graph(model, PROMPT, config=dataclasses.replace(CONFIG, exclude_bos=True, bos_error_as_bias=False), basis=basis)
    folded = build_feature_graph(model, PROMPT, config=dataclasses.replace(CONFIG, exclude_bos=True), basis=basis)
    assert folded.metadata["bos_error_as_bias"] and not kept.metadata["bos_error_as_bias"]
    assert [n.node_id for n in kept.nodes] == [n.node_id for n in folded.nodes]
    bos = [folded.index[f"{ly}_-1_0"] for ly in range(model.cfg.n_layers)]
    bos += [i for i, n in enumerate(folded.nodes) if n.kind == "embedding" and n.pos == 0]
    assert kept.adjacency[:, bos].abs().sum() > 0 and folded.adjacency[:, bos].abs().sum() == 0
    other = [i for i in range(len(folded.nodes)) if i not in bos]
    torch.testing.assert_close(folded.adjacency[:, other], kept.adjacency[:, other], rtol=0, atol=0)
    values = torch.tensor(folded.metadata["node_values"], dtype=folded.adjacency.dtype)
    sourced = [i for i, n in enumerate(folded.nodes) if n.kind in ("feature", "logit")]
    torch.testing.assert_close((folded.adjacency.sum(-1) + folded.bias)[sourced], values[sourced])
    torch.testing.assert_close(folded.bias - kept.bias, kept.adjacency[:, bos].sum(-1), rtol=1e-9, atol=1e-9)
    # neurons (an exact basis) keep their position-0 error nodes by default
    assert not build_neuron_graph(model, PROMPT, config=dataclasses.replace(CONFIG, exclude_bos=True)).metadata["bos_error_as_bias"]


def test_intervention_pass_last_only_is_the_last_position(lossy):
    """Validation reads the last position alone: the same logits as the whole pass there, frozen
    or unfrozen (the final norm's frozen scale applied as in the full pass)."""
    model, basis, graph = lossy
    clean = clean_run(model, tokenize(model, PROMPT), basis)
    ly, p, i = next((n.layer, n.pos, n.feature) for n in graph.nodes if n.kind == "feature" and n.activation)
    rows = [Intervention(), Intervention(features={(ly, p, i): 0.0})]
    for unfrozen in (frozenset(), frozenset({"norms"}), frozenset({"errors", "patterns", "norms", "basis"})):
        full = intervention_pass(model, clean, rows, unfrozen=unfrozen)[0]
        last = intervention_pass(model, clean, rows, unfrozen=unfrozen, last_only=True)[0]
        assert last.shape == (2, 1, full.shape[-1])
        assert torch.allclose(last[:, 0], full[:, -1], rtol=0, atol=1e-9)
        assert (full[0, -1] - full[1, -1]).abs().max() > 1e-6  # the intervention moved the last position


def test_graphs_leave_the_callers_transcoders_as_they_were(tmp_path):
    """Building and validating a graph (frozen, intervention and real-gradient passes) changes
    nothing of the caller's transcoders: their ``requires_grad`` flags, their dtype (float32 here,
    in a float64 model: activations are cast at the transcoder's boundary) and their weights, and
    no gradient reaches them. The float32 set's graph is its float64 copy's, to float32 rounding."""
    import copy

    from scrying.attribution.validation import ValidationConfig, validate_feature_graph

    model = tiny("gpt2", tmp_path)
    wide = calibrated(model, random_set(model.cfg.d_model, model.cfg.n_layers, seed=6))
    narrow = TranscoderSet([copy.deepcopy(tc).to(torch.float32) for tc in wide.transcoders], "random")
    before = [{name: p.detach().clone() for name, p in tc.named_parameters()} for tc in narrow.transcoders]
    basis = TranscoderBasis(narrow)
    graph = build_feature_graph(model, PROMPT, config=CONFIG, basis=basis)
    validate_feature_graph(model, graph, graph, ValidationConfig(top_k=4), basis=basis)
    for tc, weights in zip(narrow.transcoders, before, strict=True):
        for name, p in tc.named_parameters():
            assert p.requires_grad and p.dtype == torch.float32 and p.grad is None, name
            assert torch.equal(p, weights[name]), name
    reference = build_feature_graph(model, PROMPT, config=CONFIG, basis=TranscoderBasis(wide))
    assert graph.adjacency.dtype == torch.float64 and [n.node_id for n in graph.nodes] == [n.node_id for n in reference.nodes]
    scale = float(reference.adjacency.abs().max())
    assert (graph.adjacency - reference.adjacency).abs().max() < 1e-4 * scale and scale > 1e-3
