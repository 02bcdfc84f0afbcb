"""Batch work in this process or on a Ray cluster: one :class:`Work`, two executors
(:func:`open_pool`). Without a :class:`RayConfig` nothing imports ray."""

from scrying.batch.cluster import RayConfig
from scrying.batch.executor import open_pool
from scrying.batch.pool import Item, Pool, PoolStats, Work, WorkerStats, log_throughput

__all__ = ["Item", "Pool", "PoolStats", "RayConfig", "Work", "WorkerStats", "log_throughput", "open_pool"]
