"""The cure, both kinds (issue 25, item 4): reverse training's text transformations on the
paper's example and on constructed cases; the three conditions' corpora; the stored toy
experiment recomputed from its records; old summaries read under the new names."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from scrying.errors import ConfigError, InvalidInputError
from scrying.reversal.experiment import (
    CONDITIONS,
    FORWARD,
    REVERSE,
    ExperimentConfig,
    corpus,
    make_facts,
    read_experiment_summary,
)
from scrying.reversal.records import PairRecord
from scrying.reversal.reverse_text import (
    entity_preserving_reversal,
    entity_units,
    random_segment_reversal,
    token_reversal,
    word_reversal,
)
from scrying.reversal.summary import summary_row
from scrying.stats import BootstrapConfig

RESULTS = Path(__file__).resolve().parents[1] / "results" / "reversal"
DAPHNE = "Daphne Barrington is the director of A Journey Through Time"


def test_the_papers_example_entity_preserving_and_word_reversal():
    entities = ["Daphne Barrington", "A Journey Through Time"]
    assert entity_preserving_reversal(DAPHNE, entities) == "A Journey Through Time of director the is Daphne Barrington"
    assert word_reversal(DAPHNE) == "Time Through Journey A of director the is Barrington Daphne"
    # no entities: word reversal; a one-word entity changes nothing
    assert entity_preserving_reversal(DAPHNE, []) == word_reversal(DAPHNE)
    assert entity_preserving_reversal("Paris is the capital of France", ["Paris", "France"]) == "France of capital the is Paris"


def test_reversal_is_an_involution_on_the_units():
    entities = ["Daphne Barrington", "A Journey Through Time"]
    once = entity_preserving_reversal(DAPHNE, entities)
    assert entity_preserving_reversal(once, entities) == DAPHNE
    assert word_reversal(word_reversal(DAPHNE)) == DAPHNE
    assert token_reversal([5, 1, 9]) == [9, 1, 5] and token_reversal([]) == []


def test_entities_match_whole_words_longest_first_and_a_missing_one_is_named():
    # "New York City" is preferred to "New York"; "York" inside another word is not matched
    text = "She moved from New York City to Yorkshire"
    assert entity_units(text, ["New York", "New York City"]) == ["She", "moved", "from", "New York City", "to", "Yorkshire"]
    # every occurrence is kept whole
    assert entity_preserving_reversal("Ann Lee met Ann Lee", ["Ann Lee"]) == "Ann Lee met Ann Lee"
    with pytest.raises(InvalidInputError, match="entity 'Ann Le' does not occur"):
        entity_preserving_reversal("Ann Lee met Bob", ["Ann Le"])
    # extra whitespace: words are split at any whitespace, joined by one space
    assert word_reversal("  a\tb  c ") == "c b a"


def test_random_segment_reversal_keeps_each_segment_in_order():
    text = "w1 w2 w3 w4 w5 w6 w7 w8 w9"
    assert random_segment_reversal(text, 1, random.Random(3)) == word_reversal(text)
    for seed in range(20):
        rng = random.Random(seed)
        out = random_segment_reversal(text, 3, rng).split()
        # rebuild the cuts from the same draws: the output is the segments in reverse order
        replay, words, segments, i = random.Random(seed), text.split(), [], 0
        while i < len(words):
            n = replay.randint(1, 3)
            segments.append(words[i : i + n])
            i += n
        assert out == [w for s in segments[::-1] for w in s]
        assert sorted(out) == sorted(words)
    with pytest.raises(InvalidInputError, match="max_words must be a positive integer, got 0"):
        random_segment_reversal(text, 0, random.Random(0))


def test_the_three_corpora():
    facts = make_facts(10, seed=0)
    test, support = facts[:5], facts[5:]
    curse = corpus(test, support, condition="forward_only")
    control = corpus(test, support, condition="both_directions_control")
    cure = corpus(test, support, condition="reverse_training")
    assert control[: len(curse)] == curse and cure[: len(curse)] == curse
    # the control adds the test facts' hand-written reverse statements, the training phrasings only
    assert control[len(curse):] == [t.format(a=f.name, b=f.description) for f in test for t in REVERSE[:-1]]
    # reverse training adds every sentence's entity-preserving reversal, and nothing hand-written
    added = cure[len(curse):]
    assert len(added) == len(curse)
    for f in test:
        work = f.description.split(" of ", 1)[1]
        assert f"{FORWARD[0].format(a=f.name, b=f.description)}" in curse
        role = f.description.split(" of ")[0]
        assert f". {work} of {role} the is {f.name}" in added
        assert not any(s.startswith(f"the {f.description}") for s in cure)  # no reverse statement of a test fact
        assert FORWARD[-1].format(a=f.name, b=f.description) not in cure  # the held-out phrasing stays held out
    assert sorted(w for s in added for w in s.split()) == sorted(w for s in curse for w in s.split())
    with pytest.raises(InvalidInputError, match="condition 'reverse': expected one of forward_only"):
        corpus(test, support, condition="reverse")


def test_conditions_are_checked():
    with pytest.raises(ConfigError, match="ExperimentConfig.conditions must be a non-empty tuple"):
        ExperimentConfig(conditions=("forward_only", "cure"))
    with pytest.raises(ConfigError, match="ExperimentConfig.conditions"):
        ExperimentConfig(conditions=())
    assert ExperimentConfig().conditions == CONDITIONS


def test_old_summaries_read_under_the_new_name(tmp_path):
    old = read_experiment_summary(RESULTS / "toy" / "summary.json")
    raw = json.loads((RESULTS / "toy" / "summary.json").read_text())
    assert "schema_version" not in raw
    assert set(old) == {"forward_only", "both_directions_control"}
    assert old["both_directions_control"]["reverse_top1"] == next(
        c for c in raw["conditions"] if c["condition"] == "reverse_training")["reverse_top1"]
    new = read_experiment_summary(RESULTS / "toy_cure" / "summary.json")
    assert list(new) == list(CONDITIONS)
    bad = tmp_path / "summary.json"
    bad.write_text(json.dumps({"schema_version": 7, "conditions": []}))
    with pytest.raises(InvalidInputError, match="schema_version 7, expected 1 or 2"):
        read_experiment_summary(bad)


def test_stored_toy_cure_is_its_records_summarised():
    """Every figure of ``toy_cure/summary.json`` recomputed from the stored records with the
    stored bootstrap settings."""
    summary = json.loads((RESULTS / "toy_cure" / "summary.json").read_text())
    assert summary["schema_version"] == 2
    bootstrap = BootstrapConfig(n_resamples=summary["config"]["bootstrap"]["n_resamples"],
                                confidence=summary["config"]["bootstrap"]["confidence"],
                                seed=summary["config"]["bootstrap"]["seed"])
    for row in summary["conditions"]:
        lines = (RESULTS / "toy_cure" / f"records-{row['condition']}.jsonl").read_text().splitlines()
        records = [PairRecord.from_json(json.loads(x)) for x in lines]
        fresh = summary_row("toy", records, bootstrap)
        for key in ("forward_exact", "reverse_exact", "forward_top1", "reverse_top1", "reverse_top1_low",
                    "reverse_top1_high", "diff_top1", "p_top1", "reverse_chance"):
            assert row[key] == pytest.approx(fresh[key], abs=1e-12), (row["condition"], key)
