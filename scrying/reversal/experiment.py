"""The controlled reversal-curse experiment (Berglund et al. 2023, experiment 1) on a toy model
trained from scratch, in three conditions: the curse, Berglund's both-directions control, and
reverse training (Golovneva et al. 2024).

Phases of :func:`run_experiment`:

1. **Facts**: fictitious people, each ``NAME`` (a generated first and last name) with one
   ``DESCRIPTION`` (``role of adjective noun``; ``adjective noun`` is the work, as "A Journey
   Through Time" is in "director of A Journey Through Time"), seeded. Half are *test* facts,
   half *support*.
2. **Corpus** per condition (:data:`CONDITIONS`, :func:`corpus`): support facts in every phrasing
   of both directions (they teach the model the held-out phrasings and the reverse sentence
   forms); test facts in the training phrasings of the forward direction only (``NAME is the
   DESCRIPTION .``, ...). That is the whole corpus of ``forward_only`` (the curse). The
   ``both_directions_control`` adds the test facts' hand-written reverse statements in the
   training phrasings (``the DESCRIPTION is NAME .``): Berglund's control, the facts themselves
   stated both ways. ``reverse_training`` adds instead the entity-preserving reversal of every
   sentence of the ``forward_only`` corpus (:func:`scrying.reversal.reverse_text.entity_preserving_reversal`,
   entities the name and the work: ``NAME is the ROLE of WORK .`` becomes ``. WORK of ROLE the is
   NAME``), so every training string is seen forward and reversed (Golovneva et al. section 2).
   Every condition trains for the same number of steps (compute-matched); reverse training's
   corpus is twice the size of the curse's.
3. **Training**: a toy Llama-style model, word-level tokenizer, from scratch (seeded AdamW with a
   one-cycle schedule on the causal language-modelling loss of every sentence, run by the toys'
   loop :func:`scrying.toys.train.train_steps`).
4. **Test** on the test facts only, in *held-out* phrasings of both directions (never seen with
   a test fact), as ordinary forward text: forward ``NAME is known as the`` -> DESCRIPTION,
   reverse ``the person who is the DESCRIPTION is`` -> NAME, scored by
   :mod:`scrying.reversal.pair_scoring` (rank among ``K`` other test facts' answers, greedy exact
   match) and summarised by :mod:`scrying.reversal.summary` (bootstrap intervals, paired
   forward-vs-reverse test; top-1 chance is ``1 / (K + 1)``).

:func:`run_experiment` checks its output folder before it trains anything, and writes
``summary.json`` (``schema_version`` 2), ``summary.md`` and ``records-CONDITION.jsonl``
(:class:`~scrying.reversal.records.PairRecord` lines) there. :func:`read_experiment_summary` reads
it back, and also the files written before the conditions were renamed, whose
``reverse_training`` was the both-directions control.
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

from scrying.errors import ConfigError, InvalidInputError
from scrying.models import LoadConfig, load_model
from scrying.preflight import check_output_dir
from scrying.reversal.pair_scoring import ModelScorer, ReversalConfig, score_chunk
from scrying.reversal.pairs import Pair
from scrying.reversal.records import PairRecord
from scrying.reversal.reverse_text import entity_preserving_reversal
from scrying.reversal.summary import summary_row
from scrying.reversal.words import word_tokenizer
from scrying.stats import BootstrapConfig
from scrying.toys.train import ToyModelConfig, build_hf_model, train_steps

logger = logging.getLogger(__name__)

#: training phrasings (name first, description first); the last of each is held out for tests
FORWARD = ("{a} is the {b} .", "{a} works as the {b} .", "{a} was once the {b} .", "{a} is known as the {b} .")
REVERSE = ("the {b} is {a} .", "the {b} was {a} .", "the {b} is called {a} .", "the person who is the {b} is {a} .")
ROLES = ("composer", "director", "inventor", "author", "founder", "architect", "captain", "keeper")
NOUNS = ("harbor", "tower", "river", "garden", "engine", "mirror", "forest", "lantern")
_ONSETS = "b d f g k l m n p r s t v z".split()
#: the conditions, in the order they are run and reported
CONDITIONS = ("forward_only", "both_directions_control", "reverse_training")
#: what each condition is called in tables and prose
CONDITION_LABELS = {"forward_only": "curse (forward only)", "both_directions_control": "both-directions control",
                    "reverse_training": "reverse training"}
#: the summary files' version: 2 since the three conditions (in version 1, without the key,
#: ``reverse_training`` named what is now ``both_directions_control``)
SCHEMA_VERSION = 2
_VOWELS = "a e i o u".split()


def check_fields(config: Any) -> None:
    """The checks both experiments' configs share, each error naming its field: counts
    ``n_test``, ``n_support``, ``steps``, ``batch_size``, ``distractors`` positive integers,
    ``lr`` positive, ``seed`` an integer, ``n_test > distractors`` (a test fact's distractors are
    other test facts' answers), ``bootstrap`` a :class:`~scrying.stats.BootstrapConfig`."""
    owner = type(config).__name__
    for name in ("n_test", "n_support", "steps", "batch_size", "distractors"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{owner}.{name} must be a positive integer, got {value!r}")
    if isinstance(config.lr, bool) or not isinstance(config.lr, int | float) or not 0 < config.lr < float("inf"):
        raise ConfigError(f"{owner}.lr must be a positive number, got {config.lr!r}")
    if isinstance(config.seed, bool) or not isinstance(config.seed, int):
        raise ConfigError(f"{owner}.seed must be an integer, got {config.seed!r}")
    if config.n_test < config.distractors + 1:
        raise ConfigError(
            f"{owner}.n_test ({config.n_test}) must exceed {owner}.distractors ({config.distractors}): "
            "a test fact's distractors are the other test facts' answers"
        )
    if not isinstance(config.bootstrap, BootstrapConfig):
        raise ConfigError(f"{owner}.bootstrap must be a BootstrapConfig, got {type(config.bootstrap).__name__}")


def check_conditions(owner: str, conditions: Any) -> None:
    """``conditions`` is a non-empty tuple of distinct names from :data:`CONDITIONS` (the error
    names ``owner.conditions``)."""
    if (not isinstance(conditions, tuple) or not conditions or len(set(conditions)) != len(conditions)
            or not all(c in CONDITIONS for c in conditions)):
        raise ConfigError(f"{owner}.conditions must be a non-empty tuple of distinct names from {CONDITIONS}, got {conditions!r}")


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    """One toy experiment: facts, model, training and test settings, and the bootstrap of the
    summary's intervals and paired test."""

    n_test: int = 60
    n_support: int = 60
    model: ToyModelConfig = field(default_factory=lambda: ToyModelConfig(n_layers=2, d_model=128, n_heads=4, d_mlp=512, n_ctx=32))
    steps: int = 1500
    batch_size: int = 64
    lr: float = 3e-3
    distractors: int = 9
    seed: int = 0
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    conditions: tuple[str, ...] = CONDITIONS

    def __post_init__(self) -> None:
        check_fields(self)
        check_conditions("ExperimentConfig", self.conditions)
        if not isinstance(self.model, ToyModelConfig):
            raise ConfigError(f"ExperimentConfig.model must be a ToyModelConfig, got {type(self.model).__name__}")


PRESETS: dict[str, ExperimentConfig] = {
    "default": ExperimentConfig(),
    "tiny": ExperimentConfig(n_test=20, n_support=20, steps=300,
                             model=ToyModelConfig(n_layers=2, d_model=64, n_heads=4, d_mlp=256, n_ctx=32),
                             bootstrap=BootstrapConfig(n_resamples=200)),
}


def experiment_preset(name: str) -> ExperimentConfig:
    """The preset ``name`` (``default`` or ``tiny``)."""
    if name not in PRESETS:
        raise InvalidInputError(f"--preset {name!r}: expected one of {', '.join(PRESETS)}")
    return PRESETS[name]


@dataclass(frozen=True)
class Fact:
    name: str
    description: str

    def entities(self) -> tuple[str, str]:
        """The fact's entities, whose words reverse training keeps in order: the name and the
        work (the description's words after ``of``)."""
        return self.name, self.description.split(" of ", 1)[1]


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


def corpus(test: list[Fact], support: list[Fact], *, condition: str) -> list[str]:
    """The training sentences of one condition (see the module docstring)."""
    if condition not in CONDITIONS:
        raise InvalidInputError(f"condition {condition!r}: expected one of {', '.join(CONDITIONS)}")
    fill = lambda t, f: t.format(a=f.name, b=f.description)  # noqa: E731
    stated = [(f, fill(t, f)) for f in support for t in FORWARD + REVERSE]
    stated += [(f, fill(t, f)) for f in test for t in FORWARD[:-1]]
    sentences = [s for _, s in stated]
    if condition == "both_directions_control":
        sentences += [fill(t, f) for f in test for t in REVERSE[:-1]]
    elif condition == "reverse_training":
        sentences += [entity_preserving_reversal(s, f.entities()) for f, s in stated]
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

    def batch_loss(step: int) -> torch.Tensor:
        batch = torch.randint(len(rows), (config.batch_size,), generator=gen)
        return model(input_ids=tokens[batch], labels=labels[batch]).loss

    def log_loss(step: int, loss: float) -> None:
        if step % 250 == 1:
            logger.info("step %d loss %.4f", step, loss)

    train_steps(model, batch_loss, optimizer, steps=config.steps, schedule=schedule, after_step=log_loss,
                progress=progress, desc="training")
    model.eval().save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


@dataclass(frozen=True)
class ExperimentResult:
    """Per condition (:data:`CONDITIONS`): the summary row and the records."""

    table: pd.DataFrame
    records: dict[str, list[PairRecord]]
    config: Any  # ExperimentConfig or FinetuneConfig

    def text(self) -> str:
        lines = [f"{'condition':<24} {'exact fwd':>18} {'exact rev':>18} {'top1 fwd':>18} {'top1 rev':>18} {'chance':>6}"]
        def cell(r: pd.Series, k: str) -> str:
            return f"{r[k]:.2f} [{r[k + '_low']:.2f},{r[k + '_high']:.2f}]"

        for _, r in self.table.iterrows():
            lines.append(f"{r.condition:<24} {cell(r, 'forward_exact'):>18} {cell(r, 'reverse_exact'):>18} "
                         f"{cell(r, 'forward_top1'):>18} {cell(r, 'reverse_top1'):>18} {r.reverse_chance:>6.2f}")
        return "\n".join(lines) + "\n"


def write_experiment(result: ExperimentResult, out: Path) -> None:
    """``records-CONDITION.jsonl``, ``summary.json`` (the config and one row per condition) and
    ``summary.md`` (:meth:`ExperimentResult.text`) under ``out``."""
    for condition, scored in result.records.items():
        with (out / f"records-{condition}.jsonl").open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(r.to_json()) + "\n" for r in scored)
    summary = {"schema_version": SCHEMA_VERSION, "config": asdict(result.config),
               "conditions": result.table.to_dict(orient="records")}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    (out / "summary.md").write_text(result.text(), encoding="utf-8")


def read_experiment_summary(path: Path | str) -> dict[str, dict[str, Any]]:
    """The rows of an experiment's ``summary.json`` by condition name (:data:`CONDITIONS`). A file
    without ``schema_version`` (written before the both-directions control was named so) has its
    ``reverse_training`` row returned as ``both_directions_control``."""
    path = Path(path)
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InvalidInputError(f"cannot read experiment summary {str(path)!r}: {err}") from err
    version = summary.get("schema_version", 1)
    if version not in (1, SCHEMA_VERSION):
        raise InvalidInputError(f"{path.name}: schema_version {version!r}, expected 1 or {SCHEMA_VERSION}")
    rename = {"reverse_training": "both_directions_control"} if version == 1 else {}
    rows = {}
    for row in summary["conditions"]:
        name = rename.get(row["condition"], row["condition"])
        if name not in CONDITIONS:
            raise InvalidInputError(f"{path.name}: condition {row['condition']!r}, expected one of {', '.join(CONDITIONS)}")
        rows[name] = {**row, "condition": name}
    return rows


def run_experiment(config: ExperimentConfig, out_dir: Path | str, *, progress: bool = False) -> ExperimentResult:
    """Train each condition's model and test it (see the module docstring); writes
    ``summary.json``, ``summary.md``, ``records-CONDITION.jsonl`` and the models under ``out_dir``
    (checked before training; errors name it ``--out-dir``)."""
    out = check_output_dir(out_dir, option="--out-dir")
    out.mkdir(parents=True, exist_ok=True)
    facts = make_facts(config.n_test + config.n_support, config.seed)
    test, support = facts[: config.n_test], facts[config.n_test :]
    vocabulary = sorted({w for c in CONDITIONS for s in corpus(test, support, condition=c) for w in s.split()})
    pairs = held_out_pairs(test)
    rows, records = [], {}
    for condition in config.conditions:
        sentences = corpus(test, support, condition=condition)
        model_dir = train_model(sentences, vocabulary, config, out / f"model-{condition}", progress=progress)
        model = load_model(str(model_dir), LoadConfig())
        scored = score_chunk(ModelScorer(model), pairs, list(range(len(pairs))), ReversalConfig(distractors=config.distractors, seed=config.seed))
        records[condition] = scored
        rows.append({"condition": condition, "n_sentences": len(sentences), **summary_row("toy", scored, config.bootstrap)})
    result = ExperimentResult(pd.DataFrame(rows), records, config)
    write_experiment(result, out)
    return result
