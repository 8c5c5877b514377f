"""What the worker does when partitions change hands: forget what it no longer owns, and
schedule the accounts it now owns and rebuild their audit books."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Protocol

from scoring.audit import Auditor
from scoring.schedule import next_due
from scoring.scoring_model import ScoringModel
from scoring.state import AccountState
from streams.pipeline.clock import Clock
from streams.pipeline.due_schedule import DueSchedule


class PartitionBooks(Protocol):
    """Books kept per owned partition (the live peers, the live audit)."""

    def keep_only(self, partitions: set[int]) -> None: ...


class AuditBooks(PartitionBooks, Protocol):
    def rebuild(self, partition: int, states: Iterable[AccountState], auditor: Auditor) -> None: ...


class Ownership:
    def __init__(
        self,
        schedule: DueSchedule,
        model: ScoringModel,
        clock: Clock,
        auditor: Auditor,
        peers: PartitionBooks,
        audit: AuditBooks,
    ) -> None:
        self.schedule, self.model = schedule, model
        self._clock, self._auditor = clock, auditor
        self._peers, self._audit = peers, audit

    def keep_only(self, partitions: set[int]) -> None:
        """At the start of a rebalance: stop the timer and the books of partitions taken
        away at once, not after the recovery."""
        self.schedule.keep_only(partitions)
        self._peers.keep_only(partitions)
        self._audit.keep_only(partitions)

    def take(self, accounts: Iterable[tuple[bytes, AccountState]], owned: set[int]) -> Counter[str]:
        """After a recovery: schedule the accounts of the partitions now owned, only, and
        rebuild their audit books; the published bands of the accounts held."""
        self.schedule.keep_only(owned)
        bands: Counter[str] = Counter()
        states: dict[int, list[AccountState]] = {partition: [] for partition in owned}
        for key, state in accounts:
            if state.partition not in owned:
                continue
            states[state.partition].append(state)
            if state.churned_day is not None:
                self.schedule.set(state.partition, key, self._auditor.settle_due(state))
                continue
            now = self._clock.now(state.partition)
            self.schedule.set(state.partition, key, next_due(state, self.model, now))
            if state.published is not None:
                bands[state.published.band] += 1
        for partition, held in states.items():
            self._audit.rebuild(partition, held, self._auditor)
        return bands
