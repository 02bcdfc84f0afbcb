"""``scrying intervene``: feature edits in the real model, checked against two independent paths."""

from __future__ import annotations

import pytest
import torch

from scrying.attribution.replacement import Intervention, clean_run, intervention_pass
from scrying.cli.main import main
from scrying.prompts import tokenize
from scrying.sites import Component, Site, hooks, recorded
from scrying.transcoders import TranscoderBasis, write_transcoders
from scrying.transcoders.intervene import FeatureEdit, intervened_logits
from tests.test_transcoder_graph import PROMPT, calibrated, random_set
from tests.tiny_models import tiny

EVERYTHING = frozenset({"errors", "patterns", "norms", "basis"})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiny")
    model = tiny("gemma3", tmp)
    return model, calibrated(model, random_set(model.cfg.d_model, model.cfg.n_layers, seed=3)), tmp


def test_set_equals_the_live_basis_intervention(setup):
    """Clamping one feature at one position = the attribution seam's real-model intervention."""
    model, tset, _ = setup
    tokens = tokenize(model, PROMPT)
    clean = clean_run(model, tokens, TranscoderBasis(tset))
    layer, pos = 1, 3
    index = int(clean.features[layer, pos].argmax())
    a = float(clean.features[layer, pos, index])
    assert a > 0
    for value in (0.0, 3 * a):
        want = intervention_pass(model, clean, [Intervention(features={(layer, pos, index): value})], unfrozen=EVERYTHING)[0]
        got = intervened_logits(model, tset, tokens, [FeatureEdit(layer=layer, index=index, mode="set", value=value, pos=pos)])
        assert torch.allclose(got, want, atol=1e-6)
        assert (got[0, -1] - clean.last_logits).abs().max() > 1e-4


def test_steer_adds_the_decoder_row_everywhere_but_bos(setup):
    model, tset, _ = setup
    tokens = tokenize(model, PROMPT)
    row = tset.transcoders[2].W_dec[5].detach()

    def add(act, hook):
        act = act.clone()
        act[:, 1:] += 1.5 * row
        return act

    with torch.no_grad(), hooks(model, [(Site(Component.MLP_RESULT, 2), add)]):
        want = model(tokens)
    got = intervened_logits(model, tset, tokens, [FeatureEdit(layer=2, index=5, mode="steer", value=1.5)])
    assert torch.allclose(got, want, atol=1e-9)


@pytest.mark.parametrize("factor", [0.0, 2.5, -1.0])
def test_scale_adds_the_scaled_activation_times_the_decoder_row(setup, factor):
    """``scale`` by s at every position but BOS = adding ``(s - 1) a_p W_dec[i]`` to the MLP
    output at each position p, with ``a_p = relu(x_p . W_enc[i] + b_enc[i])`` computed here from
    the recorded MLP input (one edit at one layer: its input is the clean one)."""
    model, tset, _ = setup
    tokens = tokenize(model, PROMPT)
    layer = 1
    tc = tset.transcoders[layer]
    with torch.no_grad(), recorded(model, [Site(Component.MLP_IN, layer)]) as store:
        clean = model(tokens)
    x = store[Site(Component.MLP_IN, layer)][0].double()  # pos d_model
    acts = torch.relu(x @ tc.W_enc.detach().T + tc.b_enc.detach())  # pos feature
    index = int((acts[1:] > 0).sum(0).argmax())  # the feature active at the most positions past BOS
    a = acts[:, index]
    assert int((a[1:] > 0).sum()) >= 2
    row = tc.W_dec[index].detach()

    def add(act, hook):
        act = act.clone()
        act[0, 1:] += ((factor - 1) * a[1:, None] * row).to(act.dtype)
        return act

    with torch.no_grad(), hooks(model, [(Site(Component.MLP_RESULT, layer), add)]):
        want = model(tokens)
    got = intervened_logits(model, tset, tokens, [FeatureEdit(layer=layer, index=index, mode="scale", value=factor)])
    assert (want - clean).abs().max() > 1e-6 * clean.abs().max()  # the edit moves the logits
    assert torch.allclose(got, want, atol=1e-9, rtol=1e-7)


def test_scrying_intervene_prints_the_top_tokens(setup, capsys):
    model, tset, tmp = setup
    directory = write_transcoders(tset, tmp / "tc")
    code = main(["intervene", PROMPT, "--model", str(tmp / "gemma3"), "--transcoders", str(directory),
                 "--set", "1:3@2=0", "--steer", "2:5=4"])
    assert code == 0
    out = capsys.readouterr().out
    assert "p_clean" in out and "p_intervened" in out
    assert main(["intervene", PROMPT, "--model", str(tmp / "gemma3"), "--transcoders", str(directory), "--set", "1:3@x=0"]) == 2
