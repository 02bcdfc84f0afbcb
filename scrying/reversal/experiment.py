"""The controlled reversal-curse experiment (Berglund et al. 2023, experiment 1) on a toy model
trained from scratch, with the reverse-training control (Golovneva et al. 2024).

Phases of :func:`run_experiment`:

1. **Facts**: fictitious people, each ``NAME`` (a generated first and last name) with one
   ``DESCRIPTION`` (``role of adjective noun``), seeded. Half are *test* facts, half *support*.
2. **Corpus** per condition: support facts in every phrasing of both directions (they teach the
   model the held-out phrasings and the reverse sentence forms); test facts in the training
   phrasings of the forward direction only (``NAME is the DESCRIPTION .``, ...). In the
   *reverse-training* condition the test facts also appear in the training phrasings of the
   reverse direction (``the DESCRIPTION is NAME .``).
3. **Training**: a toy Llama-style model, word-level tokenizer, from scratch (seeded AdamW on the
   causal language-modelling loss of every sentence).
4. **Test** on the test facts only, in *held-out* phrasings of both directions (never seen with
   a test fact): forward ``NAME is known as the`` -> DESCRIPTION, reverse ``the person who is the
   DESCRIPTION is`` -> NAME, scored by :mod:`scrying.reversal.scoring` (rank among ``K`` other test
   facts' answers, greedy exact match) and summarised by :mod:`scrying.reversal.summary`
   (bootstrap intervals, paired forward-vs-reverse test; top-1 chance is ``1 / (K + 1)``).
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from scrying.errors import ConfigError
from scrying.models import LoadConfig, load_model
from scrying.reversal.pairs import Pair
from scrying.reversal.scoring import ModelScorer, ReversalConfig, score_chunk
from scrying.reversal.summary import summary_row
from scrying.reversal.words import word_tokenizer
from scrying.stats import BootstrapConfig
from scrying.toys.train import ToyModelConfig, build_hf_model

logger = logging.getLogger(__name__)

#: training phrasings (name first, description first); the last of each is held out for tests
FORWARD = ("{a} is the {b} .", "{a} works as the {b} .", "{a} was once the {b} .", "{a} is known as the {b} .")
REVERSE = ("the {b} is {a} .", "the {b} was {a} .", "the {b} is called {a} .", "the person who is the {b} is {a} .")
ROLES = ("composer", "director", "inventor", "author", "founder", "architect", "captain", "keeper")
NOUNS = ("harbor", "tower", "river", "garden", "engine", "mirror", "forest", "lantern")
_ONSETS = "b d f g k l m n p r s t v z".split()
_VOWELS = "a e i o u".split()


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    """One toy experiment: facts, model, training and test settings."""

    n_test: int = 60
    n_support: int = 60
    model: ToyModelConfig = field(default_factory=lambda: ToyModelConfig(n_layers=2, d_model=128, n_heads=4, d_mlp=512, n_ctx=32))
    steps: int = 1500
    batch_size: int = 64
    lr: float = 3e-3
    distractors: int = 9
    seed: int = 0
    n_bootstrap: int = 1000

    def __post_init__(self) -> None:
        if self.n_test < self.distractors + 1:
            raise ConfigError(f"ExperimentConfig.n_test ({self.n_test}) must exceed distractors ({self.distractors})")
        if self.n_support < 1 or self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("ExperimentConfig.n_support, steps, batch_size must be >= 1 and lr > 0")


PRESETS: dict[str, ExperimentConfig] = {
    "default": ExperimentConfig(),
    "tiny": ExperimentConfig(n_test=20, n_support=20, steps=300,
                             model=ToyModelConfig(n_layers=2, d_model=64, n_heads=4, d_mlp=256, n_ctx=32),
                             n_bootstrap=200),
}


@dataclass(frozen=True)
class Fact:
    name: str
    description: str


def make_facts(n: int, seed: int) -> list[Fact]:
    """``n`` fictitious people with distinct first names, last names and adjectives (one word
    each), seeded."""
    rng = random.Random(seed)
    syllables = [o + v for o in _ONSETS for v in _VOWELS]

    def words(k: int, n_syll: int, taken: set[str]) -> list[str]:
        out: list[str] = []
        while len(out) < k:
            w = "".join(rng.choice(syllables) for _ in range(n_syll))
            if w not in taken:
                taken.add(w)
                out.append(w)
        return out

    taken: set[str] = set()
    firsts = [w.capitalize() for w in words(n, 2, taken)]
    lasts = [w.capitalize() for w in words(n, 3, taken)]
    adjectives = words(n, 2, taken)
    return [Fact(f"{f} {last}", f"{rng.choice(ROLES)} of {adj} {rng.choice(NOUNS)}")
            for f, last, adj in zip(firsts, lasts, adjectives, strict=True)]


def corpus(test: list[Fact], support: list[Fact], *, reverse_training: bool) -> list[str]:
    """The training sentences of one condition (see the module docstring)."""
    fill = lambda t, f: t.format(a=f.name, b=f.description)  # noqa: E731
    sentences = [fill(t, f) for f in support for t in FORWARD + REVERSE]
    sentences += [fill(t, f) for f in test for t in FORWARD[:-1]]
    if reverse_training:
        sentences += [fill(t, f) for f in test for t in REVERSE[:-1]]
    return sentences


def held_out_pairs(test: list[Fact]) -> list[Pair]:
    """The test facts as pairs, in the held-out phrasings."""
    forward = FORWARD[-1].replace(" {b} .", "")
    reverse = REVERSE[-1].replace(" {a} .", "")
    return [Pair(f.name, f.description, "toy", forward, reverse, where=f"test fact {i + 1}") for i, f in enumerate(test)]


def train_model(sentences: list[str], vocabulary: list[str], config: ExperimentConfig, out_dir: Path, *, progress: bool = False) -> Path:
    """Train a toy model from scratch on ``sentences`` and save it (with its tokenizer) to ``out_dir``."""
    tokenizer = word_tokenizer(vocabulary)
    rows = [torch.tensor(tokenizer(s)["input_ids"]) for s in sentences]
    width = max(len(r) for r in rows)
    tokens = torch.zeros(len(rows), width, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = r
        labels[i, : len(r)] = r
    model = build_hf_model(config.model, len(tokenizer), seed=config.seed).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(config.seed)
    for step in tqdm(range(config.steps), desc="training", disable=not progress):
        batch = torch.randint(len(rows), (config.batch_size,), generator=gen)
        loss = model(input_ids=tokens[batch], labels=labels[batch]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 250 == 0:
            logger.info("step %d loss %.4f", step, loss.item())
    model.eval().save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


@dataclass(frozen=True)
class ExperimentResult:
    """Per condition (``forward_only``, ``reverse_training``): the summary row and the records."""

    table: pd.DataFrame
    records: dict[str, list[dict[str, Any]]]
    config: ExperimentConfig

    def text(self) -> str:
        lines = [f"{'condition':<18} {'exact fwd':>18} {'exact rev':>18} {'top1 fwd':>18} {'top1 rev':>18} {'chance':>6}"]
        def cell(r: pd.Series, k: str) -> str:
            return f"{r[k]:.2f} [{r[k + '_low']:.2f},{r[k + '_high']:.2f}]"

        for _, r in self.table.iterrows():
            lines.append(f"{r.condition:<18} {cell(r, 'forward_exact'):>18} {cell(r, 'reverse_exact'):>18} "
                         f"{cell(r, 'forward_top1'):>18} {cell(r, 'reverse_top1'):>18} {r.reverse_chance:>6.2f}")
        return "\n".join(lines) + "\n"


def run_experiment(config: ExperimentConfig, out_dir: Path | str, *, progress: bool = False) -> ExperimentResult:
    """Train both conditions' models and test them (see the module docstring); writes
    ``summary.json``, ``summary.md``, ``records-CONDITION.jsonl`` and the models under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    facts = make_facts(config.n_test + config.n_support, config.seed)
    test, support = facts[: config.n_test], facts[config.n_test :]
    vocabulary = sorted({w for s in corpus(test, support, reverse_training=True) for w in s.split()})
    pairs = held_out_pairs(test)
    bootstrap = BootstrapConfig(n_resamples=config.n_bootstrap, seed=config.seed)
    rows, records = [], {}
    for condition in ("forward_only", "reverse_training"):
        sentences = corpus(test, support, reverse_training=condition == "reverse_training")
        model_dir = train_model(sentences, vocabulary, config, out / f"model-{condition}", progress=progress)
        model = load_model(str(model_dir), LoadConfig())
        scored = score_chunk(ModelScorer(model), pairs, list(range(len(pairs))), ReversalConfig(distractors=config.distractors, seed=config.seed))
        records[condition] = scored
        rows.append({"condition": condition, "n_sentences": len(sentences), **summary_row("toy", scored, bootstrap)})
        with (out / f"records-{condition}.jsonl").open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in scored)
    table = pd.DataFrame(rows)
    result = ExperimentResult(table, records, config)
    (out / "summary.json").write_text(json.dumps({"config": asdict(config), "conditions": table.to_dict(orient="records")},
                                                 indent=1, default=str), encoding="utf-8")
    (out / "summary.md").write_text(result.text(), encoding="utf-8")
    return result
