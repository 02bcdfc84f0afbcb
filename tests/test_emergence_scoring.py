"""Batched scoring equals the item-by-item reference; teacher-forced log-probs equal a forward
read by hand; choices are the sums of their tokens' log-probs; bad targets are refused."""

import pytest
import torch

from scrying.continuations import greedy_continuations, greedy_one, non_text_tokens
from scrying.emergence.item_scoring import ScoringConfig, score_item_by_item, score_items
from scrying.emergence.tasks import Item
from scrying.errors import ConfigError, PromptError
from tests.tiny_models import tiny

# Word-level tokenizer: one token per "tN" word, BOS added for prompts only.
ITEMS = [
    Item("short", "t1", " t6 t7 t8 t9"),
    Item("long", "t3 t5 t7 t9 t11 t2 t4 t6", " t0"),
    Item("mcq", "t2 t4", " t5 t5", choices=(" t1", " t5 t5", " t9 t3 t14")),
    Item("mid", "t15 t14 t13", " t12 t11"),
    Item("one", "t8", " t8 t8 t8 t8 t8 t8"),
]


@pytest.fixture(scope="module", params=["gemma3", "gpt2"])
def model(request, tmp_path_factory):
    return tiny(request.param, tmp_path_factory.mktemp("tiny-emergence"))


@pytest.mark.parametrize("config", [ScoringConfig(batch_size=3), ScoringConfig(batch_size=16, max_new_tokens=5)])
def test_batched_equals_item_by_item(model, config):
    batched = score_items(model, ITEMS, config)
    looped = score_item_by_item(model, ITEMS, ScoringConfig(max_new_tokens=config.max_new_tokens))
    assert [s.item for s in batched] == [i.item for i in ITEMS]
    for b, r in zip(batched, looped, strict=True):
        assert b.target_tokens == r.target_tokens
        assert b.target_logprobs == pytest.approx(r.target_logprobs, abs=1e-5)
        assert b.output_tokens == r.output_tokens
        assert b.output == r.output
        assert b.target_hits == r.target_hits and len(b.target_hits) == len(b.target_tokens)
        assert (b.choice_logprobs is None) == (r.choice_logprobs is None)
        if b.choice_logprobs is not None:
            assert list(b.choice_logprobs) == list(r.choice_logprobs)
            assert b.choice_logprobs == pytest.approx(r.choice_logprobs, abs=1e-5)
    n_new = config.max_new_tokens
    assert [len(s.output_tokens) for s in batched] == [n_new or len(s.target_tokens) for s in batched]
    # the rows really differ in length, so padding is exercised in every batch
    assert len({len(s.target_tokens) for s in batched}) > 2


def test_argmax_flags_are_what_greedy_decoding_needs(model):
    """Teacher-forced argmax flags: each is "the target token is the argmax of the logits after
    the target's own prefix" (by hand from a full forward), and greedy decoding reproduces the
    target exactly when every flag is set (also: the greedy output agrees with the target up to
    the first unset flag)."""
    scored = score_items(model, ITEMS, ScoringConfig(batch_size=4, text_only=False))
    for s in scored:
        prompt = model.to_tokens(s.prompt)[0].tolist()
        with torch.no_grad():
            logits = model(torch.tensor([prompt + s.target_tokens]))[0]
        n = len(prompt)
        assert s.target_hits == [int(logits[n + j - 1].argmax()) == t for j, t in enumerate(s.target_tokens)]
        first_miss = next((j for j, h in enumerate(s.target_hits) if not h), len(s.target_hits))
        assert s.output_tokens[:first_miss] == s.target_tokens[:first_miss]
        assert (s.output_tokens == s.target_tokens) == all(s.target_hits)
        if first_miss < len(s.target_tokens):
            assert s.output_tokens[first_miss] != s.target_tokens[first_miss]


def _in_item_order(model, items: list[Item], config: ScoringConfig) -> list[tuple[list[float], dict | None, list[int]]]:
    """What emergence computed before the batching rule was shared with reversal: sequences cut
    into batches in item order (target, then choices), prompts likewise."""
    from scrying.continuations import continuation_logprobs
    from scrying.emergence.item_scoring import _tokenize_item

    tokenized = [_tokenize_item(model, item, config) for item in items]
    keys = [(i, c) for i, t in enumerate(tokenized) for c in [None, *[c for c in (t.choices or {}) if c != items[i].target]]]
    forced: dict = {}
    for start in range(0, len(keys), config.batch_size):
        batch = keys[start : start + config.batch_size]
        conts = [tokenized[i].target if c is None else tokenized[i].choices[c] for i, c in batch]
        forced.update(zip(batch, continuation_logprobs(model, [tokenized[i].prompt for i, _ in batch], conts), strict=True))
    outputs: list[list[int]] = []
    for start in range(0, len(items), config.batch_size):
        part = tokenized[start : start + config.batch_size]
        outputs += greedy_continuations(model, [t.prompt for t in part], [t.n_new for t in part], banned=non_text_tokens(model))
    out = []
    for i, (item, t) in enumerate(zip(items, tokenized, strict=True)):
        choices = None
        if t.choices:
            choices = {c: sum(forced[(i, None if c == item.target else c)]) for c in t.choices}
        out.append((forced[(i, None)], choices, outputs[i]))
    return out


@pytest.mark.parametrize("batch_size", [2, 3])
def test_the_shared_batching_rule_changes_padding_not_values(model, batch_size):
    """Batching by length (:func:`scrying.continuations.length_batches`, the rule reversal used and
    emergence now shares) against the in-order batches emergence used before: the same greedy
    tokens, and log-probabilities equal within 1e-6. Padding is never read, so only the batch a
    row shares changes: float64 logits then differ in the last bits, and the float32 log-softmax
    the scores are read from (:func:`scrying.metrics.target_logprob`) rounds that to at most a
    few float32 units (2.4e-7 seen here)."""
    from scrying.continuations import length_batches

    config = ScoringConfig(batch_size=batch_size)
    items = ITEMS + [Item("mcq2", "t9", " t2", choices=(" t2", " t3 t4", " t5 t6 t7 t8"))]
    assert length_batches([len(i.prompt) for i in items], batch_size) != [
        list(range(s, min(s + batch_size, len(items)))) for s in range(0, len(items), batch_size)
    ]  # the two rules do batch differently here
    for new, (logprobs, choices, output) in zip(score_items(model, items, config), _in_item_order(model, items, config), strict=True):
        assert new.output_tokens == output
        assert new.target_logprobs == pytest.approx(logprobs, abs=1e-6, rel=0)
        assert (new.choice_logprobs is None) == (choices is None)
        if choices is not None:
            assert new.choice_logprobs == pytest.approx(choices, abs=1e-6, rel=0)


def test_length_batches_sort_by_length_keep_ties_in_order_and_cover_every_row():
    from scrying.continuations import length_batches

    lengths = [4, 1, 4, 3, 1, 9, 3, 4]
    batches = length_batches(lengths, 3)
    assert batches == [[1, 4, 3], [6, 0, 2], [7, 5]]
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert length_batches([], 3) == []


def _forward_logprobs(model, token_ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([token_ids]))[0].double().log_softmax(-1)


def test_teacher_forced_logprobs_by_hand(model):
    item = Item("x", "t3 t1 t4", " t1 t5 t9")
    (scored,) = score_items(model, [ITEMS[0], item, ITEMS[1]], ScoringConfig(batch_size=3))[1:2]
    # <bos>=1, tN = 4 + N
    assert scored.target_tokens == [5, 9, 13]
    logprobs = _forward_logprobs(model, [1, 7, 5, 8, 5, 9, 13])
    by_hand = [logprobs[3, 5], logprobs[4, 9], logprobs[5, 13]]  # position p predicts token p + 1
    assert scored.target_logprobs == pytest.approx([float(v) for v in by_hand], abs=1e-5)
    assert scored.target_logprob == pytest.approx(float(sum(by_hand)), abs=1e-5)


def test_choices_are_sums_of_their_token_logprobs(model):
    (scored,) = [s for s in score_items(model, ITEMS, ScoringConfig(batch_size=2)) if s.item == "mcq"]
    prompt = [1, 6, 8]  # <bos> t2 t4
    for choice in ITEMS[2].choices:
        ids = model.to_tokens(choice, prepend_bos=False)[0].tolist()
        logprobs = _forward_logprobs(model, prompt + ids)
        total = sum(float(logprobs[len(prompt) + j - 1, t]) for j, t in enumerate(ids))
        assert scored.choice_logprobs[choice] == pytest.approx(total, abs=1e-5)
    assert scored.choice_logprobs[" t5 t5"] == pytest.approx(scored.target_logprob, abs=1e-5)


@pytest.mark.parametrize("text_only", [False, True])
def test_greedy_output_is_the_argmax_continuation(model, text_only):
    """Plain argmax, or (text only) the argmax over all but the four special tokens."""
    (scored,) = score_items(model, [Item("g", "t2 t9 t2", " t9 t2 t9")], ScoringConfig(text_only=text_only))
    assert non_text_tokens(model) == [0, 1, 2, 3]
    sequence = [1, 6, 13, 6]
    for _ in range(3):
        logprobs = _forward_logprobs(model, sequence)[-1]
        sequence.append(int(logprobs[4:].argmax()) + 4 if text_only else int(logprobs.argmax()))
    assert scored.output_tokens == sequence[4:]
    assert scored.output == model.tokenizer.decode(sequence[4:])


def test_banned_tokens_are_never_chosen(model):
    """Banning each step's favourite gives the runner-up, batched as in the reference."""
    prompt = [1, 6, 13, 6]
    free = greedy_continuations(model, [prompt, prompt[:2]], [3, 3])
    banned = sorted(set(free[0] + free[1]))
    constrained = greedy_continuations(model, [prompt, prompt[:2]], [3, 3], banned=banned)
    assert constrained == [greedy_one(model, prompt, 3, banned=banned), greedy_one(model, prompt[:2], 3, banned=banned)]
    assert not set(banned) & set(constrained[0] + constrained[1])
    logprobs = _forward_logprobs(model, prompt)[-1]
    logprobs[banned] = -float("inf")
    assert constrained[0][0] == int(logprobs.argmax())


@pytest.mark.parametrize("target", ["", "   "])
def test_empty_target_is_refused(model, target):
    with pytest.raises(PromptError, match="item 'blank': target .* tokenizes to no tokens"):
        score_items(model, [ITEMS[0], Item("blank", "t1 t2", target)], ScoringConfig())


def test_too_long_for_the_context_is_refused(model):
    long_target = " " + " ".join(["t3"] * model.cfg.n_ctx)
    with pytest.raises(PromptError, match="item 'huge': .*exceed the model's context of 32"):
        score_items(model, [Item("huge", "t1", long_target)], ScoringConfig())


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"batch_size": 0}, "batch_size"), ({"max_new_tokens": 0}, "max_new_tokens"), ({"batch_size": True}, "batch_size")],
)
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=f"ScoringConfig.{field}"):
        ScoringConfig(**kwargs)


def test_batched_equals_item_by_item_on_gemma(gemma):
    """The default model (float32): sums of mixed lengths, products and induction in one batch."""
    from scrying.emergence.tasks import addition, induction, multiplication

    items = addition(1, 2, seed=0) + addition(3, 2, seed=0) + multiplication(2, 2, seed=0) + induction(2, 6, seed=0)
    batched = score_items(gemma, items, ScoringConfig(batch_size=8))
    looped = score_item_by_item(gemma, items, ScoringConfig())
    for b, r in zip(batched, looped, strict=True):
        assert b.target_tokens == r.target_tokens
        assert b.target_logprobs == pytest.approx(r.target_logprobs, abs=1e-4)  # float32 matmuls
        assert b.output_tokens == r.output_tokens
        assert b.target_hits == r.target_hits
        assert (b.output_tokens == b.target_tokens) == all(b.target_hits)  # greedy exact = every token the argmax
    assert [len(s.target_tokens) for s in batched[:4]] == [len(i.target) for i in items[:4]]  # one token per digit


def test_non_text_tokens_are_specials_and_markers_not_newlines_or_html():
    """Gemma adds "\\n", runs of newlines and HTML tags as (non-special) tokens: text, allowed;
    its "<start_of_image>" and "[multimodal]" are markers, banned, as are special tokens."""
    from types import SimpleNamespace

    from tokenizers import AddedToken

    from scrying.toys import build_tokenizer

    tokenizer = build_tokenizer(4)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False)
                          for t in ("\n", "\n\n", "<table>", "</td>", "<start_of_image>", "[multimodal]")])
    tokenizer.add_tokens([AddedToken("<unused0>", special=True)], special_tokens=True)
    ids = tokenizer.convert_tokens_to_ids
    model = SimpleNamespace(tokenizer=tokenizer, cfg=SimpleNamespace(d_vocab=len(tokenizer)))
    assert non_text_tokens(model) == sorted([0, 1, 2, 3, ids("<start_of_image>"), ids("[multimodal]"), ids("<unused0>")])
