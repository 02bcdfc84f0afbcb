"""A model family scrying trains itself, offline: the checkpoints of toy transformers learning
induction or arithmetic, with the mechanism measured beside the metric.

Phases of :func:`toy_family`:

1. **Train** (cached): for each width of the preset, a toy model (:mod:`scrying.toys`) on the
   task the study scores — random-period repeated sequences for ``induction``, ``a+b=`` sums for
   ``addition:K`` (``a*b=`` for ``multiplication:K``), one character per token — saving
   checkpoints along the way; a run whose directory already holds the same settings
   (``scrying-toy.json``) is reused.
2. **Members**: every checkpoint is a member; its scale is its training compute,
   ``6 N D`` FLOPs (Kaplan et al. 2020) with ``N`` the parameter count and ``D`` the training
   tokens seen (``step x batch_size x sequence length``), so checkpoints of different widths
   lie on one axis; its label the width and step.
3. **Items** (:func:`family_items`): for arithmetic, the study's items are drawn from the operand
   pairs the toys never trained on (:meth:`scrying.toys.ArithmeticTask.held_out`).
4. **Mechanism** (:func:`head_curves`): the head detector's previous-token and induction scores
   (:func:`scrying.ablation.head_scores`, Olsson et al. 2022) of every member, so a jump in the
   metrics can be tied to the formation of induction heads (a phase change visible in the loss
   itself, Olsson et al.) or shown to have none.

Presets (the same names for both tasks): ``tiny`` (one 2-layer model, a few checkpoints;
for the tests: training takes seconds, a whole study cold 3 min 49 s measured on 2 cores), ``toy`` (one 2-layer model, checkpoints over training: a family over
training time; about a minute to train here) and ``toy-widths`` (several widths, each trained
the same number of steps: a family over size; a few minutes). A family mixing widths and
training steps on one compute axis interleaves curves that differ in kind, so the presets keep
the two apart.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
from safetensors import safe_open

from scrying.ablation import head_scores
from scrying.emergence.study import Member
from scrying.emergence.tasks import Item, task_from_spec
from scrying.errors import ConfigError, InvalidInputError
from scrying.models import load_model
from scrying.prompt_sets import repeated_tokens
from scrying.toys import (
    ArithmeticTask,
    RepeatedSequenceTask,
    ToyModelConfig,
    TrainConfig,
    train_toy,
)

PRESETS = {
    "tiny": {"widths": (32,), "steps": 240, "checkpoint_every": 40},
    "toy": {"widths": (32,), "steps": 600, "checkpoint_every": 25},
    "toy-widths": {"widths": (8, 16, 32, 64), "steps": 400, "checkpoint_every": 400},
}
ARITHMETIC_PRESETS = {
    "tiny": {"widths": (32,), "steps": 160, "checkpoint_every": 40},
    "toy": {"widths": (64,), "steps": 1500, "checkpoint_every": 75},
    "toy-widths": {"widths": (16, 32, 64, 128), "steps": 1500, "checkpoint_every": 1500},
}
TASK = RepeatedSequenceTask(n_content=64, half_len=20)
_TASK_NAMES = {"+": "add", "*": "mul"}


@dataclass(frozen=True)
class ToyFamily:
    members: list[Member]
    vocabulary: tuple[str, ...]  # the toy tokenizer's words, for the induction task
    task: RepeatedSequenceTask | ArithmeticTask


def training_task(task_spec: str) -> RepeatedSequenceTask | ArithmeticTask:
    """The toy training task behind a study's task spec: ``induction[:N]`` (repeated
    sequences), ``addition:K`` or ``multiplication:K``."""
    match = re.fullmatch(r"(addition|multiplication):([1-6])", task_spec.strip())
    if match:
        return ArithmeticTask(op="+" if match[1] == "addition" else "*", k_digits=int(match[2]))
    if re.fullmatch(r"induction(:[1-9][0-9]*)?", task_spec.strip()):
        return TASK
    raise InvalidInputError(
        f"the toy family trains on induction[:N], addition:K or multiplication:K (K in 1..6), not {task_spec!r}"
    )


def toy_family(cache_dir: Path | str, preset: str = "toy", *, task: str = "induction", seed: int = 0) -> ToyFamily:
    """Train (or reuse) the preset's toy models for the study task ``task`` and list their
    checkpoints as a family."""
    train_task = training_task(task)
    arithmetic = isinstance(train_task, ArithmeticTask)
    presets = ARITHMETIC_PRESETS if arithmetic else PRESETS
    if preset not in presets:
        raise ConfigError(f"unknown toy family preset {preset!r}; expected one of {', '.join(presets)}")
    spec = presets[preset]
    members = []
    for width in spec["widths"]:
        # arithmetic toys need a context for the head detector's repeated sequences (2 x 10 + 1)
        model_cfg = ToyModelConfig(d_model=width, d_mlp=4 * width, n_heads=4, n_ctx=32 if arithmetic else 64)
        train_cfg = TrainConfig(steps=spec["steps"], checkpoint_every=spec["checkpoint_every"], seed=seed,
                                eval_every=spec["checkpoint_every"], batch_size=128 if arithmetic else 64)
        name = f"{preset}-{_TASK_NAMES[train_task.op]}{train_task.k_digits}" if arithmetic else preset
        out = Path(cache_dir) / f"{name}-w{width}-s{seed}"
        meta = {"task": asdict(train_task), "model": asdict(model_cfg), "train": asdict(train_cfg)}
        saved = out / "scrying-toy.json"
        if not (saved.exists() and json.loads(saved.read_text()) == meta):
            train_toy(out, train_task, model_cfg, train_cfg)
        tokens_per_step = train_cfg.batch_size * train_task.seq_len
        n_params = _parameters(out / "model.safetensors")
        for checkpoint in sorted((out / "checkpoints").glob("step-*")):
            step = int(checkpoint.name.removeprefix("step-"))
            members.append(Member(str(checkpoint), 6.0 * n_params * step * tokens_per_step, f"w{width} step {step}"))
    vocabulary = () if arithmetic else tuple(f"t{i}" for i in range(TASK.n_content))
    return ToyFamily(members, vocabulary, train_task)


def family_items(family: ToyFamily, task_spec: str, n_items: int, seed: int) -> list[Item]:
    """The study's items for a toy family: the induction task over the toys' words, or
    arithmetic items whose operand pairs the toys never trained on."""
    if not isinstance(family.task, ArithmeticTask):
        return task_from_spec(task_spec, n_items=n_items, seed=seed, vocabulary=family.vocabulary)
    # draw more than needed and keep the held-out pairs (a tenth of all pairs), in order
    keep: list[Item] = []
    draw = 10 * n_items
    while len(keep) < n_items:
        items = task_from_spec(task_spec, n_items=draw, seed=seed)
        keep = [it for it in items if family.task.held_out(*map(int, re.split(r"[+*]", it.prompt.rstrip("="))))]
        draw *= 2
    return keep[:n_items]


def head_curves(members: list[Member], *, n_prompts: int = 16, half_len: int = 10, seed: int = 0) -> pd.DataFrame:
    """Per member: the largest previous-token and induction scores over its heads, and which
    head has the latter (columns model, label, scale, previous_token, induction, induction_head)."""
    rows = []
    for member in members:
        model = load_model(member.model)
        tokens = repeated_tokens(model, n_prompts, half_len, seed=seed).tokens
        with torch.no_grad():
            scores = head_scores(model, tokens, half_len)
        best = scores.loc[scores["induction"].idxmax()]
        rows.append({"model": member.model, "label": member.label, "scale": member.scale,
                     "previous_token": float(scores["previous_token"].max()), "induction": float(best["induction"]),
                     "induction_head": f"L{int(best['layer'])}H{int(best['head'])}"})
    return pd.DataFrame(rows)


def _parameters(path: Path) -> int:
    """The parameter count of a saved model (read from the safetensors header, no weights loaded)."""
    with safe_open(str(path), framework="pt") as handle:
        return sum(math.prod(handle.get_slice(name).get_shape()) for name in handle.keys())
