"""Which Ray cluster a batch runs on, and what each worker may use (:class:`RayConfig`).

``address=None`` starts a local cluster in this process (stopped when the batch ends);
``"auto"`` joins the cluster this machine belongs to (``ray start`` on it, or a KubeRay head
pod); ``"HOST:PORT"`` or ``"ray://HOST:10001"`` joins that one. Nothing here imports ray.
"""

from __future__ import annotations

from dataclasses import dataclass

from scrying.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class RayConfig:
    """A Ray run: the cluster ``address`` (see the module docstring), the number of ``workers``
    (default: as many as the cluster's CPUs, or GPUs when ``gpus > 0``, fit), and per worker its
    ``cpus``, ``gpus``, ``memory_gb`` (reserved, so a node is not oversubscribed) and torch
    ``threads`` (default: its CPUs); ``in_flight`` items queued per worker (one running, the
    rest waiting, so a worker never idles on the driver); ``max_restarts`` of a killed worker
    (each restart reloads the model and reruns the items it held)."""

    address: str | None = None
    workers: int | None = None
    cpus: int | float = 1
    gpus: int | float = 0
    memory_gb: int | float | None = None
    threads: int | None = None
    in_flight: int = 2
    max_restarts: int = 3

    def __post_init__(self) -> None:
        if self.address is not None and (not isinstance(self.address, str) or not self.address.strip()):
            raise ConfigError(f"RayConfig.address must be 'auto', HOST:PORT or ray://HOST:PORT, got {self.address!r}")
        if self.workers is not None and (isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1):
            raise ConfigError(f"RayConfig.workers must be a positive integer or None, got {self.workers!r}")
        for name in ("cpus", "gpus"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e6:
                raise ConfigError(f"RayConfig.{name} must be a number >= 0, got {value!r}")
        if self.cpus == 0 and self.gpus == 0:
            raise ConfigError("RayConfig.cpus and RayConfig.gpus are both 0; a worker needs one or the other")
        if self.memory_gb is not None and (isinstance(self.memory_gb, bool) or not isinstance(self.memory_gb, int | float)
                                           or not 0 < self.memory_gb < 1e6):
            raise ConfigError(f"RayConfig.memory_gb must be a positive number of GiB or None, got {self.memory_gb!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(f"RayConfig.threads must be a positive integer or None, got {self.threads!r}")
        if isinstance(self.in_flight, bool) or not isinstance(self.in_flight, int) or self.in_flight < 1:
            raise ConfigError(f"RayConfig.in_flight must be a positive integer, got {self.in_flight!r}")
        if isinstance(self.max_restarts, bool) or not isinstance(self.max_restarts, int) or self.max_restarts < 0:
            raise ConfigError(f"RayConfig.max_restarts must be an integer >= 0, got {self.max_restarts!r}")

    @property
    def torch_threads(self) -> int:
        """Torch threads per worker: ``threads``, else its CPUs (at least 1)."""
        return self.threads if self.threads is not None else max(1, int(self.cpus))
