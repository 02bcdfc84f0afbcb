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
  (Schaeffer et al., eq. 1: Accuracy(N) ~ p_N^L).

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


def _check_logprobs(values: Sequence[float]) -> None:
    if len(values) == 0:
        raise InvalidInputError("target_logprobs is empty (the target has no tokens)")


def _check_choices(choices: Mapping[str, float], target: str) -> None:
    if target not in choices:
        raise InvalidInputError(f"choices {sorted(choices)!r} do not include the target {target!r}")
