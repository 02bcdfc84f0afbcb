"""Prompt sets: the JSONL prompt files every batch command reads, and tokenized prompt sets.

**Files** (``scrying trace --prompts``, ``scrying ablate --prompts``, the study runners): one JSON
object per line with a non-empty string ``prompt``; optional answers ``correct`` and
``incorrect`` (single tokens, usually with a leading space; needed by the logit-difference
metric); other keys belong to the command that reads the file and are type-checked when it
declares them (:func:`read_prompt_file`'s ``fields``). Blank lines are skipped. Every line is
checked before any model is loaded, and every error names the file and the line
(``prompts.jsonl line 3: ...``).

**Sets** (:class:`PromptSet`): tokens right-padded to one length, answers, and position masks.
Right padding is harmless for a causal model: a position never attends to later ones, so the
pad tokens change nothing at the real positions, where every metric is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool

from scrying.axes import Int, Model, Tensor
from scrying.errors import InvalidInputError, PromptError
from scrying.jsonl import parse_json, read_jsonl
from scrying.prompts import check_text, prepends_bos, single_token, tokenize


@dataclass(frozen=True)
class PromptRecord:
    """One line of a prompt file: the prompt, its answers, the command's own fields, and where
    it came from (``"prompts.jsonl line 3"``, for error messages)."""

    prompt: str
    correct: str | None = None
    incorrect: str | None = None
    where: str = ""
    fields: Mapping[str, Any] = field(default_factory=dict)  # every key of the line

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


#: Types a command may declare for its own keys (``fields`` of :func:`read_prompt_file`).
_TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer", float: "a number"}


def read_prompt_file(
    path: str | Path, *, need_answers: bool = False, fields: Mapping[str, type | tuple[type, ...]] | None = None
) -> list[PromptRecord]:
    """The records of a JSONL prompt file (at least one), every line checked before any model is
    loaded: a non-empty string ``prompt``; ``correct``/``incorrect`` strings when present (on
    every line with ``need_answers``); each key of ``fields`` of its declared type when present."""
    records = [
        _record(obj, where, need_answers=need_answers, fields=fields)
        for obj, where in read_jsonl(path, what="prompt file")
    ]
    if not records:
        raise InvalidInputError(f"prompt file {str(path)!r} has no prompts (expected JSONL lines with 'prompt')")
    return records


def parse_prompt_line(
    line: str, where: str, *, need_answers: bool = False, fields: Mapping[str, type | tuple[type, ...]] | None = None
) -> PromptRecord:
    """One line: a JSON object with a non-empty string ``prompt`` (see :func:`read_prompt_file`)."""
    return _record(parse_json(line, where), where, need_answers=need_answers, fields=fields)


def _record(
    obj: Any, where: str, *, need_answers: bool = False, fields: Mapping[str, type | tuple[type, ...]] | None = None
) -> PromptRecord:
    if not isinstance(obj, dict):
        raise InvalidInputError(f"{where}: expected a JSON object with 'prompt', got {type(obj).__name__}")
    if "prompt" not in obj:
        raise InvalidInputError(f"{where}: missing 'prompt'")
    check_text(obj["prompt"], what=f"{where}: 'prompt'")
    for key in ("correct", "incorrect"):
        if need_answers and key not in obj:
            raise InvalidInputError(f"{where}: missing {key!r} (needed for the logit-diff metric)")
    for key, kind in {"correct": str, "incorrect": str, **(fields or {})}.items():
        kinds = kind if isinstance(kind, tuple) else (kind,)
        value = obj.get(key)
        # bool is an int in Python: an integer field must not accept true/false
        wrong = not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)
        if key in obj and wrong:
            expected = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
            raise InvalidInputError(f"{where}: {key!r} must be {expected}, got {value!r}")
    return PromptRecord(obj["prompt"], obj.get("correct"), obj.get("incorrect"), where, obj)


@dataclass(frozen=True)
class PromptSet:
    """Tokenized prompts (right-padded) with what the metrics and ablations need."""

    tokens: Int[Tensor, "batch pos"]
    lengths: Int[Tensor, " batch"]
    correct: Int[Tensor, " batch"] | None = None
    incorrect: Int[Tensor, " batch"] | None = None
    target_mask: Bool[Tensor, "batch pos"] | None = None  # where loss/logprob/kl are read
    ablate_mask: Bool[Tensor, "batch pos"] | None = None  # used with positions="mask"
    texts: tuple[str, ...] = ()

    @property
    def n_prompts(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def real(self) -> Bool[Tensor, "batch pos"]:
        """Real (not padding) positions."""
        pos = torch.arange(self.tokens.shape[1], device=self.tokens.device)
        return pos[None, :] < self.lengths[:, None]

    def subset(self, index: Int[Tensor, " n"]) -> PromptSet:
        """The prompts at ``index`` (in that order)."""
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        return PromptSet(
            tokens=self.tokens[index],
            lengths=self.lengths[index],
            correct=pick(self.correct),
            incorrect=pick(self.incorrect),
            target_mask=pick(self.target_mask),
            ablate_mask=pick(self.ablate_mask),
            texts=tuple(self.texts[i] for i in index.tolist()) if self.texts else (),
        )


def prompt_set(model: Model, records: list[PromptRecord]) -> PromptSet:
    """Tokenize records (BOS prepended), right-padded; answers checked to be single tokens."""
    if not records:
        raise InvalidInputError("no prompts given")
    rows = [tokenize(model, r.prompt, what=r.where or f"prompt {i + 1}")[0] for i, r in enumerate(records)]
    answers = {}
    for key in ("correct", "incorrect"):
        texts = [getattr(r, key) for r in records]
        if all(t is None for t in texts):
            continue
        ids = []
        for i, (r, t) in enumerate(zip(records, texts, strict=True)):
            where = r.where or f"prompt {i + 1}"
            if t is None:
                raise PromptError(f"{where}: missing {key!r}")
            ids.append(single_token(model, t, what=f"{where}: {key!r}"))
        answers[key] = torch.tensor(ids, dtype=torch.long)
    return PromptSet(
        tokens=pad_right(rows, pad_id(model)),
        lengths=torch.tensor([len(r) for r in rows], dtype=torch.long),
        correct=answers.get("correct"),
        incorrect=answers.get("incorrect"),
        texts=tuple(r.prompt for r in records),
    )


def pad_id(model: Model) -> int:
    value = getattr(model.tokenizer, "pad_token_id", None)
    return int(value) if value is not None else 0


def pad_right(rows: list[torch.Tensor], pad: int, length: int = 0) -> Int[Tensor, "batch pos"]:
    width = max([length] + [len(r) for r in rows])
    out = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def ioi_records() -> list[PromptRecord]:
    """The packaged indirect-object-identification prompts (``scrying/data/ioi.jsonl``)."""
    text = resources.files("scrying.data").joinpath("ioi.jsonl").read_text(encoding="utf-8")
    return [
        parse_prompt_line(line, f"ioi.jsonl line {i}", need_answers=True)
        for i, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]


def repeated_tokens(
    model: Model, n_prompts: int, half_len: int, *, seed: int = 0
) -> PromptSet:
    """``BOS x_1..x_n x_1..x_n`` of random non-special tokens (BOS where the model's own
    setting has one); metrics read on the repeated half."""
    if n_prompts < 1 or half_len < 2:
        raise InvalidInputError(f"need n_prompts >= 1 and half_len >= 2, got {n_prompts}, {half_len}")
    special = set(getattr(model.tokenizer, "all_special_ids", []) or [])
    vocab = model.cfg.d_vocab
    low = 1_000 if vocab > 20_000 else 0  # large vocabularies start with control/byte tokens
    allowed = torch.tensor([i for i in range(low, min(vocab, 50_000)) if i not in special])
    gen = torch.Generator().manual_seed(seed)
    half = allowed[torch.randint(len(allowed), (n_prompts, half_len), generator=gen)]
    bos = getattr(model.tokenizer, "bos_token_id", None)
    starts = [torch.full((n_prompts, 1), int(bos), dtype=torch.long)] if bos is not None and prepends_bos(model) else []
    tokens = torch.cat([*starts, half, half], dim=1)
    target = torch.zeros_like(tokens, dtype=torch.bool)
    target[:, len(starts) + half_len : -1] = True  # predictions of x_2..x_n in the second copy
    return PromptSet(
        tokens=tokens,
        lengths=torch.full((n_prompts,), tokens.shape[1], dtype=torch.long),
        target_mask=target,
    )
