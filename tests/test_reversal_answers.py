"""Issue 25 on constructed ground truth: a default K that fits small files and every check before
the model loads; one-to-many relations scored by any right answer (exact match and rank); hard
negatives chosen by the documented rule and ranked beside the random set."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from scrying.cli.main import main
from scrying.errors import InvalidInputError
from scrying.reversal.pair_scoring import (
    ReversalConfig,
    check_distractors,
    distractors,
    relation_distractors,
    score_pairs,
)
from scrying.reversal.pairs import (
    Pair,
    candidates,
    hard_distractors,
    known_true,
    parse_pair,
    true_answers,
)
from scrying.reversal.probe import read_pair_files, subset
from scrying.reversal.relations import packaged_relation_files
from scrying.reversal.summary import summarize
from scrying.stats import BootstrapConfig
from tests.test_fail_before_work import no_model  # noqa: F401 (fixture)
from tests.test_reversal_scoring import tiny_dir  # noqa: F401 (fixture)

FWD, REV = "{a} is in", "{b} has"


class WordScorer:
    """Each word is one token (its id: first-seen order); a candidate's log-prob is the table's
    value for (prompt, answer) (default -10); greedy says the prompt's believed text."""

    def __init__(self, table: dict[tuple[str, str], float], believed: dict[str, str]):
        self.table, self.believed, self.vocab = table, believed, {}

    def answer_tokens(self, text: str, *, what: str) -> list[int]:
        if not text.split():
            raise InvalidInputError(f"{what} {text!r} tokenizes to no tokens")
        return [self.vocab.setdefault(w, len(self.vocab)) for w in text.split()]

    def logprobs(self, prompts, answers):
        return [[self.table.get((p, a.strip()), -10.0)] for p, a in zip(prompts, answers, strict=True)]

    def greedy(self, prompts, n_new):
        return [self.answer_tokens(" " + self.believed.get(p, "nothing"), what="x")[:n] for p, n in zip(prompts, n_new, strict=True)]

    def decode(self, tokens):
        inverse = {v: k for k, v in self.vocab.items()}
        return " ".join(inverse[t] for t in tokens)


def _line(a: str, b: str, **extra) -> dict:
    return {"a": a, "b": b, "relation": "city_state", "forward": FWD, "reverse": REV, **extra}


def _cities(**extra) -> list[Pair]:
    """Six cities in three states (S1: C1, C2; S2: C3, C4; S3: C5, C6), declared many_to_one; S1
    also has C9 in the fact tables."""
    lines = [_line("C1", "S1", also_true=["C9"]), _line("C2", "S1", also_true=["C9"]), _line("C3", "S2"), _line("C4", "S2"),
             _line("C5", "S3"), _line("C6", "S3")]
    return [parse_pair({**x, "cardinality": "many_to_one", **extra}, f"p line {i + 1}") for i, x in enumerate(lines)]


# --- (3) fail fast ----------------------------------------------------------------------------------


def _small_file(tmp_path: Path, n: int = 16) -> Path:
    """``n`` one-to-one pairs of one relation, words of the tiny model's vocabulary."""
    lines = [{"a": f"w{i}", "b": f"w{i + 4}", "relation": "small", "forward": "w20 {a} w21", "reverse": "w22 {b}"}
             for i in range(n)]
    path = tmp_path / "small.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_a_16_pair_file_runs_with_the_default_options_and_a_one_line_note(tmp_path, tiny_dir, capsys):  # noqa: F811
    pairs = _small_file(tmp_path)
    out = tmp_path / "r.jsonl"
    assert main(["reversal", "--pairs", str(pairs), "--model", str(tiny_dir), "--out", str(out), "--n-bootstrap", "20"]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "distractors per prompt instead of 20" in line]
    assert len(notes) == 1 and "relation 'small' has only 15 other forward answers" in notes[0], err
    lines = out.read_text().splitlines()
    assert json.loads(lines[0])["settings"]["distractors"] == 20 and json.loads(lines[0])["settings"]["fit"] is True
    records = [json.loads(x) for x in lines[1:]]
    assert len(records) == 16
    for r in records:
        for d in ("forward", "reverse"):
            assert r[d]["n_candidates"] == 16 and len(set(r[d]["distractors"])) == 15


def test_an_asked_k_that_does_not_fit_stops_before_the_model_with_the_largest_k(tmp_path, no_model, capsys):  # noqa: F811
    pairs = _small_file(tmp_path)
    assert main(["reversal", "--pairs", str(pairs), "--out", str(tmp_path / "r.jsonl"), "-k", "20"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["scrying: error: 20 distractors asked, but relation 'small' has only 15 other forward answers for "
                   "small.jsonl line 1 (use --distractors 15 or fewer, or 0 for all)"]
    assert not (tmp_path / "r.jsonl").exists()


def test_the_default_k_reaches_the_model_load_on_a_small_file(tmp_path, no_model):  # noqa: F811
    """Every check passes before loading: the first thing that fails is the (forbidden) load."""
    pairs = _small_file(tmp_path)
    with pytest.raises(AssertionError, match="a model was loaded before the inputs were checked"):
        main(["reversal", "--pairs", str(pairs), "--out", str(tmp_path / "r.jsonl")])


@pytest.mark.parametrize(
    ("lines", "needle"),
    [
        ([_line("C1", "S1"), _line("C2", "S1"), _line("C3", "S2")],
         "relation 'city_state' is one_to_one but its reverse prompt for 'S1' has 2 answers in the file (C1, C2); "
         "declare \"cardinality\": \"many_to_one\""),
        ([_line("C1", "S1", cardinality="many_to_one"), _line("C2", "S2")],
         "relation 'city_state' is declared 'one_to_one' here but 'many_to_one' at pairs.jsonl line 1"),
        ([_line("C1", "S1", cardinality="many_to_one"), _line("C1", "S2", cardinality="many_to_one"),
          _line("C2", "S3", cardinality="many_to_one")],
         "relation 'city_state' is many_to_one but its forward prompt for 'C1' has 2 answers"),
        ([_line("C1", "S1", cardinality="one_to_all")], "'cardinality' must be one of one_to_one, many_to_one, one_to_many"),
        ([_line("C1", "S1", also_true=["C2"])], "'also_true' lists further right answers of a many direction"),
        ([_line("C1", "S1", hard_forward="S2")], "'hard_forward' must be a list of non-empty strings"),
        ([_line("C1", "S1")], "relation 'city_state' has no other forward answer for pairs.jsonl line 1"),
    ],
)
def test_bad_cardinality_and_lists_stop_before_the_model(tmp_path, no_model, capsys, lines, needle):  # noqa: F811
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert main(["reversal", "--pairs", str(path), "--out", str(tmp_path / "r.jsonl"), "-k", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("scrying: error: ") and needle in err[0], err
    assert not (tmp_path / "r.jsonl").exists()


def test_fit_lowers_k_per_relation_and_explicit_k_is_refused():
    pairs = _cities()
    assert relation_distractors(pairs, ReversalConfig(distractors=20, fit=True)).k == {"city_state": 2}
    note = relation_distractors(pairs, ReversalConfig(distractors=20, fit=True)).notes
    assert note == ["relation 'city_state' has only 2 other forward answers for p line 1: 2 distractors per prompt instead of 20"]
    assert relation_distractors(pairs, ReversalConfig(distractors=2)).notes == []
    with pytest.raises(InvalidInputError, match="3 distractors asked, but relation 'city_state' has only 2 other forward answers"):
        check_distractors(pairs, ReversalConfig(distractors=3))
    assert len(distractors(pairs, 0, "forward", ReversalConfig(distractors=20, fit=True))) == 2


# --- (2) one-to-many ---------------------------------------------------------------------------------


def test_right_answers_come_from_the_file_and_the_fact_tables():
    pairs = _cities()
    assert true_answers(pairs, 0, "reverse") == ["C1", "C2"]
    assert true_answers(pairs, 1, "reverse") == ["C2", "C1"]
    assert known_true(pairs, 0, "reverse") == {"C1", "C2", "C9"}
    assert candidates(pairs, 0, "reverse") == ["C3", "C4", "C5", "C6"]  # never another city of S1
    assert true_answers(pairs, 0, "forward") == ["S1"] and candidates(pairs, 0, "forward") == ["S2", "S3"]


def test_any_right_answer_counts_for_rank_and_exact_match():
    pairs = _cities()
    # S1's prompt prefers C2 (right, another line's), then the wrong C3, then its own C1
    table = {("S1 has", "C2"): -1.0, ("S1 has", "C3"): -2.0, ("S1 has", "C1"): -3.0,
             ("S2 has", "C5"): -1.0, ("S2 has", "C3"): -2.0}
    believed = {"S1 has": "C9", "S2 has": "C5", "S3 has": "C5"}  # C9: right for S1 by the fact tables only
    records = list(score_pairs(WordScorer(table, believed), pairs, ReversalConfig(distractors=None)))
    c1, c2, c3 = records[0].reverse, records[1].reverse, records[2].reverse
    assert (c1.rank, c1.n_right, c1.right_answers, c1.n_candidates) == (1, 2, ("C2",), 6)  # 2 right + 4 wrong
    assert c1.logprob == -3.0  # the pair's own answer's log-prob is still its own
    assert c1.exact and c2.exact  # greedy said C9
    assert c2.rank == 1 and c2.right_answers == ("C1",)
    assert (c3.rank, c3.exact) == (2, False)  # S2's prompt prefers the wrong C5 over C3 and C4
    assert set(c1.distractors) == {"C3", "C4", "C5", "C6"}
    table_row = summarize(records, BootstrapConfig(n_resamples=50)).iloc[0]
    assert table_row.reverse_chance == pytest.approx(2 / 6)  # two right answers among six candidates
    # the same facts declared one_to_one in a file of distinct states: only the own answer counts
    alone = [parse_pair(_line(f"C{i}", f"S{i}"), f"q line {i}") for i in (1, 3, 5)]
    table1 = {("S1 has", "C3"): -2.0, ("S1 has", "C1"): -3.0}
    rec = list(score_pairs(WordScorer(table1, {"S1 has": "C9"}), alone, ReversalConfig(distractors=None)))[0].reverse
    assert (rec.rank, rec.exact, rec.n_right) == (2, False, 1)


def test_exact_match_is_a_right_answer_at_the_start_of_the_greedy_tokens():
    pairs = [parse_pair({**_line(a, b), "cardinality": "many_to_one"}, f"p line {i}")
             for i, (a, b) in enumerate([("New Town", "S1"), ("Old", "S1"), ("X", "S2"), ("Y", "S3")])]
    # greedy decodes 2 tokens (the longest right answer); "Old Town" starts with the right "Old"
    scorer = WordScorer({}, {"S1 has": "Old Town", "S2 has": "X Y", "S3 has": "New Town"})
    records = list(score_pairs(scorer, pairs, ReversalConfig(distractors=None)))
    assert records[0].reverse.exact and records[0].reverse.greedy == "Old Town"
    assert records[2].reverse.exact  # one right answer: one token decoded, "X"
    assert records[2].reverse.greedy == "X"
    assert not records[3].reverse.exact  # "New" is not "Y"


def test_packaged_city_state_never_ranks_a_right_city_as_wrong():
    pairs = read_pair_files(packaged_relation_files())
    cities = [i for i, p in enumerate(pairs) if p.relation == "us_city_state"]
    assert {pairs[i].cardinality for i in cities} == {"many_to_one"}
    texas = [i for i in cities if pairs[i].b == "Texas"]
    assert len(texas) >= 5 and {"Lubbock", "Waco"} <= known_true(pairs, texas[0], "reverse")
    for i in cities:
        same_state = {pairs[j].a for j in cities if pairs[j].b == pairs[i].b} | set(pairs[i].also_true)
        assert not same_state & set(candidates(pairs, i, "reverse"))
        assert sorted(true_answers(pairs, i, "reverse")) == sorted(pairs[j].a for j in cities if pairs[j].b == pairs[i].b)
    check_distractors(pairs, ReversalConfig())  # every relation's cardinality agrees with its lines
    # a city whose own pair leaks its state (New York City / New York) is left out of the file but
    # is still a right answer for its state
    new_york = [i for i in cities if pairs[i].b == "New York"]
    assert new_york and all("New York City" in known_true(pairs, i, "reverse") for i in new_york)
    assert not any(pairs[i].a == "New York City" for i in cities)


# --- (1) hard negatives --------------------------------------------------------------------------


def _first_word(text: str) -> int:
    return hash(text.split()[0])


def test_hard_set_follows_the_rule_in_order():
    lines = [_line("C1", "S1", hard_reverse=["C3", "Big City", "C2", "S1", "Big City"], cardinality="many_to_one"),
             _line("C2", "S1", cardinality="many_to_one"), _line("C3", "S2", cardinality="many_to_one"),
             _line("C1 East", "S3", cardinality="many_to_one"), _line("C5", "S4", cardinality="many_to_one"),
             _line("C6", "S5", cardinality="many_to_one")]
    pairs = [parse_pair(x, f"p line {i}") for i, x in enumerate(lines)]
    random_set = ["C6", "C5", "C3", "C1 East"]
    hard = hard_distractors(pairs, 0, "reverse", random_set, _first_word)
    # 1. the confusables, less the right C2, the subject S1 and a repeat; 2. "C1 East" shares C1's first word;
    # 3. filled from the random set in its order, to as many as the random set
    assert hard == ["C3", "Big City", "C1 East", "C6"]
    assert hard_distractors(pairs, 0, "reverse", random_set[:2], _first_word) == ["C3", "Big City"]


def test_hard_rank_sees_a_confusion_the_random_set_cannot():
    lines = [_line("C1", "S1", hard_forward=["S9"]), _line("C2", "S2"), _line("C3", "S3"), _line("C4", "S4")]
    pairs = [parse_pair(x, f"p line {i}") for i, x in enumerate(lines)]
    table = {("C1 is in", "S1"): -2.0, ("C1 is in", "S9"): -1.0}  # the model prefers the neighbour S9
    config = ReversalConfig(distractors=2, seed=0)
    records = list(score_pairs(WordScorer(table, {}), pairs, config))
    fwd = records[0].forward
    assert fwd.rank == 1 and fwd.hard_rank == 2 and fwd.hard_distractors[0] == "S9"
    assert len(fwd.hard_distractors) == len(fwd.distractors) == 2
    assert all(r.forward.hard_rank == 1 for r in records[1:])
    row = summarize(records, BootstrapConfig(n_resamples=50)).iloc[0]
    assert row.forward_top1 == 1.0 and row.forward_top1_hard == pytest.approx(3 / 4)
    assert row.diff_top1_hard == pytest.approx(3 / 4 - 1.0)  # reverse: every hard rank is 1


def test_records_before_hard_negatives_summarise_to_nan():
    from scrying.reversal.records import PairRecord

    old = Path(__file__).resolve().parents[1] / "results" / "reversal" / "toy"
    files = sorted(old.glob("records-*.jsonl"))
    if not files:
        pytest.skip("no stored toy records")
    records = [PairRecord.from_json(json.loads(x)) for x in files[0].read_text().splitlines()]
    assert all(r.forward.hard_rank is None for r in records)
    row = summarize(records, BootstrapConfig(n_resamples=20)).iloc[0]
    assert math.isnan(row.forward_top1_hard) and not math.isnan(row.forward_top1)


def test_packaged_hard_negatives_hold_the_confusable_answers():
    pairs = read_pair_files(packaged_relation_files())
    by = {(p.relation, p.a): p for p in pairs}
    assert "Birmingham" in by["state_capital", "Alabama"].hard_forward
    assert "Sydney" in by["country_capital", "Australia"].hard_forward
    assert "Pakistan" in by["country_capital", "Afghanistan"].hard_reverse
    assert "Maine" in by["us_city_state", "Portland"].hard_forward
    for i, p in enumerate(pairs):
        for d in ("forward", "reverse"):
            assert not set(p.hard(d)) & known_true(pairs, i, d), (p.where, d)


def test_subset_takes_every_nth_pair_of_each_relation():
    pairs = [Pair(f"A{i}", f"B{i}", "r" if i < 5 else "s", FWD, REV) for i in range(9)]
    assert subset(pairs, 2) == [0, 2, 4, 5, 7] and subset(pairs, 1) == list(range(9))


def test_an_empty_answer_is_dropped_and_k_fitted_before_the_weights_load(tmp_path, tiny_dir, monkeypatch):  # noqa: F811
    """With the tokenizer alone: the pair whose answer tokenizes to nothing is named and K is
    fitted to the 15 pairs left, both before the model loads (here loading fails the test)."""
    from scrying.reversal import run
    from scrying.reversal.run import ProbeJobConfig, run_probe_job

    path = _small_file(tmp_path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:3], json.dumps({**json.loads(lines[3]), "a": "~~"}), *lines[4:]]) + "\n")

    def loud(*args, **kwargs):
        raise AssertionError("loaded")

    monkeypatch.setattr(run, "load_model", loud)
    notes: list[str] = []
    config = ProbeJobConfig(pairs=(str(path),), model=str(tiny_dir), out=tmp_path / "r.jsonl")
    with pytest.raises(AssertionError, match="loaded"):
        run_probe_job(config, on_note=notes.append)
    assert notes == ["relation 'small' has only 14 other forward answers for small.jsonl line 1: "
                     "14 distractors per prompt instead of 20"]
    assert not (tmp_path / "r.jsonl").exists()
