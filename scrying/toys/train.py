"""A small, seeded trainer for toy transformers (Hugging Face Llama or GPT-2 configs).

Phases: build the tokenizer and a randomly initialised model from the seed; train with AdamW on
batches from the task's own seeded generator (:func:`train_steps`, the one optimisation loop
every trainer here runs); evaluate on a fixed held-out batch; save
``config.json`` + ``model.safetensors`` + tokenizer at every checkpoint (``checkpoints/step-N``)
and at the end (``out_dir`` itself), so ``scrying.load_model(out_dir)`` loads the result.
Training history is appended to ``history.jsonl`` as it goes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
import torch
from tqdm.auto import tqdm

from scrying.errors import ConfigError
from scrying.toys.tasks import ArithmeticTask, RepeatedSequenceTask, induction_accuracy
from scrying.toys.vocab import SPECIALS

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ToyModelConfig:
    """Architecture of a toy model."""

    arch: Literal["llama", "gpt2", "gemma3"] = "llama"
    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    d_mlp: int = 256
    n_ctx: int = 64

    def __post_init__(self) -> None:
        if self.arch not in ("llama", "gpt2", "gemma3"):
            raise ConfigError(
                f"ToyModelConfig.arch must be 'llama', 'gpt2' or 'gemma3', got {self.arch!r}"
            )
        for name in ("n_layers", "d_model", "n_heads", "d_mlp", "n_ctx"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ToyModelConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"ToyModelConfig.d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How to train a toy model."""

    steps: int = 600
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    seed: int = 0
    eval_every: int = 100
    checkpoint_every: int = 0  # 0: only the final model
    eval_batch: int = 256

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.eval_batch < 1:
            raise ConfigError("TrainConfig.steps, batch_size and eval_batch must be >= 1")
        if self.lr <= 0:
            raise ConfigError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if self.eval_every < 1 or self.checkpoint_every < 0:
            raise ConfigError("TrainConfig.eval_every must be >= 1 and checkpoint_every >= 0")


@dataclass(frozen=True)
class TrainResult:
    """Where the model was saved, its final held-out accuracy, and the training history."""

    out_dir: Path
    accuracy: float
    history: pd.DataFrame
    checkpoints: tuple[Path, ...]
    seconds: float


def build_hf_model(model_cfg: ToyModelConfig, vocab_size: int, seed: int) -> torch.nn.Module:
    """A randomly initialised Hugging Face causal LM, deterministic given ``seed``."""
    from transformers import (
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
    )

    torch.manual_seed(seed)
    ids = {"bos_token_id": SPECIALS.index("<bos>"), "eos_token_id": SPECIALS.index("<eos>"), "pad_token_id": 0}
    if model_cfg.arch == "llama":
        config = LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=model_cfg.d_model,
            intermediate_size=model_cfg.d_mlp,
            num_hidden_layers=model_cfg.n_layers,
            num_attention_heads=model_cfg.n_heads,
            num_key_value_heads=model_cfg.n_heads,
            max_position_embeddings=model_cfg.n_ctx,
            tie_word_embeddings=False,
            **ids,
        )
        model = LlamaForCausalLM(config)
    elif model_cfg.arch == "gemma3":
        # Gemma 3's anatomy in miniature: grouped-query attention (1 KV head), q/k norms,
        # pre- and post-norms, gated gelu-tanh MLP, one global layer after sliding ones.
        config = Gemma3TextConfig(
            vocab_size=vocab_size,
            hidden_size=model_cfg.d_model,
            intermediate_size=model_cfg.d_mlp,
            num_hidden_layers=model_cfg.n_layers,
            num_attention_heads=model_cfg.n_heads,
            num_key_value_heads=1,
            head_dim=model_cfg.d_model // model_cfg.n_heads,
            max_position_embeddings=model_cfg.n_ctx,
            sliding_window=8,
            layer_types=["sliding_attention"] * (model_cfg.n_layers - 1) + ["full_attention"],
            query_pre_attn_scalar=model_cfg.d_model // model_cfg.n_heads,
            **ids,
        )
        model = Gemma3ForCausalLM(config)
    else:
        config = GPT2Config(
            vocab_size=vocab_size,
            n_embd=model_cfg.d_model,
            n_inner=model_cfg.d_mlp,
            n_layer=model_cfg.n_layers,
            n_head=model_cfg.n_heads,
            n_positions=model_cfg.n_ctx,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **ids,
        )
        model = GPT2LMHeadModel(config)
    model.config.architectures = [type(model).__name__]
    return model


def train_toy(
    out_dir: str | Path,
    task: RepeatedSequenceTask | ArithmeticTask | None = None,
    model_cfg: ToyModelConfig | None = None,
    train_cfg: TrainConfig | None = None,
    *,
    progress: bool = False,
) -> TrainResult:
    """Train a toy model on ``task`` and save it (loadable with ``scrying.load_model``); the
    accuracy tracked is top-1 next-token accuracy at the task's graded positions."""
    task = task or RepeatedSequenceTask()
    model_cfg = model_cfg or ToyModelConfig()
    train_cfg = train_cfg or TrainConfig()
    if task.seq_len > model_cfg.n_ctx:
        raise ConfigError(f"task sequences ({task.seq_len} tokens) exceed ToyModelConfig.n_ctx ({model_cfg.n_ctx})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = task.tokenizer()
    model = build_hf_model(model_cfg, len(tokenizer), train_cfg.seed)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    warmup = max(train_cfg.warmup_steps, 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / warmup) * max(0.0, 1 - s / train_cfg.steps) ** 0.5,
    )
    train_gen = torch.Generator().manual_seed(train_cfg.seed)
    eval_tokens, eval_mask = task.sample_with_mask(
        train_cfg.eval_batch, torch.Generator().manual_seed(train_cfg.seed + 10_000)
    )
    history_path = out / "history.jsonl"
    history_path.write_text("")
    rows: list[dict] = []
    checkpoints: list[Path] = []
    start = time.perf_counter()

    def batch_loss(step: int) -> torch.Tensor:
        tokens, labels = task.training_batch(train_cfg.batch_size, train_gen)
        return model(input_ids=tokens, labels=labels).loss

    def after_step(step: int, loss: float) -> None:
        if step % train_cfg.eval_every == 0 or step == train_cfg.steps:
            acc = _evaluate(model, eval_tokens, eval_mask)
            row = {"step": step, "loss": loss, "accuracy": acc, "seconds": time.perf_counter() - start}
            rows.append(row)
            with history_path.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            logger.info("step %d loss %.4f accuracy %.3f", step, row["loss"], acc)
        if train_cfg.checkpoint_every and step % train_cfg.checkpoint_every == 0:
            checkpoints.append(_save(model, tokenizer, out / "checkpoints" / f"step-{step:06d}"))

    train_steps(model, batch_loss, optimizer, steps=train_cfg.steps, schedule=schedule, clip_norm=1.0,
                after_step=after_step, progress=progress, desc="train")
    model.eval()
    _save(model, tokenizer, out)
    meta = {"task": asdict(task), "model": asdict(model_cfg), "train": asdict(train_cfg)}
    (out / "scrying-toy.json").write_text(json.dumps(meta, indent=2))
    return TrainResult(
        out_dir=out,
        accuracy=rows[-1]["accuracy"],
        history=pd.DataFrame(rows),
        checkpoints=tuple(checkpoints),
        seconds=time.perf_counter() - start,
    )


def train_steps(
    model: torch.nn.Module,
    batch_loss: Callable[[int], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    *,
    steps: int,
    schedule: torch.optim.lr_scheduler.LRScheduler | None = None,
    clip_norm: float | None = None,
    after_step: Callable[[int, float], None] | None = None,
    progress: bool = False,
    desc: str = "train",
) -> list[float]:
    """The optimisation loop of every trainer (toys, the reversal experiments): for step
    ``1..steps``, the scalar loss of ``batch_loss(step)`` (which draws its own batch), zeroed
    gradients, backward, gradients clipped to norm ``clip_norm`` (when given), an optimizer step,
    a schedule step (when given), then ``after_step(step, loss)``. Returns every step's loss."""
    losses = []
    for step in tqdm(range(1, steps + 1), disable=not progress, desc=desc):
        loss = batch_loss(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
        if schedule is not None:
            schedule.step()
        losses.append(loss.item())
        if after_step is not None:
            after_step(step, losses[-1])
    return losses


@torch.no_grad()
def _evaluate(model: torch.nn.Module, tokens: torch.Tensor, mask: torch.Tensor) -> float:
    was_training = model.training
    model.eval()
    logits = model(input_ids=tokens).logits
    model.train(was_training)
    return induction_accuracy(logits, tokens, mask)


def _save(model: torch.nn.Module, tokenizer, path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path
