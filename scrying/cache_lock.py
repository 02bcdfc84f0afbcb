"""One process at a time fills a cache entry.

Entries of the cache (a converted model, a trained toy) are published atomically, but two
processes that both find one missing would both build it, and the second would replace the first's
while it is being read: parallel test workers (``make test``), Ray workers or two notebooks on
one machine. :func:`entry_lock` is the lock file beside an entry (``filelock``, an OS lock that a
killed process releases); a builder takes it, looks again, and builds only if the entry is still
missing.
"""

from __future__ import annotations

from pathlib import Path

from filelock import FileLock


def entry_lock(entry: Path) -> FileLock:
    """The lock of the cache entry ``entry`` (a file or folder): ``<entry>.lock`` beside it."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(entry.with_name(entry.name + ".lock")))
