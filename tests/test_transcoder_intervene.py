"""``scrying intervene``: feature edits in the real model, checked against two independent paths."""

from __future__ import annotations

import pytest
import torch

from scrying.attribution.replacement import Intervention, clean_run, intervention_pass
from scrying.cli.main import main
from scrying.prompts import tokenize
from scrying.sites import Component, Site, hooks
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
    same = intervened_logits(model, tset, tokens, [FeatureEdit(layer=2, index=5, mode="scale", value=1.0)])
    with torch.no_grad():
        assert torch.allclose(same, model(tokens), atol=1e-9)


def test_scrying_intervene_prints_the_top_tokens(setup, capsys):
    model, tset, tmp = setup
    directory = write_transcoders(tset, tmp / "tc")
    code = main(["intervene", PROMPT, "--model", str(tmp / "gemma3"), "--transcoders", str(directory),
                 "--set", "1:3@2=0", "--steer", "2:5=4"])
    assert code == 0
    out = capsys.readouterr().out
    assert "p_clean" in out and "p_intervened" in out
    assert main(["intervene", PROMPT, "--model", str(tmp / "gemma3"), "--transcoders", str(directory), "--set", "1:3@x=0"]) == 2
