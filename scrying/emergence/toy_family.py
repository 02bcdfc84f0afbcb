"""A model family scrying trains itself, offline: the checkpoints of toy transformers learning
induction, with the mechanism measured beside the metric.

Phases of :func:`toy_family`:

1. **Train** (cached): for each width of the preset, a toy model (:mod:`scrying.toys`) on
   random-period repeated sequences, saving checkpoints along the way; a run whose directory
   already holds the same settings (``scrying-toy.json``) is reused.
2. **Members**: every checkpoint is a member; its scale is its training compute,
   ``6 N D`` FLOPs (Kaplan et al. 2020) with ``N`` the parameter count and ``D`` the training
   tokens seen (``step x batch_size x sequence length``), so checkpoints of different widths
   lie on one axis; its label the width and step.
3. **Mechanism** (:func:`head_curves`): the head detector's previous-token and induction scores
   (:func:`scrying.ablation.head_scores`, Olsson et al. 2022) of every member, so a jump in the
   metrics can be tied to the formation of induction heads (a phase change visible in the loss
   itself, Olsson et al.) or shown to have none.

Presets: ``tiny`` (one 2-layer model, 6 checkpoints; seconds, for the tests), ``toy`` (one
2-layer model of width 32, 24 checkpoints: a family over training time, about a minute to train)
and ``toy-widths`` (widths 8, 16, 32 and 64, each trained 400 steps: a family over size, two
minutes). A family mixing widths and training steps on one compute axis interleaves curves that
differ in kind, so the presets keep the two apart.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
from safetensors import safe_open

from scrying.ablation import head_scores
from scrying.emergence.study import Member
from scrying.errors import ConfigError
from scrying.models import load_model
from scrying.prompt_sets import repeated_tokens
from scrying.toys import RepeatedSequenceTask, ToyModelConfig, TrainConfig, train_toy

PRESETS = {
    "tiny": {"widths": (32,), "steps": 240, "checkpoint_every": 40},
    "toy": {"widths": (32,), "steps": 600, "checkpoint_every": 25},
    "toy-widths": {"widths": (8, 16, 32, 64), "steps": 400, "checkpoint_every": 400},
}
TASK = RepeatedSequenceTask(n_content=64, half_len=20)


@dataclass(frozen=True)
class ToyFamily:
    members: list[Member]
    vocabulary: tuple[str, ...]  # the toy tokenizer's words, for the induction task
    task: RepeatedSequenceTask


def toy_family(cache_dir: Path | str, preset: str = "toy", *, seed: int = 0) -> ToyFamily:
    """Train (or reuse) the preset's toy models and list their checkpoints as a family."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown toy family preset {preset!r}; expected one of {', '.join(PRESETS)}")
    spec = PRESETS[preset]
    members = []
    for width in spec["widths"]:
        model_cfg = ToyModelConfig(d_model=width, d_mlp=4 * width, n_heads=4)
        train_cfg = TrainConfig(steps=spec["steps"], checkpoint_every=spec["checkpoint_every"], seed=seed,
                                eval_every=spec["checkpoint_every"])
        out = Path(cache_dir) / f"{preset}-w{width}-s{seed}"
        meta = {"task": asdict(TASK), "model": asdict(model_cfg), "train": asdict(train_cfg)}
        saved = out / "scrying-toy.json"
        if not (saved.exists() and json.loads(saved.read_text()) == meta):
            train_toy(out, TASK, model_cfg, train_cfg)
        tokens_per_step = train_cfg.batch_size * TASK.seq_len
        n_params = _parameters(out / "model.safetensors")
        for checkpoint in sorted((out / "checkpoints").glob("step-*")):
            step = int(checkpoint.name.removeprefix("step-"))
            members.append(Member(str(checkpoint), 6.0 * n_params * step * tokens_per_step, f"w{width} step {step}"))
    vocabulary = tuple(f"t{i}" for i in range(TASK.n_content))
    return ToyFamily(members, vocabulary, TASK)


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
