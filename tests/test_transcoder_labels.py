"""Feature labels: the decoder's token direction is what the frozen model's logits do, the top
contexts are the largest activations over the windows, and labels reach graph nodes."""

from __future__ import annotations

import json

import pytest
import torch

from scrying.models.adapter import mlp_output_logits
from scrying.sites import Component, Site, has_site, hooks, recorded
from scrying.transcoders import (
    TranscoderBasis,
    label_features,
    read_cards,
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


def direct_logit_change(model, layer: int, v: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """What ``v`` written at ``layer``'s MLP output (last position) does to the last logits along
    the direct path alone, measured in the model with its norm scales frozen: the change it makes
    to the residual stream after the block (through the MLP post-norm, where there is one), added
    again just before the final norm."""
    post = [s for s in [Site(Component.LN2_POST_SCALE, layer)] if has_site(model, s)]  # Gemma's MLP post-norm
    final = Site(Component.FINAL_SCALE)
    resid = Site(Component.RESID_POST, layer)
    with torch.no_grad(), recorded(model, [final, resid, *post], clone=True) as clean:
        base = model(tokens)[0, -1]

    def frozen(site):
        return (site, lambda act, hook: clean[site])

    def at_last(delta):
        def fn(act, hook):
            act = act.clone()
            act[:, -1] += delta.to(act.dtype)
            return act

        return fn

    with torch.no_grad(), hooks(model, [*map(frozen, post), (Site(Component.MLP_RESULT, layer), at_last(v))]), recorded(model, [resid]) as moved:
        model(tokens)
    delta = (moved[resid] - clean[resid])[0]
    d = delta[-1]
    # the edit stays at its position (a hooked norm scale recomputes the norm: float rounding)
    assert delta[:-1].abs().max() < 1e-6 * d.abs().max()
    with torch.no_grad(), hooks(model, [frozen(final), (Site(Component.FINAL_IN), at_last(d))]):
        return model(tokens)[0, -1] - base


@pytest.mark.parametrize("arch", ["gpt2", "gemma3"])
def test_labels_find_the_top_contexts_and_reach_the_graph(arch, tmp_path):
    """Contexts: the largest ``relu(x . W_enc[i] + b_enc[i])`` over the windows' MLP inputs past
    BOS, computed here. Promoted and suppressed tokens: the largest and smallest direct logit
    changes the decoder row makes in the frozen model (:func:`direct_logit_change`), measured, not
    read from the function the labelling uses."""
    model = tiny(arch, tmp_path)
    tset = random_set(model.cfg.d_model, model.cfg.n_layers, seed=7, skip=False)
    windows = torch.randint(3, 20, (12, 10), generator=torch.Generator().manual_seed(1))
    windows[:, 0] = 1
    features = [(0, 2), (2, 5), (1, 0)]
    labels = label_features(model, tset, features, windows)
    with torch.no_grad(), recorded(model, [Site(Component.MLP_IN, ly) for ly in range(3)]) as store:
        model(windows)
    decode = model.tokenizer.decode
    for ly, i in features:
        tc = tset.transcoders[ly]
        x = store[Site(Component.MLP_IN, ly)].double()
        acts = torch.relu(x @ tc.W_enc.detach()[i] + tc.b_enc.detach()[i])[:, 1:]  # window pos
        top = acts.flatten().topk(5).values
        got = [c["activation"] for c in labels[ly, i].contexts]
        assert len(got) >= 2 and got == pytest.approx(top[top > 0].tolist(), rel=1e-9)
        w, p = divmod(int(acts.flatten().argmax()), acts.shape[1])
        first = labels[ly, i].contexts[0]
        assert first["tokens"][first["at"]] == decode([int(windows[w, p + 1])])
        # up to 7 tokens before the activating one (none from BOS), 2 after; each shaded by its activation
        lo, hi = max(0, p - 7), min(acts.shape[1], p + 3)
        assert first["tokens"] == [decode([t]) for t in windows[w, 1 + lo : 1 + hi].tolist()]
        assert first["at"] == p - lo
        assert first["values"] == pytest.approx(acts[w, lo:hi].tolist(), rel=1e-3, abs=1e-4)
        change = direct_logit_change(model, ly, tc.W_dec.detach()[i], windows[:1])
        assert labels[ly, i].promoted == [decode([t]) for t in change.topk(5).indices.tolist()]
        assert labels[ly, i].suppressed == [decode([t]) for t in (-change).topk(5).indices.tolist()]
    directory = write_transcoders(tset, tmp_path / "tc")
    write_labels(directory, labels)
    stored = read_labels(directory)
    assert stored == {k: v.label for k, v in labels.items()}
    assert TranscoderBasis(tset, labels=stored).label(2, 5) == labels[2, 5].label
    assert TranscoderBasis(tset, labels=stored).label(2, 6) == "L2 transcoder feature 6"
    cards = read_cards(directory)
    assert cards[2, 5]["contexts"] == json.loads(json.dumps(labels[2, 5].contexts))
    assert cards[2, 5]["promoted"] == labels[2, 5].promoted
