"""Metrics of emergence studies, all computed from the same model outputs (Schaeffer, Miranda &
Koyejo 2023, "Are Emergent Abilities of Large Language Models a Mirage?", sec. 2-3).

For one item with target tokens ``t_1..t_L``, teacher-forced log-probabilities
``l_i = log p(t_i | prompt, t_<i)``, a greedy output, and optionally the total log-probabilities
``c_k`` of the answer choices (the target among them):

* exact match: ``1[strip(output) == strip(target)]`` (nonlinear, discontinuous);
* multiple-choice grade: ``1[argmax_k c_k = target]`` (nonlinear, discontinuous);
* token edit distance: Levenshtein distance between the output's and the target's tokens
  (insertions, deletions and substitutions; characters when no tokens are given);
* Brier score: ``sum_k (q_k - 1[k = target])^2`` with ``q = softmax(c)`` over the choices;
* per-token probability: ``p = exp(mean_i l_i)``, the geometric mean of the target tokens'
  probabilities (continuous);
* target log-likelihood: ``sum_i l_i`` (continuous);
* predicted accuracy: ``p^L = exp(sum_i l_i)``, the probability of the whole target under
  teacher forcing, which is what exact match measures on average if every token must be right
  (Schaeffer et al., eq. 1: Accuracy(N) ~ p_N^L);
* per-token accuracy (greedy): the fraction of target positions ``j`` where the greedy output's
  token ``j`` is the target's token ``j`` (continuous in the mean; what greedy exact match is the
  ``L``-th power of when positions are independent);
* sampled exact match: with ``s`` outputs sampled per item (temperature 1), the fraction that
  are exact: an unbiased estimate of the probability of sampling the target, which ``p^L`` is.

Nonlinear metrics are the ones a verdict tests the jump under; continuous ones whether it survives
(:mod:`scrying.emergence.verdict`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from rapidfuzz.distance import Levenshtein

from scrying.errors import InvalidInputError

#: metric name -> (kind, higher is better)
METRICS: dict[str, tuple[str, bool]] = {
    "exact_match": ("nonlinear", True),
    "multiple_choice_grade": ("nonlinear", True),
    "token_edit_distance": ("continuous", False),
    "brier_score": ("continuous", False),
    "per_token_probability": ("continuous", True),
    "target_log_likelihood": ("continuous", True),
    "predicted_accuracy": ("continuous", True),
    "per_token_accuracy": ("continuous", True),
    "per_token_argmax_accuracy": ("continuous", True),
    "sampled_exact_match": ("nonlinear", True),
}


def exact_match(output: str, target: str) -> float:
    return float(output.strip() == target.strip())


def multiple_choice_grade(choice_logprobs: Mapping[str, float], target: str) -> float:
    _check_choices(choice_logprobs, target)
    best = max(choice_logprobs, key=lambda k: choice_logprobs[k])
    return float(best == target)


def token_edit_distance(output: Sequence[int] | str, target: Sequence[int] | str) -> float:
    """Levenshtein distance between token sequences (or strings: characters)."""
    return float(Levenshtein.distance(output, target))


def brier_score(choice_logprobs: Mapping[str, float], target: str) -> float:
    _check_choices(choice_logprobs, target)
    top = max(choice_logprobs.values())
    weights = {k: math.exp(v - top) for k, v in choice_logprobs.items()}
    total = sum(weights.values())
    return float(sum((w / total - (1.0 if k == target else 0.0)) ** 2 for k, w in weights.items()))


def per_token_probability(target_logprobs: Sequence[float]) -> float:
    _check_logprobs(target_logprobs)
    return math.exp(sum(target_logprobs) / len(target_logprobs))


def target_log_likelihood(target_logprobs: Sequence[float]) -> float:
    _check_logprobs(target_logprobs)
    return float(sum(target_logprobs))


def predicted_accuracy(target_logprobs: Sequence[float]) -> float:
    """``p^L`` with ``p`` the per-token probability and ``L`` the target's token count."""
    return per_token_probability(target_logprobs) ** len(target_logprobs)


def per_token_accuracy(output_tokens: Sequence[int], target_tokens: Sequence[int]) -> float:
    """Fraction of the target's positions where the output has the target's token (an output
    shorter than the target is wrong at the positions it lacks)."""
    if len(target_tokens) == 0:
        raise InvalidInputError("target_tokens is empty (the target has no tokens)")
    return sum(a == b for a, b in zip(output_tokens, target_tokens, strict=False)) / len(target_tokens)


def per_token_argmax_accuracy(target_hits: Sequence[bool]) -> float:
    """Fraction of the target's tokens that are the argmax given the target's own prefix
    (teacher-forced); greedy decoding reproduces the target exactly when it is 1, so ``a^L``
    with ``a`` this accuracy is the greedy analogue of ``p^L``."""
    if len(target_hits) == 0:
        raise InvalidInputError("target_hits is empty (the target has no tokens)")
    return sum(bool(h) for h in target_hits) / len(target_hits)


def sampled_exact_match(samples: Sequence[str], target: str) -> float:
    """Fraction of sampled outputs that are exact."""
    if len(samples) == 0:
        raise InvalidInputError("samples is empty (no sampled output to score)")
    return sum(exact_match(s, target) for s in samples) / len(samples)


def _check_logprobs(values: Sequence[float]) -> None:
    if len(values) == 0:
        raise InvalidInputError("target_logprobs is empty (the target has no tokens)")


def _check_choices(choices: Mapping[str, float], target: str) -> None:
    if target not in choices:
        raise InvalidInputError(f"choices {sorted(choices)!r} do not include the target {target!r}")
