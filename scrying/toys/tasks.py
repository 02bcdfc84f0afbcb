"""Toy tasks with known ground truth.

Repeated random sequences: ``<bos>`` then random tokens that repeat with a period. Once a token
has been seen, what follows it is predictable only by induction (find the earlier occurrence of
the current token, copy what followed it), which needs a previous-token head feeding an
induction head (Olsson et al. 2022).

With a fixed period (``min_period=None``: ``<bos> x_1 .. x_n x_1 .. x_n``) a model can cheat with
a purely positional head ("attend n-1 back") and never form a previous-token head. A random
period per sequence (``min_period`` .. ``half_len``) removes that shortcut, so the toy learns the
canonical two-head circuit; that is the default.

Arithmetic (:class:`ArithmeticTask`): ``<bos> 123+456=579 <eos>`` one character per token, two
random ``k``-digit operands (leading digit non-zero for ``k > 1``); only the answer and its
``<eos>`` are trained on (the operands are unpredictable). A fixed tenth of the operand pairs
(:meth:`ArithmeticTask.held_out`) never appears in training, so a model can be tested on sums it
has not seen.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from scrying.axes import Bool, Float, Int, Tensor
from scrying.errors import ConfigError
from scrying.toys.vocab import SPECIALS, build_char_tokenizer, build_tokenizer

BOS_ID = SPECIALS.index("<bos>")
EOS_ID = SPECIALS.index("<eos>")
PAD_ID = SPECIALS.index("<pad>")


@dataclass(frozen=True, kw_only=True)
class RepeatedSequenceTask:
    """Sequences of ``1 + 2 * half_len`` tokens repeating with a period in
    ``min_period .. half_len`` (exactly ``half_len`` when ``min_period`` is ``None``)."""

    n_content: int = 64
    half_len: int = 20
    min_period: int | None = 4

    def __post_init__(self) -> None:
        if self.n_content < 2:
            raise ConfigError(f"RepeatedSequenceTask.n_content must be >= 2, got {self.n_content}")
        if self.half_len < 2:
            raise ConfigError(f"RepeatedSequenceTask.half_len must be >= 2, got {self.half_len}")
        if self.min_period is not None and not 2 <= self.min_period <= self.half_len:
            raise ConfigError(
                f"RepeatedSequenceTask.min_period must be in 2..half_len ({self.half_len}), got {self.min_period}"
            )

    @property
    def seq_len(self) -> int:
        return 1 + 2 * self.half_len

    def sample_with_mask(self, batch: int, generator: torch.Generator) -> tuple[Int[Tensor, "batch pos"], Bool[Tensor, "batch pos"]]:
        """Sequences, and which positions' next token is determined by induction."""
        base = torch.randint(len(SPECIALS), len(SPECIALS) + self.n_content, (batch, self.half_len), generator=generator)
        if self.min_period is None:
            period = torch.full((batch, 1), self.half_len)
        else:
            period = torch.randint(self.min_period, self.half_len + 1, (batch, 1), generator=generator)
        body = torch.gather(base, 1, torch.arange(self.seq_len - 1)[None] % period)
        tokens = torch.cat([torch.full((batch, 1), BOS_ID, dtype=torch.long), body], dim=1)
        # token t (t >= 1) repeats token t - period; it is predictable from position t - 1 once
        # the token before it has been seen, i.e. for t >= period + 2.
        index = torch.arange(self.seq_len)[None]
        mask = index + 1 >= period + 2
        mask[:, -1] = False  # the last position has no next token
        return tokens, mask

    def sample(self, batch: int, generator: torch.Generator) -> Int[Tensor, "batch pos"]:
        """A batch of sequences, deterministic given the generator's state."""
        return self.sample_with_mask(batch, generator)[0]

    def tokenizer(self):  # noqa: ANN201 - a transformers tokenizer
        return build_tokenizer(self.n_content)

    def training_batch(self, batch: int, generator: torch.Generator) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
        """Tokens and language-model labels (every position is trained on)."""
        tokens = self.sample(batch, generator)
        return tokens, tokens


ALPHABET = "0123456789+*="
_DIGIT0 = len(SPECIALS)  # id of "0"


@dataclass(frozen=True, kw_only=True)
class ArithmeticTask:
    """``a+b=`` (``op="+"``) or ``a*b=`` (``op="*"``) on ``k_digits``-digit operands, answered
    in digits, most significant first."""

    op: str = "+"
    k_digits: int = 3
    held_out_rule: str = "blake2b"  # part of the saved settings: a changed rule retrains

    def __post_init__(self) -> None:
        if self.held_out_rule != "blake2b":
            raise ConfigError(f"ArithmeticTask.held_out_rule must be 'blake2b', got {self.held_out_rule!r}")
        if self.op not in ("+", "*"):
            raise ConfigError(f"ArithmeticTask.op must be '+' or '*', got {self.op!r}")
        if not 1 <= self.k_digits <= 6:
            raise ConfigError(f"ArithmeticTask.k_digits must be in 1..6, got {self.k_digits}")

    @property
    def answer_len(self) -> int:
        """The most digits an answer has."""
        return self.k_digits + 1 if self.op == "+" else 2 * self.k_digits

    @property
    def seq_len(self) -> int:
        return 1 + 2 * self.k_digits + 2 + self.answer_len + 1  # bos a op b = answer eos

    @property
    def operand_range(self) -> tuple[int, int]:
        return (0 if self.k_digits == 1 else 10 ** (self.k_digits - 1), 10**self.k_digits - 1)

    @staticmethod
    def held_out(a: int, b: int) -> bool:
        """Whether the pair ``(a, b)`` is kept out of training: a fixed tenth of all pairs,
        chosen by a hash so that the choice carries no arithmetic pattern (a linear rule such as
        ``(p a + q b) mod 10`` would hold out, say, every sum ending in 0)."""
        digest = hashlib.blake2b(f"{a},{b}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little") % 10 == 0

    def tokenizer(self):  # noqa: ANN201 - a transformers tokenizer
        return build_char_tokenizer(ALPHABET)

    def _operands(self, batch: int, generator: torch.Generator) -> tuple[list[int], list[int]]:
        low, high = self.operand_range
        a_out: list[int] = []
        b_out: list[int] = []
        while len(a_out) < batch:
            pairs = torch.randint(low, high + 1, (2 * batch, 2), generator=generator).tolist()
            for a, b in pairs:
                if not self.held_out(a, b) and len(a_out) < batch:
                    a_out.append(a)
                    b_out.append(b)
        return a_out, b_out

    def encode(self, a: int, b: int) -> list[int]:
        """``<bos> a op b = answer <eos>`` as token ids (without padding)."""
        answer = a + b if self.op == "+" else a * b
        text = f"{a}{self.op}{b}={answer}"
        return [BOS_ID] + [_DIGIT0 + ALPHABET.index(c) for c in text] + [EOS_ID]

    def sample_with_mask(self, batch: int, generator: torch.Generator) -> tuple[Int[Tensor, "batch pos"], Bool[Tensor, "batch pos"]]:
        """Sequences (``<pad>`` after ``<eos>``), and which positions' next token is graded
        (an answer digit or the ``<eos>`` after it)."""
        tokens = torch.full((batch, self.seq_len), PAD_ID, dtype=torch.long)
        mask = torch.zeros((batch, self.seq_len), dtype=torch.bool)
        equals = _DIGIT0 + ALPHABET.index("=")
        for i, (a, b) in enumerate(zip(*self._operands(batch, generator), strict=True)):
            ids = self.encode(a, b)
            tokens[i, : len(ids)] = torch.tensor(ids)
            start = ids.index(equals)
            mask[i, start : len(ids) - 1] = True
        return tokens, mask

    def training_batch(self, batch: int, generator: torch.Generator) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
        """Tokens and language-model labels: ``-100`` (ignored) except the answer and ``<eos>``."""
        tokens, mask = self.sample_with_mask(batch, generator)
        labels = torch.full_like(tokens, -100)
        labels[:, 1:][mask[:, :-1]] = tokens[:, 1:][mask[:, :-1]]
        return tokens, labels


def induction_accuracy(
    logits: Float[Tensor, "batch pos d_vocab"], tokens: Int[Tensor, "batch pos"], mask: Bool[Tensor, "batch pos"]
) -> float:
    """Top-1 accuracy of next-token predictions at the induction-determined positions."""
    correct = logits[:, :-1].argmax(-1) == tokens[:, 1:]
    return float(correct[mask[:, :-1]].float().mean())
