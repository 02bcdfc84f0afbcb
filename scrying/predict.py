"""Next-token predictions and continuations (greedy or nucleus sampling)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd
import torch

from scrying.axes import Model
from scrying.errors import ConfigError
from scrying.prompts import tokenize


@dataclass(frozen=True, kw_only=True)
class PredictConfig:
    """How many top tokens to report and how to continue the prompt."""

    top_k: int = 10
    max_new_tokens: int = 0
    sampling: Literal["greedy", "nucleus"] = "greedy"
    top_p: float = 0.9
    temperature: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ConfigError(f"PredictConfig.top_k must be >= 1, got {self.top_k}")
        if self.max_new_tokens < 0:
            raise ConfigError(f"PredictConfig.max_new_tokens must be >= 0, got {self.max_new_tokens}")
        if self.sampling not in ("greedy", "nucleus"):
            raise ConfigError(f"PredictConfig.sampling must be 'greedy' or 'nucleus', got {self.sampling!r}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"PredictConfig.top_p must be in (0, 1], got {self.top_p}")
        if self.temperature <= 0:
            raise ConfigError(f"PredictConfig.temperature must be > 0, got {self.temperature}")


@dataclass(frozen=True)
class Prediction:
    """Top next tokens (``token``, ``id``, ``prob``, ``logprob``) and an optional continuation."""

    prompt: str
    top: pd.DataFrame
    continuation: str


@torch.no_grad()
def predict(model: Model, prompt: str, config: PredictConfig | None = None) -> Prediction:
    """Top-k next tokens of ``prompt`` and, if asked, a continuation."""
    config = config or PredictConfig()
    tokens = tokenize(model, prompt)
    logprobs = model(tokens)[0, -1].float().log_softmax(-1)
    values, ids = logprobs.topk(config.top_k)
    top = pd.DataFrame(
        {
            "token": [model.tokenizer.decode([int(i)]) for i in ids],
            "id": ids.tolist(),
            "prob": values.exp().tolist(),
            "logprob": values.tolist(),
        }
    )
    continuation = _continue(model, tokens, config) if config.max_new_tokens else ""
    return Prediction(prompt=prompt, top=top, continuation=continuation)


def _continue(model: Model, tokens: torch.Tensor, config: PredictConfig) -> str:
    generator = torch.Generator().manual_seed(config.seed)
    eos = getattr(model.tokenizer, "eos_token_id", None)
    new: list[int] = []
    for _ in range(config.max_new_tokens):
        if tokens.shape[-1] >= model.cfg.n_ctx:
            break
        logits = model(tokens)[0, -1].float()
        next_id = _choose(logits, config, generator)
        if eos is not None and next_id == eos:
            break
        new.append(next_id)
        tokens = torch.cat([tokens, torch.tensor([[next_id]], device=tokens.device)], dim=1)
    return model.tokenizer.decode(new)


def _choose(logits: torch.Tensor, config: PredictConfig, generator: torch.Generator) -> int:
    if config.sampling == "greedy":
        return int(logits.argmax())
    probs = (logits / config.temperature).softmax(-1).cpu()
    sorted_probs, order = probs.sort(descending=True)
    keep = sorted_probs.cumsum(-1) - sorted_probs < config.top_p  # smallest set reaching top_p
    sorted_probs = sorted_probs * keep
    choice = torch.multinomial(sorted_probs / sorted_probs.sum(), 1, generator=generator)
    return int(order[choice])
