"""Small models scrying trains itself, for experiments that need control over training."""

from scrying.toys.cache import cached_toy, toy_key
from scrying.toys.tasks import ArithmeticTask, RepeatedSequenceTask, induction_accuracy
from scrying.toys.train import ToyModelConfig, TrainConfig, TrainResult, train_toy
from scrying.toys.vocab import build_char_tokenizer, build_tokenizer, content_token_ids

__all__ = [
    "ArithmeticTask",
    "RepeatedSequenceTask",
    "ToyModelConfig",
    "TrainConfig",
    "TrainResult",
    "build_char_tokenizer",
    "cached_toy",
    "build_tokenizer",
    "content_token_ids",
    "induction_accuracy",
    "toy_key",
    "train_toy",
]
