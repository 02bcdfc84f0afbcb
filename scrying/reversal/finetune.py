"""The controlled experiment on the default model: Gemma 3 270M fine-tuned on fictitious facts
stated in one direction (Berglund et al. 2023, experiment 1), with the reverse-training control.

Phases of :func:`run_finetune` (facts, corpus and tests as in :mod:`scrying.reversal.experiment`):

1. **Facts and corpus**: the same generated people and phrasings; support facts in every
   phrasing of both directions, test facts name-first only (plus their reversed statements in
   the ``reverse_training`` condition). Sentences start with a capital letter, as in text.
2. **Fine-tuning**: every weight except the (tied) token embedding, whose 168M parameters the
   facts do not need, with AdamW on the causal language-modelling loss of whole sentences
   (right-padded batches, padding masked), seeded, run by the toys' loop
   (:func:`scrying.toys.train.train_steps`); the model is loaded afresh per condition.
3. **Test** in the held-out phrasings of both directions among ``K`` other test facts' answers
   (:mod:`scrying.reversal.pair_scoring`, :mod:`scrying.reversal.summary`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from scrying.axes import Model
from scrying.errors import ConfigError
from scrying.models import LoadConfig, load_model
from scrying.models.adapter import model_device
from scrying.preflight import check_output_dir
from scrying.prompt_sets import pad_id, pad_right
from scrying.prompts import tokenize
from scrying.reversal.experiment import (
    ExperimentResult,
    check_fields,
    corpus,
    held_out_pairs,
    make_facts,
    write_experiment,
)
from scrying.reversal.pair_scoring import ModelScorer, ReversalConfig, score_chunk
from scrying.reversal.summary import summary_row
from scrying.stats import BootstrapConfig
from scrying.toys.train import train_steps

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class FinetuneConfig:
    """One fine-tuning experiment on a model spec (default: the default model), and the
    bootstrap of the summary's intervals and paired test."""

    model: str = "gemma-3-270m"
    n_test: int = 20
    n_support: int = 20
    steps: int = 40
    batch_size: int = 8
    lr: float = 3e-4
    distractors: int = 9
    seed: int = 0
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"FinetuneConfig.model must be a model spec (a non-empty string), got {self.model!r}")
        check_fields(self)


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:]


def finetune(model: Model, sentences: list[str], config: FinetuneConfig, *, progress: bool = False) -> list[float]:
    """Fine-tune ``model`` in place on ``sentences``; the training losses."""
    rows = [tokenize(model, s, what="training sentence")[0] for s in sentences]
    tokens = pad_right(rows, pad_id(model)).to(model_device(model))
    real = torch.zeros(tokens.shape, dtype=torch.bool, device=tokens.device)
    for i, r in enumerate(rows):
        real[i, : len(r)] = True
    vocab = model.cfg.d_vocab
    trained = [p for p in model.parameters() if p.shape[0] != vocab]  # all but the token embedding
    for p in model.parameters():
        p.requires_grad_(p.shape[0] != vocab)
    optimizer = torch.optim.AdamW(trained, lr=config.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(config.seed)

    def batch_loss(step: int) -> torch.Tensor:
        batch = torch.randint(len(rows), (config.batch_size,), generator=gen)
        logits: torch.Tensor = model(tokens[batch])[:, :-1]  # [batch pos-1 d_vocab]
        target, mask = tokens[batch][:, 1:], real[batch][:, 1:]
        return torch.nn.functional.cross_entropy(logits[mask].float(), target[mask])

    losses = train_steps(model, batch_loss, optimizer, steps=config.steps, progress=progress, desc="fine-tuning")
    for p in model.parameters():
        p.requires_grad_(False)
    return losses


def run_finetune(config: FinetuneConfig, out_dir: Path | str, load: LoadConfig | None = None, *, progress: bool = False) -> ExperimentResult:
    """Fine-tune and test both conditions; writes ``summary.json``, ``summary.md`` and
    ``records-CONDITION.jsonl`` under ``out_dir`` (checked before the model loads; errors name it
    ``--out-dir``; the fine-tuned weights are not kept)."""
    out = check_output_dir(out_dir, option="--out-dir")
    facts = make_facts(config.n_test + config.n_support, config.seed)
    test, support = facts[: config.n_test], facts[config.n_test :]
    pairs = held_out_pairs(test)
    bootstrap = config.bootstrap
    rows, records = [], {}
    for condition in ("forward_only", "reverse_training"):
        sentences = [_sentence(s) for s in corpus(test, support, reverse_training=condition == "reverse_training")]
        model = load_model(config.model, load or LoadConfig())
        before = score_chunk(ModelScorer(model), pairs, list(range(len(pairs))), ReversalConfig(distractors=config.distractors, seed=config.seed))
        losses = finetune(model, sentences, config, progress=progress)
        scored = score_chunk(ModelScorer(model), pairs, list(range(len(pairs))), ReversalConfig(distractors=config.distractors, seed=config.seed))
        records[condition] = scored
        base = summary_row("base", before, bootstrap)
        rows.append({"condition": condition, "n_sentences": len(sentences), "first_loss": losses[0], "last_loss": losses[-1],
                     "base_forward_top1": base["forward_top1"], "base_reverse_top1": base["reverse_top1"],
                     **summary_row("finetune", scored, bootstrap)})
        del model
    result = ExperimentResult(pd.DataFrame(rows), records, config)
    out.mkdir(parents=True, exist_ok=True)
    write_experiment(result, out)
    return result
