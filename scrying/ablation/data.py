"""Prompt sets for ablation: tokens right-padded to one length, answers, and position masks.

Right padding is harmless for a causal model: a position never attends to later ones, so the
pad tokens change nothing at the real positions, where every metric is read.
JSONL prompt files (:mod:`scrying.prompt_files`) carry one object per line: ``prompt`` and, for
``logit-diff``, ``correct`` and ``incorrect`` (single tokens, usually with a leading space).
Errors name the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool

from scrying.axes import Int, Tensor
from scrying.errors import InvalidInputError, PromptError
from scrying.prompt_files import PromptLine, parse_prompt_line, read_prompt_lines
from scrying.prompts import single_token, tokenize


@dataclass(frozen=True)
class PromptRecord:
    """One line of a prompt file."""

    prompt: str
    correct: str | None = None
    incorrect: str | None = None
    where: str = ""


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


def read_prompt_file(path: str | Path, *, need_answers: bool = False) -> list[PromptRecord]:
    """Parse a JSONL prompt file (:mod:`scrying.prompt_files`), checking every line before any
    model is loaded; ``need_answers``: every line must carry ``correct`` and ``incorrect``."""
    return [_record(line, need_answers) for line in read_prompt_lines(path)]


def _record(line: PromptLine, need_answers: bool) -> PromptRecord:
    obj, where = line.fields, line.where
    for key in ("correct", "incorrect"):
        if need_answers and key not in obj:
            raise InvalidInputError(f"{where}: missing {key!r} (needed for the logit-diff metric)")
        if key in obj and not isinstance(obj[key], str):
            raise InvalidInputError(f"{where}: {key!r} must be a string, got {obj[key]!r}")
    return PromptRecord(obj["prompt"], obj.get("correct"), obj.get("incorrect"), where)


def prompt_set(model: Any, records: list[PromptRecord]) -> PromptSet:
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


def pad_id(model: Any) -> int:
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
        _record(parse_prompt_line(line, f"ioi.jsonl line {i}"), True)
        for i, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]


def repeated_tokens(
    model: Any, n_prompts: int, half_len: int, *, seed: int = 0
) -> PromptSet:
    """``BOS x_1..x_n x_1..x_n`` of random non-special tokens; metrics read on the repeated half."""
    if n_prompts < 1 or half_len < 2:
        raise InvalidInputError(f"need n_prompts >= 1 and half_len >= 2, got {n_prompts}, {half_len}")
    special = set(getattr(model.tokenizer, "all_special_ids", []) or [])
    vocab = model.cfg.d_vocab
    low = 1_000 if vocab > 20_000 else 0  # large vocabularies start with control/byte tokens
    allowed = torch.tensor([i for i in range(low, min(vocab, 50_000)) if i not in special])
    gen = torch.Generator().manual_seed(seed)
    half = allowed[torch.randint(len(allowed), (n_prompts, half_len), generator=gen)]
    bos = getattr(model.tokenizer, "bos_token_id", None)
    bos_col = torch.full((n_prompts, 1), int(bos if bos is not None else 0), dtype=torch.long)
    tokens = torch.cat([bos_col, half, half], dim=1)
    target = torch.zeros_like(tokens, dtype=torch.bool)
    target[:, 1 + half_len : -1] = True  # predictions of x_2..x_n in the second copy
    return PromptSet(
        tokens=tokens,
        lengths=torch.full((n_prompts,), tokens.shape[1], dtype=torch.long),
        target_mask=target,
    )
