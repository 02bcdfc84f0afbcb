"""Causal tracing of the subject tokens (scrying.reversal.causal_tracing) against ground truth and a
one-row-at-a-time reference on a tiny Gemma-3-shaped model, float64."""

from __future__ import annotations

import pytest
import torch

from scrying.errors import InvalidInputError
from scrying.models import LoadConfig, load_model
from scrying.reversal.causal_tracing import (
    CausalTraceConfig,
    causal_trace_table,
    noise_draws,
    subject_span,
    trace_summary,
)
from scrying.reversal.pairs import Pair
from scrying.reversal.words import word_tokenizer
from scrying.sites import Component, Site, hook_name
from scrying.toys.train import ToyModelConfig, build_hf_model

WORDS = [f"w{i}" for i in range(24)]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("patching-tiny")
    tokenizer = word_tokenizer(WORDS)
    config = ToyModelConfig(arch="gemma3", d_model=16, n_heads=2, d_mlp=32, n_layers=3, n_ctx=32)
    build_hf_model(config, len(tokenizer), seed=5).eval().save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return load_model(str(out), LoadConfig(dtype="float64"))


PAIRS = [
    Pair("w2 w3", "w9", "r", "w20 {a} w21", "{b} w22 w23"),  # two-token subject inside the prompt
    Pair("w4", "w10 w11", "r", "w22 w20 {a}", "w21 {b} w20"),  # forward: one-token subject, last position
]


def test_subject_span_finds_the_subject_tokens(model):
    tokens, span = subject_span(model, PAIRS[0], "forward")
    assert tokens.tolist()[1:] == model.to_tokens("w20 w2 w3 w21", prepend_bos=False)[0].tolist()
    assert span == range(2, 4)
    assert subject_span(model, PAIRS[0], "reverse")[1] == range(1, 2)  # subject first: right after BOS
    assert subject_span(model, PAIRS[1], "reverse")[1] == range(2, 4)


def test_a_subject_that_does_not_own_its_tokens_is_named(model):
    glued = Pair("w2", "w9", "r", "w20{a} w21", "{b} w22", where="pairs.jsonl line 7")
    with pytest.raises(InvalidInputError, match="pairs.jsonl line 7: the forward prompt"):
        subject_span(model, glued, "forward")


def _reference(model, pair, direction, draws, layer, answer):
    """One noise draw, full logits, the hooks written here: noise added at the embedding output
    of a plain token forward pass, the clean state put back where asked."""
    tokens, span = subject_span(model, pair, direction)
    clean = {}

    def keep(act, hook):
        clean[hook.name] = act.detach().clone()

    names = [hook_name(Site(Component.RESID_PRE, ly)) for ly in range(model.cfg.n_layers)]
    model.run_with_hooks(tokens[None], fwd_hooks=[(n, keep) for n in names])

    def corrupt(act, hook):
        act = act.clone()
        act[0, span.start : span.stop] += draws.to(act.dtype)
        return act

    def restore(act, hook):
        act = act.clone()
        act[0, span.stop - 1] = clean[hook.name][0, span.stop - 1]
        return act

    hooks = [(names[0], corrupt)]
    if layer >= 0:
        hooks.append((names[layer], restore))
    logits = model.run_with_hooks(tokens[None], fwd_hooks=hooks)
    return float(logits[0, -1].double().softmax(-1)[answer])


def test_batched_tracing_equals_the_one_row_reference(model):
    config = CausalTraceConfig(samples=3, batch_size=5, noise=3.0)
    table = causal_trace_table(model, PAIRS, config)
    assert len(table) == len(PAIRS) * 2 * model.cfg.n_layers
    sigma = float(torch.cat([
        model.run_with_cache(subject_span(model, p, d)[0][None])[1][hook_name(Site(Component.RESID_PRE, 0))][0, subject_span(model, p, d)[1].start : subject_span(model, p, d)[1].stop]
        for p in PAIRS for d in ("forward", "reverse")
    ]).double().std())
    for i, pair in enumerate(PAIRS):
        for direction in ("forward", "reverse"):
            span = subject_span(model, pair, direction)[1]
            answer = model.to_tokens(pair.answer(direction), prepend_bos=False)[0, 0].item()
            draws = noise_draws((config.samples, len(span), model.cfg.d_model), sigma, config, pair, direction)
            rows = table[(table["index"] == i) & (table.direction == direction)].sort_values("layer")
            corrupt = sum(_reference(model, pair, direction, draws[s], -1, answer) for s in range(config.samples)) / config.samples
            assert rows.p_corrupt.iloc[0] == pytest.approx(corrupt, abs=1e-9)
            for layer in range(model.cfg.n_layers):
                ref = sum(_reference(model, pair, direction, draws[s], layer, answer) for s in range(config.samples)) / config.samples
                assert rows.p_restored.iloc[layer] == pytest.approx(ref, abs=1e-9)
    assert (table.p_corrupt != table.p_clean).all()  # the noise did something


def test_ground_truth_restorations(model):
    table = causal_trace_table(model, PAIRS, CausalTraceConfig(samples=2))
    # a one-token subject restored where it enters block 0 is the clean run
    one = table[(table["index"] == 0) & (table.direction == "reverse") & (table.layer == 0)]
    assert one.p_restored.item() == pytest.approx(one.p_clean.item(), abs=1e-12)
    # a one-token subject at the last position: restoring it at any block restores everything
    last = table[(table["index"] == 1) & (table.direction == "forward")]
    assert last.p_restored.to_numpy() == pytest.approx(last.p_clean.to_numpy(), abs=1e-12)
    # no noise, no effect
    quiet = causal_trace_table(model, PAIRS, CausalTraceConfig(samples=2, noise=0.0))
    assert quiet.p_corrupt.to_numpy() == pytest.approx(quiet.p_clean.to_numpy(), abs=1e-12)
    assert quiet.p_restored.to_numpy() == pytest.approx(quiet.p_clean.to_numpy(), abs=1e-12)
    summary = trace_summary(table)
    assert len(summary) == 2 * model.cfg.n_layers
    effect = table.assign(e=table.p_restored - table.p_corrupt).groupby(["direction", "layer"]).e.mean()
    assert summary.set_index(["direction", "layer"]).indirect_effect.to_numpy() == pytest.approx(effect.to_numpy(), abs=1e-12)
