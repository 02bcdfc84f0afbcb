"""The controlled experiment (tiny preset): the corpus states test facts in one direction only
and never in the held-out phrasings; the toy model shows the curse (forward right, reverse at
chance), and both the both-directions control and reverse training (entity-preserving
reversal) cure it."""

from __future__ import annotations

import pytest
import torch

from scrying.reversal.experiment import (
    FORWARD,
    PRESETS,
    REVERSE,
    corpus,
    held_out_pairs,
    make_facts,
    run_experiment,
)


def test_corpus_states_test_facts_forward_only_and_holds_out_the_test_phrasings():
    facts = make_facts(10, seed=0)
    test, support = facts[:5], facts[5:]
    assert len({f.name for f in facts}) == 10 and len({f.description for f in facts}) == 10
    for condition in ("forward_only", "both_directions_control", "reverse_training"):
        text = corpus(test, support, condition=condition)
        for f in test:
            forward_seen = [s for s in text if s.startswith(f.name)]
            reverse_seen = [s for s in text if s.startswith(f"the {f.description}")]
            assert len(forward_seen) == len(FORWARD) - 1
            assert len(reverse_seen) == (len(REVERSE) - 1 if condition == "both_directions_control" else 0)
            assert FORWARD[-1].format(a=f.name, b=f.description) not in text
            assert REVERSE[-1].format(a=f.name, b=f.description) not in text
        # the held-out phrasings are taught on the support facts
        assert REVERSE[-1].format(a=support[0].name, b=support[0].description) in text
    pair = held_out_pairs(test)[0]
    assert pair.prompt("forward") + pair.answer("forward") + " ." == FORWARD[-1].format(a=test[0].name, b=test[0].description)
    assert pair.prompt("reverse") + pair.answer("reverse") + " ." == REVERSE[-1].format(a=test[0].name, b=test[0].description)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # training toys on two threads slows ~4x whenever another process holds a core (FACTS.md)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    return run_experiment(PRESETS["tiny"], tmp_path_factory.mktemp("reversal-toy"))


def test_the_toy_model_shows_the_curse_and_both_cures_lift_it(tiny_result):
    rows = tiny_result.table.set_index("condition")
    assert list(rows.index) == ["forward_only", "both_directions_control", "reverse_training"]
    curse = rows.loc["forward_only"]
    chance = 1 / (PRESETS["tiny"].distractors + 1)
    assert curse.reverse_chance == pytest.approx(chance)
    assert curse.forward_exact >= 0.9 and curse.forward_top1 >= 0.9  # held-out forward phrasing
    assert curse.reverse_exact == 0.0
    assert curse.reverse_top1_low <= chance <= curse.reverse_top1_high  # reverse at chance
    assert curse.diff_top1_low > 0 and curse.p_top1 < 0.01
    for condition in ("both_directions_control", "reverse_training"):
        cure = rows.loc[condition]
        assert cure.reverse_top1 >= 0.8 and cure.reverse_top1_low > chance and cure.forward_exact >= 0.9, condition
    # reverse training doubles the corpus: every curse sentence and its reversal
    assert rows.loc["reverse_training"].n_sentences == 2 * curse.n_sentences


def test_finetune_trains_all_but_the_embedding_and_lowers_the_loss(tmp_path):
    from scrying.models import LoadConfig, load_model
    from scrying.reversal.finetune import FinetuneConfig, _sentence, finetune
    from scrying.reversal.words import word_tokenizer
    from scrying.toys.train import ToyModelConfig, build_hf_model

    facts = make_facts(4, seed=0)
    sentences = [_sentence(s) for s in corpus(facts[:2], facts[2:], condition="forward_only")]
    tokenizer = word_tokenizer(sorted({w for s in sentences for w in s.split()}))
    hf = build_hf_model(ToyModelConfig(d_model=32, n_heads=2, d_mlp=64, n_ctx=32), len(tokenizer), seed=0).eval()
    hf.save_pretrained(tmp_path, safe_serialization=True)
    tokenizer.save_pretrained(tmp_path)
    model = load_model(str(tmp_path), LoadConfig())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    losses = finetune(model, sentences, FinetuneConfig(n_test=10, distractors=3, steps=30, batch_size=8, lr=3e-3)).losses
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.25
    vocab = model.cfg.d_vocab
    for name, p in model.named_parameters():
        changed = not torch.equal(p, before[name])
        assert changed == (p.shape[0] != vocab), name  # the embedding (and untied unembedding) stay


def test_finetune_stops_once_forward_top1_reaches_the_target(tmp_path):
    """With a target, training runs in rounds of ``eval_every`` steps and stops after the first
    round whose measurement reaches it; without one, it runs every step."""
    from scrying.models import LoadConfig, load_model
    from scrying.reversal.finetune import FinetuneConfig, _sentence, finetune
    from scrying.reversal.words import word_tokenizer
    from scrying.toys.train import ToyModelConfig, build_hf_model

    facts = make_facts(4, seed=0)
    sentences = [_sentence(s) for s in corpus(facts[:2], facts[2:], condition="reverse_training")]
    tokenizer = word_tokenizer(sorted({w for s in sentences for w in s.split()}))
    hf = build_hf_model(ToyModelConfig(d_model=16, n_heads=2, d_mlp=32, n_ctx=32), len(tokenizer), seed=0).eval()
    hf.save_pretrained(tmp_path, safe_serialization=True)
    tokenizer.save_pretrained(tmp_path)
    readings = iter([0.2, 0.5, 0.9, 1.0])
    config = FinetuneConfig(n_test=10, distractors=3, steps=50, batch_size=4, lr=1e-3, target_forward_top1=0.8, eval_every=7)
    trace = finetune(load_model(str(tmp_path), LoadConfig()), sentences, config, forward_top1=lambda: next(readings))
    assert len(trace.losses) == 21 and trace.forward_top1 == [(7, 0.2), (14, 0.5), (21, 0.9)]
    assert trace.seconds_per_step > 0
    plain = finetune(load_model(str(tmp_path), LoadConfig()), sentences, FinetuneConfig(n_test=10, distractors=3, steps=9, batch_size=4))
    assert len(plain.losses) == 9 and plain.forward_top1 == []
