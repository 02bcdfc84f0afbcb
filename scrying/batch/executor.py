"""Where a batch runs: :func:`open_pool` gives the in-process pool, or the Ray pool when a
:class:`~scrying.batch.cluster.RayConfig` is given (only then is ``ray`` imported)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from scrying.batch.cluster import RayConfig
from scrying.batch.pool import LocalPool, PayloadT, Pool, ResultT, StateT, Work


@contextmanager
def open_pool(work: Work[StateT, PayloadT, ResultT], ray: RayConfig | None = None) -> Iterator[Pool[StateT, PayloadT, ResultT]]:
    """A pool for ``work``: in this process (``ray=None``) or on the Ray cluster ``ray`` names;
    its workers are released on exit."""
    if ray is None:
        yield LocalPool(work)
        return
    from scrying.batch.ray_pool import RayPool  # imports ray: only for a cluster run

    pool = RayPool(work, ray)
    try:
        yield pool
    finally:
        pool.close()
