"""A probe's pairs scored on Ray workers (``scrying reversal --pairs ... --ray``).

The pairs the results file has not finished are cut into the chunks the in-process probe forms
(``ReversalConfig.chunk_pairs``, :func:`~scrying.reversal.pair_scoring.score_pairs`), one item
per chunk; each worker loads the model once and scores chunks with
:func:`~scrying.reversal.pair_scoring.score_chunk` (so the same batches, the same floats where
the torch thread count is the same; distractors are seeded per pair, wherever it is scored).
The workers' weights must be the ones in the results file's header; this process appends each
pair's record in pair order, so a killed probe resumes with the pairs not yet written.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from scrying.axes import Model
from scrying.batch import PoolStats, RayConfig, log_throughput, open_pool
from scrying.batch.pool import check_fingerprint
from scrying.continuations import non_text_tokens
from scrying.journal import Journal, Record, model_fingerprint
from scrying.models import LoadConfig, load_model
from scrying.reversal.pair_scoring import ModelScorer, ReversalConfig, check_inputs, score_chunk
from scrying.reversal.pairs import Pair
from scrying.reversal.records import PairRecord

_State = tuple[Model, ModelScorer, dict[str, int | None]]


@dataclass(frozen=True)
class PairWork:
    """The work of one probe, sent to every worker: the model, every pair (distractors are
    drawn from a pair's whole relation) and the scoring settings. An item's payload is a chunk
    of pair indices; its result their records' JSON."""

    model: str
    load_config: LoadConfig
    pairs: tuple[Pair, ...]
    config: ReversalConfig

    def load(self) -> _State:
        model = load_model(self.model, self.load_config)
        scorer = ModelScorer(model, self.config.batch_size, banned=non_text_tokens(model))
        return model, scorer, check_inputs(scorer, list(self.pairs), self.config).k

    def fingerprint(self, state: _State) -> str:
        return model_fingerprint(state[0])

    def run(self, state: _State, chunk: tuple[int, ...]) -> list[Record]:
        _, scorer, ks = state
        return [r.to_json() for r in score_chunk(scorer, list(self.pairs), list(chunk), self.config, ks)]


def sharded_probe(
    pairs: list[Pair],
    config: ReversalConfig,
    journal: Journal,
    chosen: list[int],
    load: LoadConfig,
    ray: RayConfig,
) -> tuple[list[PairRecord], PoolStats]:
    """:func:`~scrying.reversal.probe.run_probe` with the chunks scored on the Ray cluster
    ``ray``: every chosen pair's record, in order, and the workers' throughput."""
    journal.resume_note(len(chosen), "pairs")
    wanted = set(chosen) - set(journal.done)
    todo = [i for i in range(len(pairs)) if i in wanted]
    chunks = [tuple(todo[s : s + config.chunk_pairs]) for s in range(0, len(todo), config.chunk_pairs)]
    spec = str(journal.settings["model"])
    with open_pool(PairWork(spec, load, tuple(pairs), replace(config, progress=False)), ray) as pool:
        check_fingerprint("(the Ray workers)", spec, pool.identity["model_fingerprint"],
                          str(journal.settings["model_fingerprint"]))
        for _, rows in pool.results([(c[0], c) for c in chunks], progress=config.progress, desc="pairs"):
            for row in rows:
                journal.append(row)
        log_throughput(pool.stats, "chunks")
    return [PairRecord.from_json(journal.done[i], f"{journal.path.name} record {i}") for i in chosen], pool.stats
