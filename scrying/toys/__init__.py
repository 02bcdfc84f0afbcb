"""Small models scrying trains itself, for experiments that need control over training."""

from scrying.toys.tasks import RepeatedSequenceTask, induction_accuracy
from scrying.toys.train import ToyModelConfig, TrainConfig, TrainResult, train_toy
from scrying.toys.vocab import build_tokenizer, content_token_ids

__all__ = [
    "RepeatedSequenceTask",
    "ToyModelConfig",
    "TrainConfig",
    "TrainResult",
    "build_tokenizer",
    "content_token_ids",
    "induction_accuracy",
    "train_toy",
]
