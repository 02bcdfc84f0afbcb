"""Validation of transcoder graphs (TopK, the architecture of every shipped set), each figure
against a computation that shares nothing with the project's intervention machinery:

* the activation x gradient baseline is the real model's gradient: plain autograd through the
  unhooked model, with one hook that adds ``z @ W_dec`` (``z`` a zero leaf) at the MLP output,
  so ``d target / d z`` is the gradient along each feature's decoder row;
* the real-model stage equals steering by plain hooks (``(s - 1) a W_dec[i]`` added to the MLP
  output), and the "features' masks live" stage equals a hand-written layer (the transcoder with
  its TopK mask recomputed, plus the clean reconstruction error) in the otherwise real model;
* the fast intervened passes equal the reference :func:`intervention_pass` (whole vocabulary,
  every block, dense features) at every unfreezing stage, to relative 1e-6 in float64;
* the unpruned TopK graph agrees with the frozen model to rounding.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from scrying.attribution import build_feature_graph
from scrying.attribution.basis import NeuronBasis
from scrying.attribution.replacement import (
    Intervention,
    clean_run,
    intervened_targets,
    intervention_pass,
    reached_positions,
)
from scrying.attribution.trace import TraceConfig, trace
from scrying.attribution.validation import (
    INEXACT_STAGES,
    STAGES,
    ValidationConfig,
    validate_feature_graph,
)
from scrying.errors import InvalidInputError
from scrying.prompts import tokenize
from scrying.sites import Component, Site, hooks, recorded
from scrying.transcoders import TranscoderBasis
from tests.test_transcoder_graph import CONFIG, PROMPT, calibrated, random_set
from tests.tiny_models import tiny

VALIDATION = ValidationConfig(top_k=10, scales=(0.0, 0.5, 1.5), chunk=4)
EVERY = [frozenset(), frozenset({"errors"}), frozenset({"patterns"}), frozenset({"norms"}), frozenset({"final_norm"}),
         frozenset({"masks"}), frozenset({"errors", "patterns", "final_norm"}), frozenset({"errors", "patterns", "norms"}),
         frozenset({"errors", "patterns", "norms", "masks"}), frozenset({"errors", "patterns", "norms", "basis"})]


@pytest.fixture(scope="module", params=["gemma3", "gpt2"])
def topk(request, tmp_path_factory):
    model = tiny(request.param, tmp_path_factory.mktemp("tiny"))
    tset = calibrated(model, random_set(model.cfg.d_model, model.cfg.n_layers, seed=7, activation="topk", k=5))
    basis = TranscoderBasis(tset)
    # 15 of the active features are nodes: the others are error nodes, clamped in the frozen model
    graph = build_feature_graph(model, PROMPT, config=dataclasses.replace(CONFIG, max_feature_nodes=15), basis=basis)
    assert sum(n.kind == "feature" for n in graph.nodes) == 15
    validation = validate_feature_graph(model, graph, graph, VALIDATION, basis=basis)
    return model, basis, graph, validation


def _target(graph):
    return next(n for n in graph.nodes if n.kind == "logit" and n.is_target)


def _demeaned(logits, token):
    return float(logits[token] - logits.mean())


def _plain_gradients(model, basis, graph, nodes, *, detach_error=False):
    """d(demeaned target logit)/d(feature) in the real model: ``z @ W_dec`` added at each MLP
    output, ``z`` zero leaves, one backward pass; ``detach_error`` reproduces the old bug (the
    reconstruction error cut from the gradient)."""
    tset = basis.set
    tokens = tokenize(model, graph.prompt)
    leaves, inputs = {}, {}

    def add(layer):
        def fn(act, hook):
            tc = tset.transcoders[layer]
            z = torch.zeros(act.shape[1], tc.spec.n_features, dtype=act.dtype, requires_grad=True)
            leaves[layer] = z
            out = act + (z @ tc.W_dec.detach()).to(act.dtype)
            if detach_error:  # the transcoder's reconstruction plus a constant error: no gradient through the MLP
                x = inputs[layer]
                w = {k: v.detach() for k, v in tc.tensors().items()}
                pre = x @ w["W_enc"].T + w["b_enc"]
                feats = pre * tc.mask(pre.detach()).detach()
                recon = feats @ w["W_dec"] + w["b_dec"] + (x @ w["W_skip"].T if "W_skip" in w else 0)
                out = recon + (act - recon).detach() + (z @ w["W_dec"]).to(act.dtype)
            return out
        return fn

    fwd = []
    for layer in range(model.cfg.n_layers):
        fwd.append((tset.input_site(layer), _reader(inputs, layer)))
        fwd.append((tset.output_site(layer), add(layer)))
    target = _target(graph)
    with hooks(model, fwd):
        logits = model(tokens)[0, -1]
        (logits[target.feature] - logits.mean()).backward()
    return torch.tensor([float(leaves[n.layer].grad[n.pos, n.feature]) for n in nodes], dtype=torch.float64)


def test_the_baseline_is_the_real_models_gradient(topk):
    model, basis, graph, validation = topk
    table = validation.reports["activation x gradient vs real, scale 0"].table
    nodes = [graph.nodes[graph.index[i]] for i in table.node_id]
    gradient = _plain_gradients(model, basis, graph, nodes)
    expected = -torch.tensor(table.activation.to_numpy()) * gradient  # scale 0: (0 - 1) x a x g
    got = torch.tensor(table.predicted.to_numpy())
    assert torch.allclose(got, expected, rtol=1e-6, atol=1e-10), (got, expected)
    assert expected.abs().max() > 1e-4  # not vacuous
    # Teeth: the old baseline (error detached) is measurably different on this model.
    old = -torch.tensor(table.activation.to_numpy()) * _plain_gradients(model, basis, graph, nodes, detach_error=True)
    assert (old - expected).abs().max() > 1e-2 * expected.abs().max()


def _reader(store, layer):
    """A hook that keeps the activation in ``store[layer]`` and passes it on."""
    def fn(act, hook):
        store[layer] = act
        return act
    return fn


def _hand_replaced(model, tset, tokens, token, output, first=()):
    """The demeaned logit of ``token`` at the last position with every layer's MLP output
    replaced by ``output(layer, x)`` (``x``: that layer's transcoder input on this run), by plain
    hooks; ``first``: hooks registered before them."""
    inputs = {}

    def replace(layer):
        return lambda act, hook: output(layer, inputs[layer][0]).unsqueeze(0)

    layers = range(model.cfg.n_layers)
    fwd = list(first) + [(tset.input_site(ly), _reader(inputs, ly)) for ly in layers] + [(tset.output_site(ly), replace(ly)) for ly in layers]
    with torch.no_grad(), hooks(model, fwd):
        return _demeaned(model(tokens)[0, -1], token)


def test_the_real_stage_is_steering_by_a_plain_hook(topk):
    model, basis, graph, validation = topk
    tokens = tokenize(model, graph.prompt)
    token = _target(graph).feature
    with torch.no_grad():
        clean = _demeaned(model(tokens)[0, -1], token)
    for scale in VALIDATION.scales:
        table = validation.reports[f"frozen vs real, scale {scale:g}"].table
        expected = []
        for node_id in table.node_id:
            node = graph.nodes[graph.index[node_id]]
            delta = (scale - 1.0) * node.activation * basis.set.transcoders[node.layer].W_dec[node.feature].detach()

            def steer(act, hook, node=node, delta=delta):
                act = act.clone()
                act[:, node.pos] += delta.to(act.dtype)
                return act

            with torch.no_grad(), hooks(model, [(basis.set.output_site(node.layer), steer)]):
                expected.append(_demeaned(model(tokens)[0, -1], token) - clean)
        # atol: float32 rounding of the demeaned logit (3e-9 at scale 0, measured directly); at the
        # later scales most nodes' changes are derived from scale 0 by the frozen model's linearity
        # (ValidationConfig), so their rounding is not a direct measurement's
        assert torch.allclose(torch.tensor(table.measured.tolist()), torch.tensor(expected), rtol=1e-5, atol=1e-8)
        assert max(abs(e) for e in expected) > 1e-4


def test_the_masks_live_stage_is_the_transcoder_plus_the_clean_error(topk):
    """Every MLP replaced by its transcoder with a live TopK mask plus the clean error, written by
    hand; the chosen feature set to its scaled clean value."""
    model, basis, graph, validation = topk
    tset = basis.set
    tokens = tokenize(model, graph.prompt)
    sites = [tset.input_site(ly) for ly in range(model.cfg.n_layers)] + [tset.output_site(ly) for ly in range(model.cfg.n_layers)]
    with torch.no_grad(), recorded(model, sites) as store:
        model(tokens)
    errors = [store[tset.output_site(ly)][0] - tset.transcoders[ly](store[tset.input_site(ly)][0]) for ly in range(model.cfg.n_layers)]
    token = _target(graph).feature
    name = INEXACT_STAGES[-2][0]
    assert name == "+ features' masks live"
    table = validation.reports[f"graph vs {name}, scale 0"].table

    def run(setting):
        def output(layer, x):
            tc = tset.transcoders[layer]
            pre = x @ tc.W_enc.T + tc.b_enc
            top = pre.topk(tc.spec.k, dim=-1).indices
            mask = torch.zeros_like(pre).scatter(-1, top, 1.0) * (pre > 0)
            feats = pre * mask
            if setting is not None and setting[0] == layer:
                feats[setting[1], setting[2]] = setting[3]
            return feats @ tc.W_dec + tc.b_dec + x @ tc.W_skip.T + errors[layer]

        return _hand_replaced(model, tset, tokens, token, output)

    clean = run(None)
    expected = [run((n.layer, n.pos, n.feature, 0.0)) - clean for n in (graph.nodes[graph.index[i]] for i in table.node_id)]
    assert torch.allclose(torch.tensor(table.measured.tolist()), torch.tensor(expected), rtol=1e-5, atol=1e-9)
    real = validation.reports["frozen vs real, scale 0"].table.measured
    assert (table.measured - real).abs().max() > 1e-6  # the error term's freezing matters: the split says something


def test_the_unpruned_topk_graph_is_exact_in_the_frozen_model(topk):
    _, _, _, validation = topk
    for scale in VALIDATION.scales:
        table = validation.reports[f"unpruned graph vs frozen, scale {scale:g}"].table
        assert len(table) == VALIDATION.top_k
        assert torch.allclose(torch.tensor(table.predicted), torch.tensor(table.measured), rtol=1e-4, atol=1e-9), table
        assert table.measured.abs().max() > 1e-4


def test_transcoder_stages_split_the_last_step_and_neurons_do_not(topk):
    _, _, _, validation = topk
    names = {name for name in validation.reports if name.startswith("graph vs +")}
    assert names == {f"graph vs {name}, scale 0" for name, _ in INEXACT_STAGES[1:-1]}
    assert "graph vs + features' masks live, scale 0" in names
    assert [name for name, _ in STAGES[1:-1]] == [name for name, _ in INEXACT_STAGES[1:-2]]


def _reference(model, clean, rows, columns, live, unfrozen):
    logits = intervention_pass(model, clean, rows, live=live, unfrozen=unfrozen)[0][:, -1]
    return logits[:, columns] - logits.mean(-1, keepdim=True)


@pytest.mark.parametrize("which", ["neurons", "topk"])
def test_fast_intervened_passes_equal_the_reference_pass(topk, which):
    """Target columns only, from the earliest intervened block, compact features where frozen:
    the same numbers as the whole-vocabulary pass from the first block, at every stage, with
    embedding rows set too."""
    model, basis, graph, _ = topk
    basis = basis if which == "topk" else NeuronBasis()
    clean = clean_run(model, tokenize(model, PROMPT), basis)
    active = torch.nonzero(clean.features)
    picked = active[torch.randperm(len(active), generator=torch.Generator().manual_seed(0))[:9]]
    live = torch.zeros_like(clean.features, dtype=torch.bool)
    live[tuple(active[::3].T)] = True
    rows = [Intervention()] + [Intervention(features={tuple(int(v) for v in c): 0.3 * float(clean.features[tuple(c)]) + 0.1}) for c in picked]
    rows.append(Intervention(features={tuple(int(v) for v in picked[0]): 0.0, tuple(int(v) for v in picked[1]): 2.0}))
    late = [r for r in rows[1:] if min(k[0] for k in r.features) >= 1]
    embedded = [Intervention(resid0={2: clean.resid0[3]}), rows[1]]
    columns = torch.tensor([3, 5, 7])
    off = torch.nonzero(clean.features == 0)
    off = off[torch.randperm(len(off), generator=torch.Generator().manual_seed(1))[:4]]
    # features off on the clean run, set on (one copy sets two at one position): only a live basis can
    inactive = [Intervention()] + [Intervention(features={tuple(int(v) for v in c): 0.5}) for c in off]
    if len(off):  # a dense basis (neurons) has none
        inactive.append(Intervention(features={tuple(int(v) for v in off[0]): 0.5, (int(off[0][0]), int(off[0][1]), int(picked[0][2])): 1.0}))
    for unfrozen in EVERY:
        live_basis = bool(unfrozen & {"masks", "basis"}) and len(off) > 0
        for batch in (rows, late, embedded) + ((inactive,) if live_basis else ()):
            want = _reference(model, clean, batch, columns, live, unfrozen)
            got = intervened_targets(model, clean, batch, columns, live=live, unfrozen=unfrozen)
            # the final norm live and un-hooked runs transformers' own Gemma3RMSNorm, which computes
            # in float32 even in a float64 model (x.float()): inputs that differ at 1e-16 (the two
            # passes' block norms are hooked) come out ~4e-8 apart (measured; 1e-17 where every
            # norm is un-hooked in both), hence its atol
            atol = 1e-7 if "final_norm" in unfrozen else 1e-9
            assert torch.allclose(got, want, rtol=1e-6, atol=atol), (unfrozen, (got - want).abs().max())
        moved = want[1:] - want[0]
        assert moved.abs().max() > 1e-6  # the interventions moved the targets


@pytest.mark.parametrize("final_live", [False, True], ids=["frozen", "final-norm-live"])
def test_the_frozen_stage_is_a_hand_frozen_model(topk, final_live):
    """The headline's measurement, written by hand: every norm scale and attention pattern
    replaced by its clean value, each MLP replaced by its transcoder with the clean TopK mask
    and the clean error, the features that are not graph nodes clamped to their clean values,
    the chosen feature set to its scaled clean value. ``final_live``: the same with the final
    norm's scale computed (``"final_norm"`` lifted), against the fast pass; it must differ from
    the frozen one (the final norm matters here)."""
    from scrying.sites import has_site

    model, basis, graph, validation = topk
    tset = basis.set
    tokens = tokenize(model, graph.prompt)
    n_layers = model.cfg.n_layers
    scales = [Component.LN1_SCALE, Component.LN2_SCALE, Component.LN1_POST_SCALE, Component.LN2_POST_SCALE,
              Component.Q_NORM_SCALE, Component.K_NORM_SCALE, Component.PATTERN]
    frozen = [Site(c, ly) for ly in range(n_layers) for c in scales if has_site(model, Site(c, ly))]
    frozen.append(Site(Component.FINAL_SCALE))
    io = [tset.input_site(ly) for ly in range(n_layers)] + [tset.output_site(ly) for ly in range(n_layers)]
    with torch.no_grad(), recorded(model, frozen + io, clone=True) as store:
        model(tokens)
    xs = [store[tset.input_site(ly)][0] for ly in range(n_layers)]
    pres = [x @ tc.W_enc.T + tc.b_enc for x, tc in zip(xs, tset.transcoders, strict=True)]
    masks = [tc.mask(pre) for pre, tc in zip(pres, tset.transcoders, strict=True)]
    feats = [pre * m for pre, m in zip(pres, masks, strict=True)]
    errors = [store[tset.output_site(ly)][0] - tset.transcoders[ly](xs[ly]) for ly in range(n_layers)]
    live = torch.zeros(n_layers, tokens.shape[1], tset.n_features, dtype=torch.bool)
    for n in graph.nodes:
        if n.kind == "feature":
            live[n.layer, n.pos, n.feature] = True
    token = _target(graph).feature

    def keep(site):
        return lambda act, hook: store[site].to(act.dtype)

    def run(setting):
        def output(layer, x):
            tc = tset.transcoders[layer]
            value = torch.where(live[layer], (x @ tc.W_enc.T + tc.b_enc) * masks[layer], feats[layer])
            if setting is not None and setting[0] == layer:
                value[setting[1], setting[2]] = setting[3]
            return value @ tc.W_dec + tc.b_dec + x @ tc.W_skip.T + errors[layer]

        return _hand_replaced(model, tset, tokens, token, output, [(site, keep(site)) for site in frozen])

    clean = run(None)
    if final_live:
        nodes = [n for n in graph.nodes if n.kind == "feature"][:6]
        settings = [(n.layer, n.pos, n.feature, 0.0) for n in nodes]
        held = [run(s) - clean for s in settings]
        frozen = [site for site in frozen if site.component != Component.FINAL_SCALE]  # the final scale now computed
        clean = run(None)
        expected = [run(s) - clean for s in settings]
        fast_clean = clean_run(model, tokens, basis)
        rows = [Intervention()] + [Intervention(features={s[:3]: s[3]}) for s in settings]
        got = intervened_targets(model, fast_clean, rows, torch.tensor([token]), live=live, unfrozen=frozenset({"final_norm"}))[:, 0]
        # atol: the live final norm computes in float32 (see the fast-pass test above)
        want, frozen_final = torch.tensor(expected, dtype=torch.float64), torch.tensor(held, dtype=torch.float64)
        assert torch.allclose((got[1:] - got[0]).double(), want, rtol=1e-5, atol=1e-7)
        assert not torch.allclose(frozen_final, want, rtol=1e-5, atol=1e-7)  # the final norm matters here
        return
    for scale in VALIDATION.scales:
        table = validation.reports[f"graph vs frozen, scale {scale:g}"].table
        nodes = [graph.nodes[graph.index[i]] for i in table.node_id]
        expected = [run((n.layer, n.pos, n.feature, scale * float(feats[n.layer][n.pos, n.feature]))) - clean for n in nodes]
        # atol: float32 rounding of the demeaned logit (3e-9 at scale 0, measured directly); at the
        # later scales most nodes' changes are derived from scale 0 by the frozen model's linearity
        # (ValidationConfig), so their rounding is not a direct measurement's
        assert torch.allclose(torch.tensor(table.measured.tolist()), torch.tensor(expected), rtol=1e-5, atol=1e-8)
        assert max(abs(e) for e in expected) > 1e-4


def test_reached_positions_by_hand():
    """A feature set at (layer l, position p) reaches the MLP inputs of layers after l from p on;
    an embedding row set at p reaches every layer from p on; a row setting nothing reaches none."""
    rows = [Intervention(), Intervention(features={(1, 3, 0): 1.0}),
            Intervention(features={(0, 4, 2): 0.0, (2, 1, 5): 2.0}), Intervention(resid0={2: torch.zeros(4)})]
    want = torch.tensor([
        [6, 6, 6, 2],  # layer 0: only the embedding row
        [6, 6, 4, 2],  # layer 1: after the layer-0 setting at position 4
        [6, 3, 4, 2],
        [6, 3, 1, 2],  # layer 3: after the layer-2 setting at position 1
    ])
    assert torch.equal(reached_positions(rows, 4, 6), want)


def test_trace_shares_its_clean_run_and_validates_as_a_fresh_one(topk):
    """``trace`` runs the prompt once for the build and validation; its figures equal a
    validation with a clean run of its own. A clean run of other tokens is refused by name."""
    model, basis, _, _ = topk
    config = TraceConfig(features=dataclasses.replace(CONFIG, max_feature_nodes=15), validation=VALIDATION)
    result = trace(model, PROMPT, config, basis=basis, cards=False)
    fresh = validate_feature_graph(model, result.graph, result.pruned, VALIDATION, basis=basis)
    assert set(result.validation.reports) == set(fresh.reports)
    for name, report in fresh.reports.items():
        shared = result.validation.reports[name].table
        assert torch.allclose(torch.tensor(shared.measured.tolist()), torch.tensor(report.table.measured.tolist()), rtol=1e-9, atol=1e-12), name
    other = clean_run(model, tokenize(model, "t2 t2"), basis)
    with pytest.raises(InvalidInputError, match="clean run of 3 tokens"):
        validate_feature_graph(model, result.graph, result.pruned, VALIDATION, basis=basis, clean=other)
