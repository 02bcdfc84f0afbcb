"""The controlled experiment (tiny preset): the corpus states test facts in one direction only
and never in the held-out phrasings; the toy model shows the curse (forward right, reverse at
chance) and reverse training cures it."""

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
    for reverse_training in (False, True):
        text = corpus(test, support, reverse_training=reverse_training)
        for f in test:
            forward_seen = [s for s in text if s.startswith(f.name)]
            reverse_seen = [s for s in text if s.startswith(f"the {f.description}")]
            assert len(forward_seen) == len(FORWARD) - 1
            assert len(reverse_seen) == (len(REVERSE) - 1 if reverse_training else 0)
            assert FORWARD[-1].format(a=f.name, b=f.description) not in text
            assert REVERSE[-1].format(a=f.name, b=f.description) not in text
        # the held-out phrasings are taught on the support facts
        assert REVERSE[-1].format(a=support[0].name, b=support[0].description) in text
    pair = held_out_pairs(test)[0]
    assert pair.prompt("forward") + pair.answer("forward") + " ." == FORWARD[-1].format(a=test[0].name, b=test[0].description)
    assert pair.prompt("reverse") + pair.answer("reverse") + " ." == REVERSE[-1].format(a=test[0].name, b=test[0].description)


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    # one thread: two-thread training slows ~4x whenever another process holds a core (FACTS.md)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_experiment(PRESETS["tiny"], tmp_path_factory.mktemp("reversal-toy"))
    finally:
        torch.set_num_threads(threads)


def test_the_toy_model_shows_the_curse_and_reverse_training_cures_it(tiny_result):
    rows = tiny_result.table.set_index("condition")
    curse, cure = rows.loc["forward_only"], rows.loc["reverse_training"]
    chance = 1 / (PRESETS["tiny"].distractors + 1)
    assert curse.reverse_chance == pytest.approx(chance)
    assert curse.forward_exact >= 0.9 and curse.forward_top1 >= 0.9  # held-out forward phrasing
    assert curse.reverse_exact == 0.0
    assert curse.reverse_top1_low <= chance <= curse.reverse_top1_high  # reverse at chance
    assert curse.diff_top1_low > 0 and curse.p_top1 < 0.01
    assert cure.reverse_top1 >= 0.8 and cure.reverse_top1_low > chance and cure.forward_exact >= 0.9
