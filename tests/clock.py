"""A clock the tests move by hand (see ``streams.clock.Clock``)."""

from __future__ import annotations


class ManualClock:
    def __init__(self, now: float) -> None:
        self.current = now

    def now(self) -> float:
        return self.current

    def wall(self) -> float:
        return self.current

    def observe(self, event_time: float) -> None:
        del event_time

    def advance(self, seconds: float) -> None:
        self.current += seconds
