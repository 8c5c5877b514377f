"""The worker's clocks. Scoring takes time as a parameter; these decide what "now" is.

- ``WallClock`` (default, ``CHS_CLOCK=wall``): now is the wall clock. Live production.
- ``EventClock`` (``CHS_CLOCK=event``): now is the newest event time this worker has seen, so
  replaying history gives the same scores (and decay) as living through it, at any speed.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """The scoring time, POSIX seconds."""

    def wall(self) -> float:
        """Real time, for future-timestamp checks and ``computed_at``."""

    def observe(self, event_time: float) -> None:
        """Called with the event time of every valid event."""


class WallClock:
    def now(self) -> float:
        return time.time()

    def wall(self) -> float:
        return time.time()

    def observe(self, event_time: float) -> None:
        del event_time  # wall time moves by itself


class EventClock:
    def __init__(self) -> None:
        self._newest = 0.0

    def now(self) -> float:
        return self._newest

    def wall(self) -> float:
        return time.time()

    def observe(self, event_time: float) -> None:
        self._newest = max(self._newest, event_time)


def clock_for(kind: str) -> Clock:
    return EventClock() if kind == "event" else WallClock()
