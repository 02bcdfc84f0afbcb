"""Prompts to tokens, with the checks every instrument needs at its boundary.

An empty prompt, a prompt longer than the model's context, or a "token" that is really several
tokens are rejected here with a :class:`~scrying.errors.PromptError` that names the input.
"""

from __future__ import annotations

import torch

from scrying.axes import Int, Model, Tensor
from scrying.errors import PromptError


def check_text(prompt: object, *, what: str = "prompt") -> str:
    """``prompt`` itself if it is a non-empty string (checked before any model is loaded)."""
    if not isinstance(prompt, str):
        raise PromptError(f"{what} must be text (a string), got {type(prompt).__name__} {str(prompt)[:40]!r}")
    if not prompt.strip():
        raise PromptError(f"{what} is empty; expected some text")
    return prompt


def prepends_bos(model: Model) -> bool:
    """Whether prompts start with a BOS token for this model: its own setting, read when it was
    loaded (``cfg.default_prepend_bos``; see :func:`scrying.models.loading.bos_setting`)."""
    return bool(getattr(model.cfg, "default_prepend_bos", True))


def tokenize(
    model: Model, prompt: str, *, prepend_bos: bool | None = None, what: str = "prompt"
) -> Int[Tensor, "1 pos"]:
    """Token ids of ``prompt`` (with BOS where the model's own setting says so, or as
    ``prepend_bos`` overrides), validated against the model's context length."""
    check_text(prompt, what=what)
    bos = prepends_bos(model) if prepend_bos is None else prepend_bos
    tokens = model.to_tokens(prompt, prepend_bos=bos, truncate=False)
    n_ctx = model.cfg.n_ctx
    if tokens.shape[-1] > n_ctx:
        raise PromptError(
            f"{what} is {tokens.shape[-1]} tokens long; the model's context holds {n_ctx}"
        )
    return tokens.to(torch.long)


def tokenize_batch(model: Model, prompts: list[str], *, what: str = "prompt") -> Int[Tensor, "batch pos"]:
    """Token ids of prompts that must all have the same token length (no padding games)."""
    rows = [tokenize(model, p, what=f"{what} {i + 1}") for i, p in enumerate(prompts)]
    lengths = {r.shape[-1] for r in rows}
    if len(lengths) > 1:
        detail = ", ".join(f"{i + 1}: {r.shape[-1]}" for i, r in enumerate(rows))
        raise PromptError(f"{what}s must have the same token length; got {detail}")
    return torch.cat(rows, dim=0)


def single_token(model: Model, text: str, *, what: str = "token") -> int:
    """The id of ``text`` if it is exactly one token (a leading space usually matters)."""
    if not isinstance(text, str) or text == "":
        raise PromptError(f"{what} is empty; expected text that is exactly one token")
    ids = model.to_tokens(text, prepend_bos=False, truncate=False)[0].tolist()
    if len(ids) != 1:
        pieces = [model.tokenizer.decode([i]) for i in ids]
        raise PromptError(
            f"{what} {text!r} is {len(ids)} tokens {pieces!r}; expected exactly one token"
        )
    return int(ids[0])


def token_strings(model: Model, tokens: Int[Tensor, " pos"]) -> list[str]:
    """Each token id decoded on its own."""
    return [model.tokenizer.decode([int(t)]) for t in tokens.tolist()]
