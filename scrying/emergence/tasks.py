"""Tasks for the emergence instrument: items (prompt, target, optional choices) to score.

Built-in tasks, each seeded (the same arguments give the same items):

* :func:`addition` — ``"12+345="`` with target ``"357"``: two random ``k``-digit operands
  (leading digit non-zero, except for ``k = 1``). Gemma tokenizes digits one by one, so a
  ``k``-digit answer is ``k`` or ``k + 1`` target tokens.
* :func:`multiplication` — ``"12*34="`` with target ``"408"``, operands as above.
* :func:`induction` — ``half_len`` distinct words drawn from a vocabulary, then repeated; the
  prompt stops after the first ``half_len // 2`` words of the repeat and the target is the rest
  (with its leading space, so it tokenizes as it would inside the text).

:func:`task_from_spec` turns a command-line spec (``"addition:3"``, ``"multiplication:2"``,
``"induction"``, ``"induction:8"`` or a path to a JSONL file) into items. A JSONL task file has
one object per line: ``prompt``, ``target`` (text appended to the prompt), optional ``choices``
(strings, containing ``target``) and optional ``item`` (an id; default ``"<file> line <n>"``).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from scrying.errors import InvalidInputError
from scrying.prompt_sets import read_prompt_file

#: Common English words, each a single token (with its leading space) in Gemma's tokenizer;
#: the default vocabulary of :func:`induction`.
DEFAULT_WORDS = (
    "apple", "river", "stone", "cloud", "garden", "window", "silver", "horse", "candle", "forest",
    "bread", "mirror", "ocean", "paper", "tiger", "music", "bottle", "winter", "castle", "pencil",
    "dragon", "orange", "market", "island", "thunder", "basket", "rabbit", "yellow", "doctor",
    "engine", "flower", "hammer", "jacket", "ladder", "monkey", "needle", "pocket", "rocket",
    "summer", "ticket", "valley", "wallet", "anchor", "butter", "copper", "desert", "feather",
    "guitar", "harbor", "kitten", "lemon", "meadow", "planet", "rubber", "shadow", "tunnel",
    "violin", "wizard", "blanket", "cotton", "dinner", "finger", "helmet", "marble",
)  # fmt: skip


@dataclass(frozen=True)
class Item:
    """One scored item: ``prompt`` followed by ``target``; ``choices`` (if any) contain it."""

    item: str
    prompt: str
    target: str
    choices: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.choices is not None:
            if not isinstance(self.choices, tuple):
                raise InvalidInputError(f"item {self.item!r}: choices must be a tuple, got {type(self.choices).__name__}")
            if self.target not in self.choices:
                raise InvalidInputError(
                    f"item {self.item!r}: target {self.target!r} is not among its choices {list(self.choices)!r}"
                )


def _operand_range(k_digits: int) -> tuple[int, int]:
    return (0 if k_digits == 1 else 10 ** (k_digits - 1), 10**k_digits - 1)


def _check_counts(task: str, **counts: int) -> None:
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInputError(f"{task}: {name} must be a positive integer, got {value!r}")


#: The most digits an arithmetic operand may have (a prompt of two 64-digit numbers is already
#: far past what any model here answers; more only costs time).
MAX_DIGITS = 64


def _arithmetic(task: str, symbol: str, k_digits: int, n_items: int, seed: int) -> list[Item]:
    _check_counts(task, k_digits=k_digits, n_items=n_items)
    if k_digits > MAX_DIGITS:
        raise InvalidInputError(f"{task}: K (digits per operand) must be at most {MAX_DIGITS}, got {k_digits}")
    low, high = _operand_range(k_digits)
    rng = random.Random(f"{task}:{k_digits}:{seed}")
    items = []
    for i in range(n_items):
        a, b = rng.randint(low, high), rng.randint(low, high)
        answer = a + b if symbol == "+" else a * b
        items.append(Item(item=f"{task}:{k_digits}:{i}", prompt=f"{a}{symbol}{b}=", target=str(answer)))
    return items


def addition(k_digits: int, n_items: int, seed: int) -> list[Item]:
    """``n_items`` sums of two ``k_digits``-digit numbers, ``"a+b="`` → ``"a+b"`` in digits."""
    return _arithmetic("addition", "+", k_digits, n_items, seed)


def multiplication(k_digits: int, n_items: int, seed: int) -> list[Item]:
    """``n_items`` products of two ``k_digits``-digit numbers, ``"a*b="`` → the product."""
    return _arithmetic("multiplication", "*", k_digits, n_items, seed)


def induction(n_items: int, half_len: int, seed: int, vocabulary: list[str] | tuple[str, ...] = DEFAULT_WORDS) -> list[Item]:
    """``n_items`` repeated sequences of ``half_len`` distinct words; the prompt stops
    ``half_len // 2`` words into the repeat and the target is the rest of the repeat."""
    _check_counts("induction", n_items=n_items, half_len=half_len)
    if half_len < 2:
        raise InvalidInputError(f"induction: half_len must be >= 2 (a prefix and a target), got {half_len}")
    words = list(dict.fromkeys(vocabulary))
    bad = [w for w in words if not isinstance(w, str) or not w or w != w.strip() or " " in w]
    if bad:
        raise InvalidInputError(f"induction: vocabulary words must be non-empty and contain no spaces, got {bad[:5]!r}")
    if len(words) < half_len:
        raise InvalidInputError(
            f"induction: half_len {half_len} needs at least {half_len} distinct vocabulary words, got {len(words)}"
        )
    rng = random.Random(f"induction:{half_len}:{seed}")
    cut = half_len // 2
    items = []
    for i in range(n_items):
        sequence = rng.sample(words, half_len)
        prompt = " ".join(sequence + sequence[:cut])
        target = " " + " ".join(sequence[cut:])
        items.append(Item(item=f"induction:{half_len}:{i}", prompt=prompt, target=target))
    return items


#: The forms :func:`task_from_spec` accepts, for error messages and ``--help``.
SPEC_FORMS = ("addition:K", "multiplication:K", "induction", "induction:HALF_LEN", "PATH.jsonl")

_ARITHMETIC = {"addition": addition, "multiplication": multiplication}


def task_from_spec(
    spec: str,
    *,
    n_items: int = 100,
    seed: int = 0,
    half_len: int = 8,
    vocabulary: list[str] | tuple[str, ...] = DEFAULT_WORDS,
) -> list[Item]:
    """The items of a task spec: ``"addition:K"``, ``"multiplication:K"`` (``K`` digits),
    ``"induction"`` or ``"induction:HALF_LEN"``, or a path to a JSONL task file (every line is
    read; ``n_items`` and ``seed`` apply to the built-in tasks only)."""
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidInputError(f"task spec is empty; expected one of {', '.join(SPEC_FORMS)}")
    match = re.fullmatch(r"(addition|multiplication|induction)(?::(.*))?", spec.strip())
    if match:
        name, arg = match.groups()
        if name == "induction" and arg is None:
            return induction(n_items, half_len, seed, vocabulary)
        if arg is None or not re.fullmatch(r"[1-9][0-9]*", arg):
            what = "HALF_LEN" if name == "induction" else "K (a number of digits)"
            raise InvalidInputError(f"task spec {spec!r}: expected {name}:{what} with a positive integer, got {arg!r}")
        if name == "induction":
            return induction(n_items, int(arg), seed, vocabulary)
        return _ARITHMETIC[name](int(arg), n_items, seed)
    path = Path(spec)
    if path.suffix == ".jsonl" or path.exists():
        return read_task_file(path)
    raise InvalidInputError(f"unknown task spec {spec!r}; expected one of {', '.join(SPEC_FORMS)}")


def read_task_file(path: str | Path) -> list[Item]:
    """The items of a JSONL task file (see the module docstring); errors name file and line."""
    records = read_prompt_file(path, fields={"target": str, "choices": list, "item": (str, int)})
    items, seen = [], {}
    for record in records:
        where = record.where
        if "target" not in record.fields:
            raise InvalidInputError(f"{where}: missing 'target' (the text expected after the prompt)")
        target = record.fields["target"]
        if target == "":
            raise InvalidInputError(f"{where}: 'target' is empty; expected the text expected after the prompt")
        choices = record.get("choices")
        if choices is not None:
            if not choices or not all(isinstance(c, str) and c for c in choices):
                raise InvalidInputError(f"{where}: 'choices' must be a non-empty list of non-empty strings, got {choices!r}")
            if len(set(choices)) != len(choices):
                raise InvalidInputError(f"{where}: 'choices' has duplicates: {choices!r}")
            if target not in choices:
                raise InvalidInputError(f"{where}: 'target' {target!r} is not among 'choices' {choices!r}")
            choices = tuple(choices)
        name = str(record.fields["item"]) if "item" in record.fields else where
        if name in seen:
            raise InvalidInputError(f"{where}: item id {name!r} already used on {seen[name]}")
        seen[name] = where
        items.append(Item(item=name, prompt=record.prompt, target=target, choices=choices))
    return items
