"""The controlled experiment on the default model: Gemma 3 270M fine-tuned on fictitious facts
stated in one direction (Berglund et al. 2023, experiment 1), in the toy experiment's three
conditions: the curse (``forward_only``), Berglund's ``both_directions_control`` and reverse
training (``reverse_training``, Golovneva et al. 2024: every sentence also in its
entity-preserving reversal).

Phases of :func:`run_finetune` (facts, corpus and tests as in :mod:`scrying.reversal.experiment`):

1. **Facts and corpus**: the same generated people, phrasings and conditions
   (:func:`scrying.reversal.experiment.corpus`). Sentences start with a capital letter, as in
   text (a reversed sentence too: ``. Fira harbor of composer the is Zavi Gifimi``).
2. **Fine-tuning**: every weight except the (tied) token embedding, whose 168M parameters the
   facts do not need, with AdamW on the causal language-modelling loss of whole sentences
   (right-padded batches, padding masked), seeded, run by the toys' loop
   (:func:`scrying.toys.train.train_steps`); the model is loaded afresh per condition. At most
   ``steps`` steps; with ``target_forward_top1``, the held-out forward top-1 is measured every
   ``eval_every`` steps and training stops once it reaches the target (the issue's "trained until
   the name-first condition learns forward").
3. **Test** in the held-out phrasings of both directions among ``K`` other test facts' answers
   (:mod:`scrying.reversal.pair_scoring`, :mod:`scrying.reversal.summary`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
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
    CONDITIONS,
    ExperimentResult,
    check_conditions,
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
    conditions: tuple[str, ...] = CONDITIONS
    #: stop a condition once its held-out forward top-1 reaches this (``None``: run all ``steps``)
    target_forward_top1: float | None = None
    #: steps between two measurements of forward top-1 (with ``target_forward_top1``)
    eval_every: int = 20

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"FinetuneConfig.model must be a model spec (a non-empty string), got {self.model!r}")
        check_fields(self)
        check_conditions("FinetuneConfig", self.conditions)
        target = self.target_forward_top1
        if target is not None and (isinstance(target, bool) or not isinstance(target, int | float) or not 0 < target <= 1):
            raise ConfigError(f"FinetuneConfig.target_forward_top1 must be in (0, 1] or None, got {target!r}")
        if isinstance(self.eval_every, bool) or not isinstance(self.eval_every, int) or self.eval_every < 1:
            raise ConfigError(f"FinetuneConfig.eval_every must be a positive integer, got {self.eval_every!r}")


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:]


def finetune(model: Model, sentences: list[str], config: FinetuneConfig, *, progress: bool = False,
             forward_top1: Callable[[], float] | None = None) -> FinetuneTrace:
    """Fine-tune ``model`` in place on ``sentences``: at most ``config.steps`` steps; with
    ``config.target_forward_top1`` and ``forward_top1`` (measures the model's held-out forward
    top-1), in rounds of ``config.eval_every`` steps, stopping once the target is reached."""
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

    check = config.target_forward_top1 is not None and forward_top1 is not None
    losses: list[float] = []
    measured: list[tuple[int, float]] = []
    seconds = 0.0
    while len(losses) < config.steps:
        n = min(config.eval_every, config.steps - len(losses)) if check else config.steps
        start = time.perf_counter()
        losses += train_steps(model, batch_loss, optimizer, steps=n, progress=progress, desc="fine-tuning")
        seconds += time.perf_counter() - start
        if check:
            assert forward_top1 is not None and config.target_forward_top1 is not None  # for the type checker
            with torch.no_grad():
                measured.append((len(losses), forward_top1()))
            logger.info("step %d: held-out forward top-1 %.2f", *measured[-1])
            if measured[-1][1] >= config.target_forward_top1:
                break
    for p in model.parameters():
        p.requires_grad_(False)
    return FinetuneTrace(losses, measured, seconds / len(losses))


@dataclass(frozen=True)
class FinetuneTrace:
    """One condition's fine-tuning: every step's loss, the forward top-1 measured along the way
    (``(steps done, top-1)``), and the mean seconds per optimizer step."""

    losses: list[float]
    forward_top1: list[tuple[int, float]]
    seconds_per_step: float


def run_finetune(config: FinetuneConfig, out_dir: Path | str, load: LoadConfig | None = None, *, progress: bool = False) -> ExperimentResult:
    """Fine-tune and test each condition; writes ``summary.json``, ``summary.md`` and
    ``records-CONDITION.jsonl`` under ``out_dir`` (checked before the model loads; errors name it
    ``--out-dir``; the fine-tuned weights are not kept)."""
    out = check_output_dir(out_dir, option="--out-dir")
    facts = make_facts(config.n_test + config.n_support, config.seed)
    test, support = facts[: config.n_test], facts[config.n_test :]
    pairs = held_out_pairs(test)
    bootstrap = config.bootstrap
    scoring = ReversalConfig(distractors=config.distractors, seed=config.seed)
    rows, records = [], {}
    for condition in config.conditions:
        sentences = [_sentence(s) for s in corpus(test, support, condition=condition)]
        model = load_model(config.model, load or LoadConfig())
        before = score_chunk(ModelScorer(model), pairs, list(range(len(pairs))), scoring)

        def forward_top1(model: Model = model) -> float:
            scored = score_chunk(ModelScorer(model), pairs, list(range(len(pairs))), scoring)
            return sum(r.forward.rank == 1 for r in scored) / len(scored)

        trace = finetune(model, sentences, config, progress=progress, forward_top1=forward_top1)
        scored = score_chunk(ModelScorer(model), pairs, list(range(len(pairs))), scoring)
        records[condition] = scored
        base = summary_row("base", before, bootstrap)
        rows.append({"condition": condition, "n_sentences": len(sentences), "steps_run": len(trace.losses),
                     "seconds_per_step": trace.seconds_per_step, "first_loss": trace.losses[0],
                     "last_loss": trace.losses[-1], "forward_top1_during": trace.forward_top1,
                     "base_forward_top1": base["forward_top1"], "base_reverse_top1": base["reverse_top1"],
                     **summary_row("finetune", scored, bootstrap)})
        del model
    result = ExperimentResult(pd.DataFrame(rows), records, config)
    out.mkdir(parents=True, exist_ok=True)
    write_experiment(result, out)
    return result
