"""The mixed general-English corpus: sources fetched once, mixed by documented proportions.

Built by ``scrying transcoders corpus --mix`` (the Bible-only corpus stays ``scrying
transcoders corpus``). Phases of :func:`build_mixed_corpus`:

1. **Sources** — each source of :data:`PROPORTIONS` is fetched and cleaned into documents
   (:mod:`scrying.transcoders.corpus_sources`) and cached as JSON lines in
   ``CACHE/corpus/sources/<name>.jsonl``; a cached source is not fetched again.
2. **Split** — each source's documents are shuffled by the seed; documents are moved to the
   held-out split until it holds ``heldout_fraction`` of the source's characters (at least one
   document), so no held-out paragraph comes from a training document.
3. **Budget** — the training mix holds characters in :data:`PROPORTIONS`: its size is the
   largest every source can fill (the scarcest source, relative to its share, is used fully);
   the other sources' documents are taken in their shuffled order until their share is reached.
4. **Mix** — all chosen training documents are shuffled together by the seed and written, one
   paragraph a line, to ``train.txt``; the held-out documents to ``heldout.txt``; sizes,
   proportions and the seed to ``manifest.json``. Files are written to temporary names and
   renamed, so a killed build leaves no half corpus.

Proportions by characters (FACTS.md's sizes give 4.0-4.4 characters a Gemma token for these sources): prose
40% (World English Bible 15%, Spurgeon's Treasury of David and Matthew Henry's Concise
Commentary 25%), reference and technical text 50% (Linux kernel documentation 25%, manual pages
25%), geography 10% (generated sentences: countries, capitals, US states, cities).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from scrying.errors import ConfigError
from scrying.transcoders.corpus_sources import Document, fetch_source

logger = logging.getLogger(__name__)

#: Share of the training mix's characters per source.
PROPORTIONS: dict[str, float] = {"bible": 0.15, "comment": 0.25, "linux-doc": 0.25, "manpages": 0.25, "facts": 0.10}
VERSION = 1  # of the cleaning and mixing: part of the cache directory's name


@dataclass(frozen=True, kw_only=True)
class CorpusMixConfig:
    """How to mix (defaults: the documented mix)."""

    proportions: dict[str, float] = field(default_factory=lambda: dict(PROPORTIONS))
    heldout_fraction: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.proportions or any(p <= 0 for p in self.proportions.values()):
            raise ConfigError(f"CorpusMixConfig.proportions must be positive shares, got {self.proportions}")
        if abs(sum(self.proportions.values()) - 1) > 1e-6:
            raise ConfigError(f"CorpusMixConfig.proportions must sum to 1, got {sum(self.proportions.values())}")
        if not 0 < self.heldout_fraction < 0.5:
            raise ConfigError(f"CorpusMixConfig.heldout_fraction must be in (0, 0.5), got {self.heldout_fraction}")


@dataclass(frozen=True)
class MixedCorpus:
    """The files of a built mix."""

    train: Path
    heldout: Path
    manifest: Path


def _chars(doc: Document) -> int:
    return sum(len(p) + 1 for p in doc)


def split_documents(docs: list[Document], fraction: float, rng: random.Random) -> tuple[list[Document], list[Document]]:
    """Phase 2: (train, held out) of one source, by whole documents in a seeded order."""
    order = list(range(len(docs)))
    rng.shuffle(order)
    target = fraction * sum(_chars(d) for d in docs)
    held, size = [], 0
    for i in order:
        if held and size >= target:
            break
        held.append(i)
        size += _chars(docs[i])
    chosen = set(held)
    return [docs[i] for i in order if i not in chosen], [docs[i] for i in held]


def mix_documents(sources: dict[str, list[Document]], config: CorpusMixConfig) -> tuple[list[Document], list[Document], dict]:
    """Phases 2-4 without files: (training documents, held-out documents, manifest)."""
    missing = sorted(set(config.proportions) - set(sources))
    if missing:
        raise ConfigError(f"the mix asks for sources {missing} that were not given (given: {sorted(sources)})")
    train_by, held = {}, []
    for name in config.proportions:  # a generator per source: adding a source changes no other
        rng = random.Random(f"{config.seed}:{name}")
        train_by[name], h = split_documents(sources[name], config.heldout_fraction, rng)
        held += h
    available = {name: sum(_chars(d) for d in docs) for name, docs in train_by.items()}
    total = min(available[n] / p for n, p in config.proportions.items())
    chosen: list[Document] = []
    used = {}
    for name, share in config.proportions.items():
        budget, size = share * total, 0
        for doc in train_by[name]:
            if size >= budget:
                break
            chosen.append(doc)
            size += _chars(doc)
        used[name] = size
    rng = random.Random(f"{config.seed}:mix")
    rng.shuffle(chosen)
    manifest = {
        "version": VERSION, **asdict(config),
        "train_chars": used, "train_share": {n: round(c / sum(used.values()), 4) for n, c in used.items()},
        "available_chars": available, "heldout_documents": len(held), "train_documents": len(chosen),
    }
    return chosen, held, manifest


def build_mixed_corpus(cache_dir: Path, config: CorpusMixConfig | None = None, *,
                       fetch: Callable[[str], list[Document]] = fetch_source) -> MixedCorpus:
    """Build (once) and return the mix in ``cache_dir/corpus/mix-v<VERSION>-seed<seed>-<hash>``;
    ``fetch(name)`` gives a source's documents (tests pass their own)."""
    config = config or CorpusMixConfig()
    key = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()[:8]
    out = cache_dir / "corpus" / f"mix-v{VERSION}-seed{config.seed}-{key}"
    files = MixedCorpus(out / "train.txt", out / "heldout.txt", out / "manifest.json")
    if files.manifest.is_file():
        return files
    sources = {name: _cached_source(cache_dir, name, fetch) for name in config.proportions}
    chosen, held, manifest = mix_documents(sources, config)
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(files.train, "".join(p + "\n" for d in chosen for p in d))
    _write_atomic(files.heldout, "".join(p + "\n" for d in held for p in d))
    _write_atomic(files.manifest, json.dumps(manifest, indent=1) + "\n")  # last: marks the build complete
    logger.info("mixed corpus: %s characters by source in %s", manifest["train_chars"], out)
    return files


def _cached_source(cache_dir: Path, name: str, fetch: Callable[[str], list[Document]]) -> list[Document]:
    path = cache_dir / "corpus" / "sources" / f"{name}-v{VERSION}.jsonl"
    if not path.is_file():
        docs = fetch(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # one per process: two builds never share it
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
