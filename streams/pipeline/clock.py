"""The worker's clocks. Scoring takes time as a parameter; these decide what "now" is.

- ``WallClock`` (default, ``CHS_CLOCK=wall``): now is the wall clock. Live production.
- ``EventClock`` (``CHS_CLOCK=event``): now is the newest event time this worker has seen, so
  replaying history gives the same scores (and decay) as living through it, at any speed.
  A partition still being read is at its own newest event time instead: the consumer reads
  partitions unevenly, and a partition read days behind another must not have its accounts
  scored (nor their closing scores kept) at the other's time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    def now(self, partition: int | None = None) -> float:
        """The scoring time of ``partition``'s accounts (None: of the worker), POSIX seconds."""

    def wall(self) -> float:
        """Real time, for future-timestamp checks and ``computed_at``."""

    def observe(self, event_time: float, partition: int | None = None) -> None:
        """Called with the event time of every valid event, and its partition."""

    def backlog(self, topic: str, partition: int, records: int) -> None:
        """How many records of a topic-partition wait after the last one read (as of the
        consumer's last fetch from it)."""


class WallClock:
    def now(self, partition: int | None = None) -> float:
        return time.time()

    def wall(self) -> float:
        return time.time()

    def observe(self, event_time: float, partition: int | None = None) -> None:
        del event_time, partition  # wall time moves by itself

    def backlog(self, topic: str, partition: int, records: int) -> None:
        del topic, partition, records


FLOWING_SECONDS = 5.0
"""A partition whose last event came less than this long ago (wall time) is still being
read, even when its last fetch said nothing more was waiting (a producer still writing)."""


class EventClock:
    """A partition still being read (records waiting, or an event within ``FLOWING_SECONDS``)
    is at its own newest event time; any other at the newest event time of all, so that time
    passes for silent accounts as the others' events arrive."""

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._newest = 0.0
        self._partitions: dict[int, tuple[float, float]] = {}
        """Partition -> its newest event time, and the wall time that event was seen."""
        self._waiting: dict[tuple[str, int], int] = {}
        """Topic-partitions with records waiting after the last one read."""

    def now(self, partition: int | None = None) -> float:
        seen = self._partitions.get(partition) if partition is not None else None
        if seen is not None and (
            self._wall() - seen[1] < FLOWING_SECONDS
            or any(p == partition for _, p in self._waiting)
        ):
            return seen[0]
        return self._newest

    def wall(self) -> float:
        return self._wall()

    def observe(self, event_time: float, partition: int | None = None) -> None:
        self._newest = max(self._newest, event_time)
        if partition is not None:
            newest = self._partitions.get(partition, (0.0, 0.0))[0]
            self._partitions[partition] = (max(newest, event_time), self._wall())

    def backlog(self, topic: str, partition: int, records: int) -> None:
        if records > 0:
            self._waiting[(topic, partition)] = records
        else:
            self._waiting.pop((topic, partition), None)


def clock_for(kind: str) -> Clock:
    return EventClock() if kind == "event" else WallClock()
