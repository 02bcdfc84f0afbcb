"""The Ray executor of :mod:`scrying.batch.pool`: one actor per worker, each holding the model.

``ray`` is imported when a :class:`RayPool` is made (so the module reads, and its doctests
collect, without the extra installed). Phases of :class:`RayPool`:

1. **Connect**: join the cluster ``RayConfig.address`` names, or start a local one; count the
   workers its CPUs (or GPUs) fit, and refuse more than it has.
2. **Load**: one :class:`BatchWorker` actor per worker, spread over the nodes, each with its CPUs,
   GPUs and memory reserved and its torch threads set; each loads the model once and reports
   its weights' fingerprint, which must agree across workers.
3. **Stream**: items go to the workers as they free up (``in_flight`` queued per worker, and at
   most a window of items ahead of the oldest unfinished one); results come back as they finish
   and are yielded in item order. A worker process that dies is restarted by Ray
   (``max_restarts``; the model reloads) and the items it held are rerun
   (``max_task_retries``), so each item's result reaches the driver once. An item's own error
   (bad input) is raised as it is, not retried.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections import deque
from collections.abc import Hashable, Iterator, Sequence
from functools import cache
from typing import Any

from tqdm.auto import tqdm

from scrying.batch.cluster import RayConfig
from scrying.batch.pool import Item, Pool, PoolStats, Work, check_fingerprint
from scrying.errors import ClusterError, ScryingError

logger = logging.getLogger(__name__)

#: Seconds a worker may take to start and load its model before the run is given up.
START_TIMEOUT_S = 1800.0


class BatchWorker:
    """One worker: loads the model once (again after a restart), then runs items on it."""

    def __init__(self, work: Work, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.where = f"{socket.gethostname()}:{os.getpid()}"
        self.work = work
        start = time.perf_counter()
        self.error: BaseException | None = None
        try:
            self.state = work.load()
            self.fingerprint = work.fingerprint(self.state)
        except Exception as err:  # raised again by every call: an application error, not a crash
            self.error = err
        self.load_seconds = time.perf_counter() - start

    def hello(self) -> tuple[str, str, float]:
        """``(fingerprint, host:pid, model-load seconds)``."""
        if self.error is not None:
            raise self.error
        return self.fingerprint, self.where, self.load_seconds

    def run(self, payload: Any, expected: str) -> tuple[Any, float, str, float]:
        """``(result, seconds, host:pid, model-load seconds)`` of one item, on the batch's
        weights only."""
        if self.error is not None:
            raise self.error
        check_fingerprint(self.where, self.work.model, self.fingerprint, expected)
        start = time.perf_counter()
        result = self.work.run(self.state, payload)
        return result, time.perf_counter() - start, self.where, self.load_seconds


@cache
def remote_worker() -> Any:
    """The actor class (the plain class stays type-checkable)."""
    import ray

    return ray.remote(BatchWorker)


def _unwrap(err: Any) -> BaseException:
    """The error an item raised on its worker, as scrying raised it (its first line the message)."""
    cause = err.cause
    return cause if isinstance(cause, ScryingError | OSError) else ClusterError(f"a worker failed: {cause!r}")


class RayPool(Pool):
    """The workers of one batch on a Ray cluster (see the module docstring)."""

    def __init__(self, work: Work, config: RayConfig):
        self.work, self.config = work, config
        self.stats = PoolStats()
        self._owned = self._connect()
        self.actors: list[Any] = []
        try:
            self.actors = [self._start() for _ in range(self._count())]
            self.identity = {"model": work.model, "model_fingerprint": self._hello()}
        except BaseException:
            self.close()
            raise

    # -- phase 1
    def _connect(self) -> bool:
        import ray

        if ray.is_initialized():
            return False
        config = self.config
        try:
            if config.address is None:
                cpus = os.cpu_count() or 1
                if config.workers is not None:
                    cpus = max(cpus, math.ceil(config.workers * config.cpus))
                ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=config.address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise ClusterError(f"cannot join the Ray cluster at {config.address!r}: {err}") from err
        return True

    def _count(self) -> int:
        import ray

        config = self.config
        resources = ray.cluster_resources()
        kind, need = ("GPU", config.gpus) if config.gpus > 0 else ("CPU", config.cpus)
        have = float(resources.get(kind, 0.0))
        fit = int(have // need + 1e-9)
        if fit < 1 or (config.workers is not None and config.workers > fit):
            asked = config.workers or 1
            raise ClusterError(
                f"{asked} worker(s) of {need:g} {kind} each do not fit the Ray cluster's {have:g} {kind}; "
                "ask for fewer workers or fewer resources per worker"
            )
        return config.workers or fit

    # -- phase 2
    def _start(self) -> Any:
        config = self.config
        options: dict[str, Any] = {
            "num_cpus": config.cpus, "num_gpus": config.gpus, "scheduling_strategy": "SPREAD",
            "max_restarts": config.max_restarts, "max_task_retries": config.max_restarts,
        }
        if config.memory_gb is not None:
            options["memory"] = int(config.memory_gb * 2**30)
        return remote_worker().options(**options).remote(self.work, config.torch_threads)

    def _hello(self) -> str:
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

        try:
            answers = ray.get([a.hello.remote() for a in self.actors], timeout=START_TIMEOUT_S)
        except RayTaskError as err:
            raise _unwrap(err) from None
        except GetTimeoutError as err:
            raise ClusterError(f"the workers did not load {self.work.model} within {START_TIMEOUT_S:.0f} s") from err
        except RayActorError as err:
            raise ClusterError(f"a worker died while loading {self.work.model}: {err}") from err
        first = answers[0][0]
        for fingerprint, where, load_seconds in answers:
            check_fingerprint(where, self.work.model, fingerprint, first)
            self.stats.worker(where).load_seconds = load_seconds
        logger.info("%d Ray worker(s) loaded %s (fingerprint %s)", len(answers), self.work.model, first)
        return first

    # -- phase 3
    def results(self, items: Sequence[Item], *, progress: bool = True, desc: str = "batch") -> Iterator[tuple[Hashable, Any]]:
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        expected = self.identity["model_fingerprint"]
        window = max(16, 4 * len(self.actors) * self.config.in_flight)
        queue = deque(range(len(items)))
        pending: dict[Any, tuple[int, int]] = {}  # object ref -> (item index, actor index)
        ready: dict[int, Any] = {}
        next_out = 0
        start = time.perf_counter()
        bar = tqdm(total=len(items), desc=desc, disable=not progress or not items)

        def submit(actor: int) -> None:
            if queue and queue[0] - next_out < window:
                i = queue.popleft()
                pending[self.actors[actor].run.remote(items[i][1], expected)] = (i, actor)

        try:
            for _ in range(self.config.in_flight):  # round-robin, so every worker starts at once
                for actor in range(len(self.actors)):
                    submit(actor)
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    i, actor = pending.pop(ref)
                    try:
                        result, seconds, where, load_seconds = ray.get(ref)
                    except RayTaskError as err:
                        raise _unwrap(err) from None
                    except RayActorError as err:
                        raise ClusterError(f"a Ray worker died more than {self.config.max_restarts} time(s) "
                                           f"(RayConfig.max_restarts): {err}") from err
                    worker = self.stats.worker(where)
                    worker.items += 1
                    worker.busy_seconds += seconds
                    worker.load_seconds = load_seconds
                    ready[i] = result
                    bar.update(1)
                while next_out in ready:
                    yield items[next_out][0], ready.pop(next_out)
                    next_out += 1
                for actor in range(len(self.actors)):  # refill every worker up to in_flight
                    held = sum(1 for _, a in pending.values() if a == actor)
                    for _ in range(self.config.in_flight - held):
                        submit(actor)
        finally:
            bar.close()  # items still running are dropped with the workers (close)
            self.stats.wall_seconds += time.perf_counter() - start

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
        if self._owned and ray.is_initialized():
            ray.shutdown()
