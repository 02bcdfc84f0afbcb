"""Feature labels: the decoder's token direction is what the frozen model's logits do, the top
contexts are the largest activations over the windows, and labels reach graph nodes."""

from __future__ import annotations

import pytest
import torch

from scrying.models.adapter import mlp_output_logits
from scrying.sites import Component, Site, hooks, recorded
from scrying.transcoders import (
    TranscoderBasis,
    label_features,
    read_labels,
    write_labels,
    write_transcoders,
)
from tests.test_transcoder_graph import random_set
from tests.tiny_models import tiny


@pytest.mark.parametrize("arch", ["gemma3", "gpt2"])
def test_decoder_token_direction_is_the_frozen_logit_change(arch, tmp_path):
    """Adding v at the last layer's MLP output (norm scales frozen) moves the logits by a positive
    multiple of ``mlp_output_logits(v)``."""
    model = tiny(arch, tmp_path)
    tokens = torch.tensor([[1, 5, 9, 6, 11]])
    last = model.cfg.n_layers - 1
    scales = [Site(Component.FINAL_SCALE)] + ([Site(Component.LN2_POST_SCALE, last)] if arch == "gemma3" else [])
    with recorded(model, scales, clone=True) as clean:
        base = model(tokens)[0, -1]
    v = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def add(act, hook):
        act = act.clone()
        act[:, -1] += v
        return act

    fwd = [(s, (lambda value: lambda act, hook: value)(clean[s])) for s in scales] + [(Site(Component.MLP_RESULT, last), add)]
    with hooks(model, fwd):
        moved = model(tokens)[0, -1]
    measured = moved - base
    predicted = mlp_output_logits(model, last, v[None])[0]
    c = (measured @ predicted) / (predicted @ predicted)
    assert c > 0
    assert torch.allclose(measured, c * predicted, atol=1e-6 * float(measured.abs().max()))


def test_labels_find_the_top_contexts_and_reach_the_graph(tmp_path):
    model = tiny("gpt2", tmp_path)
    tset = random_set(model.cfg.d_model, model.cfg.n_layers, seed=7, skip=False)
    windows = torch.randint(3, 20, (12, 10), generator=torch.Generator().manual_seed(1))
    windows[:, 0] = 1
    features = [(0, 2), (2, 5), (1, 0)]
    labels = label_features(model, tset, features, windows)
    with recorded(model, [tset.input_site(ly) for ly in range(3)]) as store:
        model(windows)
    for ly, i in features:
        acts = tset.transcoders[ly].encode(store[tset.input_site(ly)])[:, 1:, i]
        top = acts.flatten().topk(5).values
        got = [a for a, _ in labels[ly, i].contexts]
        assert got == pytest.approx(top[top > 0].tolist(), rel=1e-9)
        w, p = divmod(int(acts.flatten().argmax()), acts.shape[1])
        assert labels[ly, i].contexts[0][1].endswith(model.tokenizer.decode([int(windows[w, p + 1])]))
        logits = mlp_output_logits(model, ly, tset.transcoders[ly].W_dec[i][None])[0]
        assert labels[ly, i].promoted[0] == model.tokenizer.decode([int(logits.argmax())])
    directory = write_transcoders(tset, tmp_path / "tc")
    write_labels(directory, labels)
    stored = read_labels(directory)
    assert stored == {k: v.label for k, v in labels.items()}
    assert TranscoderBasis(tset, labels=stored).label(2, 5) == labels[2, 5].label
    assert TranscoderBasis(tset, labels=stored).label(2, 6) == "L2 transcoder feature 6"
