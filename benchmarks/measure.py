"""What the benchmarks measure with, once: peak resident memory during a block, the process's
peak resident memory, and prompts of a given token length.

Standard library only: ``circuit_tracer_side.py`` imports it too, from circuit-tracer's venv.
Each benchmark runs as a script from this folder (``python benchmarks/X.py``), so ``import
measure`` finds this file; no benchmark imports another benchmark.
"""

from __future__ import annotations

import os
import resource
import threading
import time


class PeakSampler:
    """Peak resident memory (bytes) of this process while the block runs, sampled every 5 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self.before = 0
        self._stop = threading.Event()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.005)

    def __enter__(self) -> PeakSampler:
        self.before = self.peak = self.rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def peak_rss_kb() -> int:
    """This process's peak resident memory so far (``ru_maxrss``, kB on Linux; model load included)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


TEXT = (
    "The city of Dallas lies in the north of Texas, on the Trinity River. It grew as a market for "
    "cotton and cattle and later for oil, banks and railways. Austin, the capital of the state, is "
    "about three hours to the south by road. When Mary and John went to the store, John gave a "
    "drink to Mary, who thanked him and walked home along the river. The museum opened a new wing "
    "in the spring, with paintings from Spain, France and the Netherlands, and a hall of old maps "
    "that show how the coast and the rivers were drawn before the railways came. "
)


def prompt_of(tokenizer, n_tokens: int) -> str:  # noqa: ANN001 - any Hugging Face tokenizer
    """A prompt whose tokenization (with BOS) has about ``n_tokens`` tokens, cut from ``TEXT``."""
    text = TEXT * (1 + n_tokens * 6 // len(TEXT) + 1)
    ids = tokenizer.encode(text, add_special_tokens=False)[: n_tokens - 1]
    return tokenizer.decode(ids)
