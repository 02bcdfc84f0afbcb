"""A family's members scored on Ray workers (``scrying emergence --ray``): one item per member
(a model size or a training checkpoint), the unit of an emergence study's work.

A worker loads each member it is given, scores every item on it
(:func:`~scrying.emergence.study.score_member`, as in this process) and returns the member's
journal record (its output records and weights fingerprint); :func:`~scrying.emergence.study.run_family`
appends the records in family order, so the journal, ``outputs.jsonl`` and everything after
are those of the in-process run, and a killed study resumes with the members not yet scored.
The members' specs must load on every node (hub names, or paths on a shared filesystem).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from scrying.batch import RayConfig, log_throughput, open_pool
from scrying.emergence.item_scoring import ScoringConfig
from scrying.emergence.study import Member, MemberScorer, score_member
from scrying.emergence.tasks import Item
from scrying.journal import Record
from scrying.models import LoadConfig, load_model

#: A worker of a family holds no model between items: each item is a member of its own.
NO_MODEL = "members"


@dataclass(frozen=True)
class FamilyWork:
    """The work of one family, sent to every worker: the items every member is scored on, how
    members load and how items are scored. An item's payload is a :class:`Member`."""

    items: tuple[Item, ...]
    load_config: LoadConfig
    config: ScoringConfig
    model: str = NO_MODEL

    def load(self) -> None:
        return None

    def fingerprint(self, state: None) -> str:
        return NO_MODEL  # each record carries its member's own

    def run(self, state: None, member: Member) -> Record:
        return score_member(member, list(self.items), lambda spec: load_model(spec, self.load_config), self.config)


def ray_scorer(items: list[Item], load: LoadConfig, config: ScoringConfig, ray: RayConfig) -> MemberScorer:
    """A :data:`~scrying.emergence.study.MemberScorer` that scores members on the Ray cluster
    ``ray`` (workers start when the first member is due; none for a finished study)."""
    work = FamilyWork(tuple(items), load, replace(config, progress=False))

    def scorer(members: list[Member]) -> Iterator[tuple[str, Record]]:
        if not members:
            return
        with open_pool(work, ray) as pool:
            for spec, record in pool.results([(m.model, m) for m in members], progress=config.progress, desc="models"):
                yield str(spec), record
            log_throughput(pool.stats, "models")

    return scorer
