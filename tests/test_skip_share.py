"""The skip connection's share of a graph's attribution (issue 21): each part's total effect,
read from one backward pass, equals the change of the frozen replacement model's target when
that part is removed from that layer's output (the frozen model is linear in each layer's
output, so the two agree exactly)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from scrying.attribution import attribution_pass, clean_run, frozen_demeaned_logits
from scrying.models.adapter import final_resid
from scrying.prompts import tokenize
from scrying.sites import hooks
from scrying.transcoders import TranscoderBasis
from scrying.transcoders.skip_share import PARTS, output_parts, skip_shares
from tests.test_transcoder_graph import PROMPT, calibrated, random_set
from tests.tiny_models import tiny


@pytest.fixture(scope="module", params=["gemma3", "gpt2"])
def setup(request, tmp_path_factory):
    model = tiny(request.param, tmp_path_factory.mktemp("tiny"))
    tset = calibrated(model, random_set(model.cfg.d_model, model.cfg.n_layers, seed=3, activation="topk", k=5))
    basis = TranscoderBasis(tset)
    clean = clean_run(model, tokenize(model, PROMPT), basis)
    return model, basis, clean


def _target(model, clean, token: int, extra: list) -> float:
    with torch.no_grad():
        with attribution_pass(model, clean, 1), hooks(model, extra):
            final = final_resid(model, clean.tokens)[:, -1]
        return float(frozen_demeaned_logits(model, clean, final, torch.tensor([[token]]))[0, 0])


def test_each_parts_effect_is_the_change_when_it_is_removed(setup):
    model, basis, clean = setup
    token = int(clean.last_logits.argmax())
    shares = skip_shares(model, clean, basis, token)
    logits = clean.last_logits.double()
    assert shares.target == pytest.approx(float(logits[token] - logits.mean()), rel=1e-6, abs=1e-9)  # replacement exact
    parts = output_parts(model, clean, basis)
    table = shares.table.set_index(["layer", "part"])
    for layer in range(model.cfg.n_layers):
        for part in PARTS:
            value = parts[part][layer]

            def remove(act: torch.Tensor, hook: Any, value=value) -> torch.Tensor:
                return act - value.to(act.dtype)

            removed = _target(model, clean, token, [(basis.set.output_site(layer), remove)])
            assert table.loc[(layer, part), "signed"] == pytest.approx(shares.target - removed, rel=1e-6, abs=1e-9), (layer, part)
    assert table.loc[(0, "skip"), "absolute"] > 1e-6  # the check moved something
    assert 0 < shares.share < 1
    assert shares.by_layer.between(0, 1).all()


def test_without_a_skip_connection_the_share_is_zero(setup):
    model, _, _ = setup
    tset = random_set(model.cfg.d_model, model.cfg.n_layers, seed=3, activation="topk", k=5, skip=False)
    basis = TranscoderBasis(tset)
    clean = clean_run(model, tokenize(model, PROMPT), basis)
    shares = skip_shares(model, clean, basis, int(clean.last_logits.argmax()))
    assert shares.share == 0 and shares.table[shares.table.part == "features"].absolute.sum() > 0
