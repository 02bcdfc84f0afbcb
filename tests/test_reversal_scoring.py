"""Reversal probes: exact ranks, accuracies and paired statistics from a constructed scorer;
batched scoring equals one prompt at a time on a tiny model with padding; log-probabilities
agree with a plain transformers forward pass."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from scrying.continuations import forced_logprobs_one, greedy_one
from scrying.errors import InvalidInputError, PromptError
from scrying.models import LoadConfig, load_model
from scrying.reversal.pair_scoring import ModelScorer, ReversalConfig, score_chunk, score_pairs
from scrying.reversal.pairs import Pair, candidates
from scrying.reversal.summary import summarize
from scrying.reversal.words import word_tokenizer
from scrying.stats import BootstrapConfig
from scrying.toys.train import ToyModelConfig, build_hf_model

FWD, REV = "{a} is", "is {b}"


def _pairs(n: int = 4) -> list[Pair]:
    return [Pair(f"A{i}", f"B{i}", "r", FWD, REV, where=f"p line {i + 1}") for i in range(n)]


class TableScorer:
    """Every answer is one token; a candidate's log-prob is ``-distance`` between its number and
    a per-prompt "believed" number; greedy says the believed answer."""

    def __init__(self, believed: dict[str, str]):
        self.believed = believed  # prompt -> the answer the scorer prefers

    def answer_tokens(self, text: str, *, what: str) -> list[int]:
        if not text.strip():
            raise PromptError(f"{what} {text!r} tokenizes to no tokens")
        return [hash(text.strip()) % 1000]

    def logprobs(self, prompts, answers):
        return [[-abs(int(a.strip()[1:]) - int(self.believed[p][1:])) - 0.5] for p, a in zip(prompts, answers, strict=True)]

    def greedy(self, prompts, n_new):
        return [self.answer_tokens(" " + self.believed[p], what="x") for p in prompts]

    def decode(self, tokens):
        return str(tokens)


def test_constructed_scorer_gives_exact_ranks_accuracies_and_paired_test():
    pairs = _pairs(4)
    # forward: every prompt believes its own answer; reverse: pair i believes A{(i + k_i)}
    believed = {f"A{i} is": f"B{i}" for i in range(4)}
    believed.update({"is B0": "A0", "is B1": "A2", "is B2": "A0", "is B3": "A1"})
    records = list(score_pairs(TableScorer(believed), pairs, ReversalConfig(distractors=None)))
    assert [r.forward.rank for r in records] == [1, 1, 1, 1]
    # reverse pair 1 (answer A1, believed A2): A2 scores -0.5, A1 and A3 tie at -1.5, A0 -2.5 -> rank 2
    # pair 2 (A2, believed A0): A0 -0.5, A1 -1.5 above A2 -2.5, A3 -3.5 -> rank 3; pair 3 (A3, believed A1): A1, A0/A2 above -> 4
    assert [r.reverse.rank for r in records] == [1, 2, 3, 4]
    assert [r.reverse.exact for r in records] == [True, False, False, False]
    assert all(r.forward.n_candidates == 4 for r in records)
    table = summarize(records, BootstrapConfig(n_resamples=200, seed=0)).iloc[0]
    assert table.forward_exact == 1.0 and table.reverse_exact == 0.25
    assert table.forward_top1 == 1.0 and table.reverse_top1 == 0.25
    assert table.forward_chance == pytest.approx(0.25)
    assert table.diff_exact == pytest.approx(0.75)
    # exact two-sided sign-flip p-value: the differences are (0, 1, 1, 1); of the 16 sign
    # patterns, those with |mean| >= 0.75 are the 2 with all three ones of one sign (x2 for the zero)
    d = np.array([0.0, 1.0, 1.0, 1.0])
    flips = [abs((d * s).mean()) >= abs(d.mean()) - 1e-12 for s in itertools.product([-1, 1], repeat=4)]
    assert table.p_exact == pytest.approx(sum(flips) / 16) and sum(flips) == 4
    assert table.forward_exact_low == 1.0 and table.forward_exact_high == 1.0
    assert 0.0 <= table.reverse_exact_low <= 0.25 <= table.reverse_exact_high <= 1.0
    # mean log-prob: forward always -0.5; reverse -0.5, -1.5, -2.5, -2.5
    assert table.reverse_mean_logprob == pytest.approx(-7.0 / 4)


def test_distractors_are_seeded_never_true_and_checked():
    pairs = _pairs(6) + [Pair("A0", "B9", "r", FWD, REV)]  # A0 has two true answers forward
    assert candidates(pairs, 0, "forward") == ["B1", "B2", "B3", "B4", "B5"]  # B9 is also true for A0
    scorer = TableScorer({})
    config = ReversalConfig(distractors=3, seed=1)
    from scrying.reversal.pair_scoring import distractors

    first = distractors(pairs, 2, "reverse", config)
    assert first == distractors(pairs, 2, "reverse", config) and len(first) == 3 and "A2" not in first
    with pytest.raises(InvalidInputError, match="only 5 other forward answers"):
        list(score_pairs(scorer, pairs, ReversalConfig(distractors=6)))


# --- tiny model --------------------------------------------------------------------------------

WORDS = [f"w{i}" for i in range(24)]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("reversal-tiny")
    tokenizer = word_tokenizer(WORDS, strip="~")
    config = ToyModelConfig(arch="gemma3", d_model=16, n_heads=2, d_mlp=32, n_layers=2, n_ctx=32)
    hf = build_hf_model(config, len(tokenizer), seed=3).eval()
    hf.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def _tiny_pairs() -> list[Pair]:
    # answers of 1-3 tokens and prompts of different lengths, so rows are padded
    a = ["w1", "w2 w3", "w4", "w5 w6 w7", "w8"]
    b = ["w9 w10", "w11", "w12 w13 w14", "w15", "w16"]
    fwd = ["w20 {a} w21", "{a} w21", "w22 w20 {a}", "{a}", "w23 w23 {a} w20"]
    rev = ["{b} w22", "w23 {b}", "{b}", "w21 w20 {b} w22", "w20 {b}"]
    return [Pair(x, y, "r", f, r) for x, y, f, r in zip(a, b, fwd, rev, strict=True)]


def test_batched_scoring_equals_one_prompt_at_a_time(tiny_dir):
    model = load_model(str(tiny_dir), LoadConfig(dtype="float64"))
    pairs = _tiny_pairs()
    records = score_chunk(ModelScorer(model, batch_size=3), pairs, list(range(len(pairs))), ReversalConfig(distractors=2))
    tok = lambda text: model.to_tokens(text, prepend_bos=False)[0].tolist()  # noqa: E731
    exact = []
    for pair, record in zip(pairs, records, strict=True):
        for direction in ("forward", "reverse"):
            part = record.direction(direction)
            prompt = model.to_tokens(pair.prompt(direction))[0].tolist()
            scores = [sum(forced_logprobs_one(model, prompt, tok(" " + c))) for c in [part.answer, *part.distractors]]
            assert part.logprob == pytest.approx(scores[0], abs=1e-5)
            assert part.mean_logprob == pytest.approx(scores[0] / len(tok(" " + part.answer)), abs=1e-5)
            assert part.rank == 1 + sum(s > scores[0] for s in scores[1:])
            assert part.exact == (greedy_one(model, prompt, len(tok(" " + part.answer))) == tok(" " + part.answer))
            exact.append(part.exact)
    assert len({r.forward.n_tokens for r in records}) == 3  # 1-, 2- and 3-token answers were padded together


def test_logprobs_agree_with_plain_transformers(tiny_dir):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(tiny_dir, torch_dtype=torch.float32).eval()
    model = load_model(str(tiny_dir))
    pairs = _tiny_pairs()
    records = score_chunk(ModelScorer(model, batch_size=4), pairs, list(range(len(pairs))), ReversalConfig(distractors=1))
    tokenizer = model.tokenizer
    for pair, record in zip(pairs, records, strict=True):
        for direction in ("forward", "reverse"):
            prompt = tokenizer(pair.prompt(direction))["input_ids"]
            answer = tokenizer(pair.answer(direction), add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logits = hf(torch.tensor([prompt + answer])).logits[0].double().log_softmax(-1)
            expected = sum(float(logits[len(prompt) + j - 1, t]) for j, t in enumerate(answer))
            assert record.direction(direction).logprob == pytest.approx(expected, abs=1e-3)


def test_an_answer_that_tokenizes_to_nothing_is_named(tiny_dir):
    model = load_model(str(tiny_dir), LoadConfig(dtype="float64"))
    pairs = _tiny_pairs()[:2] + [Pair("~~", "w1", "r", FWD, REV, where="pairs.jsonl line 3")]
    with pytest.raises(PromptError, match="pairs.jsonl line 3: answer ' ~~' tokenizes to no tokens"):
        list(score_pairs(ModelScorer(model), pairs, ReversalConfig(distractors=1)))


def test_logit_lens_last_layer_is_the_models_prediction(tiny_dir):
    from scrying.reversal.lens import LensConfig, decodable_layers, lens_table

    model = load_model(str(tiny_dir), LoadConfig(dtype="float64"))
    pairs = _tiny_pairs()
    table = lens_table(model, pairs, LensConfig(batch_size=2))
    assert len(table) == len(pairs) * 2 * model.cfg.n_layers
    tok = lambda text: model.to_tokens(text, prepend_bos=False)[0].tolist()  # noqa: E731
    for pair in pairs:
        for direction in ("forward", "reverse"):
            prompt = model.to_tokens(pair.prompt(direction))[0].tolist()
            first = tok(pair.answer(direction))[0]
            logits = model(torch.tensor([prompt]))[0, -1].double()
            expected = float(logits.log_softmax(-1)[first])
            row = table[(table["index"] == pairs.index(pair)) & (table.direction == direction)
                        & (table.layer == model.cfg.n_layers - 1)].iloc[0]
            assert row.logprob == pytest.approx(expected, abs=1e-6)
            assert row["rank"] == 1 + int((logits > logits[first]).sum())
    # an earlier layer is decoded through the final norm too, so it differs from the last
    assert not np.allclose(table[table.layer == 0].logprob.to_numpy(), table[table.layer == 1].logprob.to_numpy())
    layers = decodable_layers(table, top=model.cfg.d_vocab)  # every token is in the top-d_vocab
    assert (layers.layer == 0).all()


def test_logit_lens_middle_layer_equals_transformers_hidden_state_decoded(tiny_dir):
    from transformers import AutoModelForCausalLM

    from scrying.reversal.lens import lens_table

    hf = AutoModelForCausalLM.from_pretrained(tiny_dir, torch_dtype=torch.float64).eval()
    model = load_model(str(tiny_dir), LoadConfig(dtype="float64"))
    pair = _tiny_pairs()[1]
    table = lens_table(model, [pair])
    prompt = model.tokenizer(pair.prompt("reverse"))["input_ids"]
    first = model.tokenizer(pair.answer("reverse"), add_special_tokens=False)["input_ids"][0]
    with torch.no_grad():
        hidden = hf(torch.tensor([prompt]), output_hidden_states=True).hidden_states[1][0, -1]  # after block 0
        logprobs = hf.lm_head(hf.model.norm(hidden)).log_softmax(-1)
    row = table[(table.direction == "reverse") & (table.layer == 0)].iloc[0]
    assert row.logprob == pytest.approx(float(logprobs[first]), abs=1e-6)


def test_model_scorer_never_chooses_a_banned_token(tiny_dir):
    model = load_model(str(tiny_dir), LoadConfig(dtype="float64"))
    prompts = [p.prompt("forward") for p in _tiny_pairs()]
    free = ModelScorer(model, batch_size=2).greedy(prompts, [2] * len(prompts))
    first = sorted({row[0] for row in free})
    banned = ModelScorer(model, batch_size=2, banned=first).greedy(prompts, [2] * len(prompts))
    for prompt, row in zip(prompts, banned, strict=True):
        assert row[0] not in first
        assert row == greedy_one(model, model.to_tokens(prompt)[0].tolist(), 2, banned=first)
