"""Built-in tasks are correct and seeded; task specs and JSONL task files fail with errors that
name the bad input (file and line for files)."""

import json
import re

import pytest

from scrying.emergence.tasks import (
    DEFAULT_WORDS,
    Item,
    addition,
    induction,
    multiplication,
    read_task_file,
    task_from_spec,
)
from scrying.errors import InvalidInputError


@pytest.mark.parametrize(("task", "symbol", "op"), [(addition, "+", int.__add__), (multiplication, "*", int.__mul__)])
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_arithmetic_answers_are_correct(task, symbol, op, k):
    items = task(k, 50, seed=3)
    assert len(items) == 50 and len({i.item for i in items}) == 50
    for item in items:
        a, b = re.fullmatch(rf"(\d+){re.escape(symbol)}(\d+)=", item.prompt).groups()
        assert len(a) == k and len(b) == k  # k digits, no leading zero
        assert item.target == str(op(int(a), int(b)))
        assert item.choices is None


def test_arithmetic_is_seeded():
    assert addition(3, 20, seed=0) == addition(3, 20, seed=0)
    assert addition(3, 20, seed=0) != addition(3, 20, seed=1)
    assert multiplication(2, 20, seed=5) == multiplication(2, 20, seed=5)
    assert [i.prompt for i in addition(2, 20, seed=0)] != [i.prompt for i in multiplication(2, 20, seed=0)]


def test_induction_items_repeat_their_sequence():
    vocabulary = [f"t{i}" for i in range(16)]
    items = induction(30, half_len=7, seed=2, vocabulary=vocabulary)
    assert items == induction(30, half_len=7, seed=2, vocabulary=vocabulary)
    assert items != induction(30, half_len=7, seed=3, vocabulary=vocabulary)
    for item in items:
        words = (item.prompt + item.target).split(" ")
        assert len(words) == 14 and words[:7] == words[7:]
        assert len(set(words[:7])) == 7 and set(words) <= set(vocabulary)
        assert item.prompt.split(" ") == words[:10]  # 7 + 7 // 2 words
        assert item.target == " " + " ".join(words[10:])


def test_induction_default_vocabulary():
    assert len(set(DEFAULT_WORDS)) == len(DEFAULT_WORDS)
    (item,) = induction(1, half_len=8, seed=0)
    assert set((item.prompt + item.target).split(" ")) <= set(DEFAULT_WORDS)


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: addition(0, 5, 0), "addition: k_digits must be a positive integer, got 0"),
        (lambda: multiplication(2, 0, 0), "multiplication: n_items must be a positive integer, got 0"),
        (lambda: induction(5, 1, 0, ["a", "b"]), "half_len must be >= 2"),
        (lambda: induction(5, 4, 0, ["a", "b", "c"]), "half_len 4 needs at least 4 distinct vocabulary words, got 3"),
        (lambda: induction(5, 2, 0, ["a b", "c"]), "contain no spaces, got ['a b']"),
    ],
)
def test_task_argument_errors(call, needle):
    with pytest.raises(InvalidInputError) as info:
        call()
    assert needle in str(info.value)


def test_specs_build_the_builtin_tasks():
    assert task_from_spec("addition:3", n_items=7, seed=1) == addition(3, 7, 1)
    assert task_from_spec("multiplication:2", n_items=7, seed=1) == multiplication(2, 7, 1)
    assert task_from_spec("induction", n_items=4, seed=1, half_len=6) == induction(4, 6, 1)
    assert task_from_spec("induction:5", n_items=4, seed=1) == induction(4, 5, 1)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("addition", "task spec 'addition': expected addition:K"),
        ("multiplication:two", "task spec 'multiplication:two': expected multiplication:K"),
        ("addition:0", "task spec 'addition:0'"),
        ("subtraction:2", "unknown task spec 'subtraction:2'; expected one of addition:K, multiplication:K, induction"),
        ("", "task spec is empty"),
        ("nope.jsonl", "cannot read prompt file 'nope.jsonl'"),
    ],
)
def test_bad_specs_are_named(spec, needle):
    with pytest.raises(InvalidInputError) as info:
        task_from_spec(spec)
    assert needle in str(info.value)


def _file(tmp_path, *lines):
    path = tmp_path / "task.jsonl"
    path.write_text("\n".join(json.dumps(line) if isinstance(line, dict) else line for line in lines) + "\n")
    return path


def test_user_file(tmp_path):
    path = _file(
        tmp_path,
        {"prompt": "Q: 2+2?", "target": " 4", "choices": [" 3", " 4"], "item": 17},
        "",
        {"prompt": "The sky is", "target": " blue"},
    )
    assert task_from_spec(str(path)) == [
        Item("17", "Q: 2+2?", " 4", (" 3", " 4")),
        Item("task.jsonl line 3", "The sky is", " blue"),
    ]


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ({"prompt": "p", "target": " a", "choices": [" b", " c"]}, "task.jsonl line 2: 'target' ' a' is not among 'choices'"),
        ({"prompt": "p"}, "task.jsonl line 2: missing 'target'"),
        ({"prompt": "p", "target": ""}, "task.jsonl line 2: 'target' is empty"),
        ({"prompt": "p", "target": 3}, "task.jsonl line 2: 'target' must be a string, got 3"),
        ({"prompt": "p", "target": " a", "choices": " a"}, "task.jsonl line 2: 'choices' must be"),
        ({"prompt": "p", "target": " a", "choices": [" a", 2]}, "task.jsonl line 2: 'choices' must be a non-empty list"),
        ({"prompt": "p", "target": " a", "choices": [" a", " a"]}, "task.jsonl line 2: 'choices' has duplicates"),
        ({"prompt": "p", "target": " a", "item": "x"}, "task.jsonl line 2: item id 'x' already used on task.jsonl line 1"),
        ({"prompt": "p", "target": " a", "item": True}, "task.jsonl line 2: 'item' must be a string or an integer"),
    ],
)
def test_user_file_errors_name_file_and_line(tmp_path, line, needle):
    path = _file(tmp_path, {"prompt": "ok", "target": " fine", "item": "x"}, line)
    with pytest.raises(InvalidInputError) as info:
        read_task_file(path)
    assert needle in str(info.value)


def test_item_choices_must_contain_target():
    with pytest.raises(InvalidInputError, match="item 'q': target ' a' is not among its choices"):
        Item("q", "p", " a", choices=(" b",))


def test_gemma_tokenizes_the_builtin_tasks_as_documented(gemma):
    """Digits one token each; every default induction word one token with its leading space."""
    item = addition(3, 1, seed=0)[0]
    assert len(gemma.to_tokens(item.target, prepend_bos=False)[0]) == len(item.target)
    assert len(gemma.to_tokens(item.prompt)[0]) == 1 + len(item.prompt)
    multi = [w for w in DEFAULT_WORDS if gemma.to_tokens(" " + w, prepend_bos=False).shape[-1] != 1]
    assert multi == []
