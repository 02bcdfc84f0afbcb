"""Batched scoring of continuations: teacher-forced log-probabilities and greedy decoding.

Shared by the instruments that ask "how likely is this answer, and what does the model say?"
(emergence, reversal). Sequences are right-padded: exact for a causal model, since a position
never attends to the later pad tokens, so no attention mask or shifted position ids are needed
(left padding would need both).

* :func:`length_batches` — the one batching rule: rows sorted by length (ties keep their order)
  and cut into batches, so a batch pads its rows to nearly the same length; right padding
  changes nothing a row reads, so the rule decides cost, never values.
  :func:`batched_logprobs` and :func:`batched_greedy` apply it and return rows in input order.
* :func:`continuation_logprobs` — each row ``prompt + continuation`` in one forward; the
  log-probability of continuation token ``j`` is
  ``log softmax(logits[len(prompt) + j - 1])[token j]`` (:func:`scrying.metrics.target_logprob`).
  :func:`continuation_scores` adds, from the same logits, whether token ``j`` is their argmax
  (teacher-forced; banned tokens excluded as in greedy decoding): a greedy continuation equals
  the target exactly when every token is.
* :func:`greedy_continuations` — row ``i`` advances from its own length: at step ``s`` one
  forward of the batch, row ``i`` reads its next token from the logits at ``len_i + s - 1`` and
  writes it at ``len_i + s``; rows whose budget is spent are carried along unchanged. No
  key/value cache: one forward per step. Decoding does not stop at an end-of-sequence token.
  Tokens in ``banned`` are never chosen (the argmax over the others); :func:`non_text_tokens`
  lists the tokens that are not text (special, control, image and unused tokens: Gemma 3 270M
  puts most of its mass on ``<start_of_image>`` after a list of words, a token its tokenizer does
  not mark as special), so that a greedy output is text.

Both read the final residual stream and apply the final norm and unembedding only at the
positions they read (:func:`scrying.models.adapter.final_resid` with ``read``,
:func:`scrying.models.adapter.logits_at`): the same weights the model's own head applies, without
the full-vocabulary logits of every position (on Gemma 3 270M the unembedding of one position
costs more than the rest of the model).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import torch

from scrying.axes import Bool, Float, Int, Model, Tensor
from scrying.errors import PromptError
from scrying.metrics import target_logprob
from scrying.models.adapter import final_resid, logits_at, model_device
from scrying.prompt_sets import pad_id, pad_right
from scrying.sites import HookFn, Site


def continuation_tokens(model: Model, text: str, *, what: str) -> list[int]:
    """Token ids of ``text`` as it is appended to a prompt (no BOS); text that tokenizes to
    nothing is a :class:`~scrying.errors.PromptError` naming ``what``."""
    ids = model.to_tokens(text, prepend_bos=False, truncate=False)[0].tolist() if isinstance(text, str) else []
    if not ids:
        raise PromptError(f"{what} {text!r} tokenizes to no tokens; expected some text")
    return [int(i) for i in ids]


def logits_where(
    model: Model,
    inputs: Int[Tensor, "batch pos"] | Float[Tensor, "batch pos d_model"],
    read: Bool[Tensor, "batch pos"],
    *,
    forward: Mapping[Site, HookFn] | None = None,
) -> Float[Tensor, "read d_vocab"]:
    """The model's logits at the ``read`` positions (row-major order), exact there: from tokens,
    or from the residual stream entering block 0; ``forward`` hooks run on the way."""
    resid: Float[Tensor, "batch pos d_model"] = final_resid(model, inputs, forward=forward, read=read)
    return torch.cat(list(logits_at(model, resid[read])))


_T = TypeVar("_T")


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """The one batching rule of the scoring instruments: row indices sorted by length (ties in
    their order), cut into batches of ``batch_size``.

    >>> length_batches([5, 2, 9, 2, 4], 2)
    [[1, 3], [4, 0], [2]]
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def _in_batches(
    lengths: Sequence[int],
    batch_size: int,
    run: Callable[[list[int]], list[_T]],
    after_batch: Callable[[], object] | None,
) -> list[_T]:
    out: list[_T | None] = [None] * len(lengths)
    for batch in length_batches(lengths, batch_size):
        for i, value in zip(batch, run(batch), strict=True):
            out[i] = value
        if after_batch is not None:
            after_batch()
    return out  # type: ignore[return-value]  # every index is in one batch


def batched_logprobs(
    model: Model,
    prompts: list[list[int]],
    continuations: list[list[int]],
    *,
    batch_size: int,
    after_batch: Callable[[], object] | None = None,
) -> list[list[float]]:
    """:func:`continuation_logprobs` of every row, ``batch_size`` rows per forward by
    :func:`length_batches` (length: prompt plus continuation); rows in input order."""
    lengths = [len(p) + len(c) for p, c in zip(prompts, continuations, strict=True)]
    return _in_batches(
        lengths, batch_size,
        lambda batch: continuation_logprobs(model, [prompts[i] for i in batch], [continuations[i] for i in batch]),
        after_batch,
    )


def batched_greedy(
    model: Model,
    prompts: list[list[int]],
    n_new: list[int],
    *,
    batch_size: int,
    banned: list[int] | None = None,
    after_batch: Callable[[], object] | None = None,
) -> list[list[int]]:
    """:func:`greedy_continuations` of every row, ``batch_size`` rows per batch by
    :func:`length_batches` (length: prompt plus new tokens); rows in input order."""
    lengths = [len(p) + n for p, n in zip(prompts, n_new, strict=True)]
    return _in_batches(
        lengths, batch_size,
        lambda batch: greedy_continuations(model, [prompts[i] for i in batch], [n_new[i] for i in batch], banned=banned),
        after_batch,
    )


@torch.no_grad()
def continuation_logprobs(model: Model, prompts: list[list[int]], continuations: list[list[int]]) -> list[list[float]]:
    """Teacher-forced log-probability of each continuation token; the rows right-padded into
    one forward."""
    return [logprobs for logprobs, _ in continuation_scores(model, prompts, continuations)]


@torch.no_grad()
def continuation_scores(
    model: Model, prompts: list[list[int]], continuations: list[list[int]], *, banned: list[int] | None = None
) -> list[tuple[list[float], list[bool]]]:
    """Per continuation token, teacher-forced: its log-probability, and whether it is the argmax
    of the logits there (``banned`` tokens never are, as in greedy decoding; so a greedy
    continuation equals the target exactly when every token is the argmax). One forward, the
    rows right-padded."""
    rows = [torch.tensor(p + c, dtype=torch.long) for p, c in zip(prompts, continuations, strict=True)]
    tokens = pad_right(rows, pad_id(model)).to(model_device(model))
    read = torch.zeros(tokens.shape, dtype=torch.bool, device=tokens.device)
    for i, (p, c) in enumerate(zip(prompts, continuations, strict=True)):
        read[i, len(p) - 1 : len(p) + len(c) - 1] = True
    logits = logits_where(model, tokens, read)  # row-major = row by row, position by position
    wanted: Int[Tensor, " read"] = torch.tensor([t for c in continuations for t in c], device=logits.device)
    values = target_logprob(logits, wanted).tolist()
    hits = (_ban(logits, banned).argmax(-1) == wanted).tolist()
    out, start = [], 0
    for c in continuations:
        out.append((values[start : start + len(c)], [bool(h) for h in hits[start : start + len(c)]]))
        start += len(c)
    return out


def batched_scores(
    model: Model,
    prompts: list[list[int]],
    continuations: list[list[int]],
    *,
    batch_size: int,
    banned: list[int] | None = None,
    after_batch: Callable[[], object] | None = None,
) -> list[tuple[list[float], list[bool]]]:
    """:func:`continuation_scores` of every row, batched as :func:`batched_logprobs`."""
    lengths = [len(p) + len(c) for p, c in zip(prompts, continuations, strict=True)]
    return _in_batches(
        lengths, batch_size,
        lambda batch: continuation_scores(model, [prompts[i] for i in batch], [continuations[i] for i in batch], banned=banned),
        after_batch,
    )


#: An added token's text that marks something other than text: ``<start_of_image>``,
#: ``<image_soft_token>`` (a word with an underscore in angle brackets), ``[multimodal]``.
_MARKER = re.compile(r"<\w+_\w+>|\[\w+\]")


def non_text_tokens(model: Model) -> list[int]:
    """Ids of tokens that are not text, within the model's vocabulary: the tokenizer's special
    tokens (``<bos>``, ``<pad>``, Gemma's ``<unused…>`` and turn markers) and its other added
    tokens that are markers (:data:`_MARKER`). Added tokens that are text stay allowed: Gemma adds
    ``"\\n"``, runs of newlines and spaces, and HTML tags such as ``<table>`` as tokens."""
    tokenizer = model.tokenizer
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    ids = {int(i) for i in getattr(tokenizer, "all_special_ids", []) or []}
    ids |= {int(i) for i, token in added.items() if token.special or _MARKER.fullmatch(token.content)}
    return sorted(i for i in ids if 0 <= i < model.cfg.d_vocab)


def _ban(logits: Float[Tensor, "read d_vocab"], banned: list[int] | None) -> Float[Tensor, "read d_vocab"]:
    if banned:
        logits = logits.clone()
        logits[:, banned] = -torch.inf
    return logits


@torch.no_grad()
def greedy_continuations(
    model: Model, prompts: list[list[int]], n_new: list[int], *, banned: list[int] | None = None
) -> list[list[int]]:
    """``n_new[i]`` greedy tokens after each prompt (never one of ``banned``); the rows
    right-padded and each advanced from its own length."""
    return decode_rows(model, prompts, n_new, lambda logits: _ban(logits, banned).argmax(-1))


@torch.no_grad()
def decode_rows(
    model: Model,
    prompts: list[list[int]],
    n_new: list[int],
    choose: Callable[[Float[Tensor, "row d_vocab"]], Int[Tensor, " row"]],
) -> list[list[int]]:
    """The one decoding loop: ``n_new[i]`` tokens after each prompt, each chosen by ``choose``
    from the logits at the row's last position (argmax for greedy decoding, a draw for
    sampling); the rows right-padded and each advanced from its own length."""
    lengths = [len(p) for p in prompts]
    width = max(n + k for n, k in zip(lengths, n_new, strict=True))
    tokens = pad_right([torch.tensor(p, dtype=torch.long) for p in prompts], pad_id(model), width)
    tokens = tokens.to(model_device(model))
    rows = torch.arange(len(prompts), device=tokens.device)
    for step in range(max(n_new)):
        # the forward needs every position up to the last one any row reads at this step
        end = max(n + step for n, k in zip(lengths, n_new, strict=True) if step < k)
        read_at = torch.tensor([min(n + step, end) - 1 for n in lengths], device=tokens.device)
        read = torch.zeros((len(prompts), end), dtype=torch.bool, device=tokens.device)
        read[rows, read_at] = True
        chosen = choose(logits_where(model, tokens[:, :end], read))
        for i, (n, k) in enumerate(zip(lengths, n_new, strict=True)):
            if step < k:
                tokens[i, n + step] = chosen[i]
    return [tokens[i, n : n + k].tolist() for i, (n, k) in enumerate(zip(lengths, n_new, strict=True))]


@torch.no_grad()
def forced_logprobs_one(model: Model, prompt: list[int], continuation: list[int]) -> list[float]:
    """Reference for :func:`continuation_logprobs`: one unpadded sequence, the model's full
    logits, float64 log-softmax."""
    logits = model(torch.tensor([prompt + continuation], device=model_device(model)))[0]
    logprobs = logits.to(torch.float64).log_softmax(-1)
    n = len(prompt)
    return [float(logprobs[n + j - 1, tok]) for j, tok in enumerate(continuation)]


@torch.no_grad()
def forced_hits_one(model: Model, prompt: list[int], continuation: list[int], *, banned: list[int] | None = None) -> list[bool]:
    """Reference for :func:`continuation_scores`' argmax flags: one unpadded sequence, the
    model's full logits, the banned tokens' logits set to minus infinity."""
    logits = model(torch.tensor([prompt + continuation], device=model_device(model)))[0].clone()
    if banned:
        logits[:, banned] = -torch.inf
    n = len(prompt)
    return [bool(int(logits[n + j - 1].argmax()) == tok) for j, tok in enumerate(continuation)]


@torch.no_grad()
def greedy_one(model: Model, prompt: list[int], n_new: int, *, banned: list[int] | None = None) -> list[int]:
    """Reference for :func:`greedy_continuations`: one sequence, a full forward per new token,
    the banned tokens' logits set to minus infinity."""
    sequence = list(prompt)
    for _ in range(n_new):
        logits = model(torch.tensor([sequence], device=model_device(model)))[0, -1].clone()
        if banned:
            logits[banned] = -torch.inf
        sequence.append(int(logits.argmax()))
    return sequence[len(prompt) :]
