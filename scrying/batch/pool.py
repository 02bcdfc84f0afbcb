"""What a batch's work is (:class:`Work`), what a pool of workers does with it (:class:`Pool`),
and the in-process pool (:class:`LocalPool`); :func:`scrying.batch.executor.open_pool` chooses
between it and the Ray pool.

A batch command's work is a :class:`Work`: a small picklable object (a frozen dataclass) that
loads the model once (:meth:`Work.load`), names its weights (:meth:`Work.fingerprint`) and turns
one item's payload into its result (:meth:`Work.run`).
:func:`~scrying.batch.executor.open_pool` opens a pool of workers for it:

- **in-process** (``ray=None``, the default): the model loads here and the items run one after
  another, as every batch command always ran;
- **Ray** (a :class:`~scrying.batch.cluster.RayConfig`): one actor per worker loads the model
  once (:mod:`scrying.batch.ray_pool`; ``ray`` is imported only then).

Phases of a pooled batch (the caller owns the journal, :mod:`scrying.journal`):

1. **Open**: every worker loads the model; their weight fingerprints must agree, and become the
   pool's :attr:`Pool.identity` (the model part of the journal's settings header, so a journal
   written with other weights is refused by :class:`~scrying.journal.Journal`).
2. **Stream** (:meth:`Pool.results`): the items the journal has not finished are sharded over the
   workers; each result comes back to the driver in item order (the order of the in-process run),
   so the driver, alone, appends each record once. Every call carries the journal's
   fingerprint, so a worker restarted on another node with other weights is refused
   (:class:`~scrying.errors.ModelMismatchError`).
3. **Summarise**: items, model-load and busy seconds per worker (:attr:`Pool.stats`), logged as
   a throughput table by :func:`log_throughput`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from tqdm.auto import tqdm

from scrying.errors import ModelMismatchError

logger = logging.getLogger(__name__)

StateT = TypeVar("StateT")
PayloadT = TypeVar("PayloadT")
ResultT = TypeVar("ResultT")

#: One item of a batch: its journal key and what :meth:`Work.run` needs to do it.
Item = tuple[Hashable, Any]


@runtime_checkable
class Work(Protocol[StateT, PayloadT, ResultT]):
    """A batch's work, sent once to every worker (so: picklable, and small; the model is what
    :meth:`load` builds there)."""

    model: str  # the model spec (the journal's ``model`` setting)

    def load(self) -> StateT:
        """Load the model (and whatever else a worker holds for the whole batch); once per worker."""
        ...

    def fingerprint(self, state: StateT) -> str:
        """The loaded weights' digest (:func:`scrying.journal.model_fingerprint`)."""
        ...

    def run(self, state: StateT, payload: PayloadT) -> ResultT:
        """One item's result (returned to the driver, which writes it)."""
        ...


@dataclass
class WorkerStats:
    """One worker's share: where it ran (``host:pid``, ``in-process``), the seconds its model
    took to load, the items it finished and the seconds it spent on them."""

    worker: str
    load_seconds: float = 0.0
    items: int = 0
    busy_seconds: float = 0.0

    @property
    def items_per_second(self) -> float:
        return self.items / self.busy_seconds if self.busy_seconds > 0 else 0.0


@dataclass
class PoolStats:
    """Every worker's :class:`WorkerStats` and the driver's wall-clock seconds streaming results
    (:meth:`Pool.results`), load excluded."""

    workers: dict[str, WorkerStats] = field(default_factory=dict)
    wall_seconds: float = 0.0

    def worker(self, name: str) -> WorkerStats:
        return self.workers.setdefault(name, WorkerStats(name))

    @property
    def items(self) -> int:
        return sum(w.items for w in self.workers.values())

    @property
    def items_per_second(self) -> float:
        return self.items / self.wall_seconds if self.wall_seconds > 0 else 0.0


def log_throughput(stats: PoolStats, what: str = "items") -> None:
    """One log line per worker (items, items/s while busy, model-load seconds), then the total."""
    for w in sorted(stats.workers.values(), key=lambda w: w.worker):
        logger.info("worker %s: %d %s, %.2f %s/s busy, model loaded in %.1f s",
                    w.worker, w.items, what, w.items_per_second, what, w.load_seconds)
    logger.info("%d %s in %.1f s: %.2f %s/s over %d worker(s)", stats.items, what, stats.wall_seconds,
                stats.items_per_second, what, len(stats.workers))


def check_fingerprint(worker: str, model: str, found: str, expected: str) -> None:
    """Raise :class:`ModelMismatchError` when a worker's weights are not the batch's."""
    if found != expected:
        raise ModelMismatchError(
            f"worker {worker} loaded {model} with weights fingerprint {found}; the batch's journal expects "
            f"{expected} (every node must hold the same copy of the model)"
        )


class Pool(Generic[StateT, PayloadT, ResultT]):
    """Workers holding one loaded model each (see the module docstring)."""

    identity: dict[str, Any]  # {"model": spec, "model_fingerprint": digest}
    stats: PoolStats

    def results(self, items: Sequence[Item], *, progress: bool = True, desc: str = "batch") -> Iterator[tuple[Hashable, ResultT]]:
        raise NotImplementedError


class LocalPool(Pool[StateT, PayloadT, ResultT]):
    """The in-process executor: the model loads here; items run in order, one at a time."""

    def __init__(self, work: Work[StateT, PayloadT, ResultT]):
        start = time.perf_counter()
        self.work = work
        self.state = work.load()
        self.identity = {"model": work.model, "model_fingerprint": work.fingerprint(self.state)}
        self.stats = PoolStats()
        self.stats.worker("in-process").load_seconds = time.perf_counter() - start

    def results(self, items: Sequence[Item], *, progress: bool = True, desc: str = "batch") -> Iterator[tuple[Hashable, ResultT]]:
        me = self.stats.worker("in-process")
        start = time.perf_counter()
        try:
            for key, payload in tqdm(items, desc=desc, disable=not progress or not items):
                began = time.perf_counter()
                result = self.work.run(self.state, payload)
                me.items += 1
                me.busy_seconds += time.perf_counter() - began
                yield key, result
        finally:
            self.stats.wall_seconds += time.perf_counter() - start
