"""A clock the tests move by hand (see ``streams.pipeline.clock.Clock``)."""

from __future__ import annotations


class ManualClock:
    def __init__(self, now: float) -> None:
        self.current = now

    def now(self, partition: int | None = None) -> float:
        return self.current

    def wall(self) -> float:
        return self.current

    def observe(self, event_time: float, partition: int | None = None) -> None:
        del event_time, partition

    def backlog(self, topic: str, partition: int, records: int) -> None:
        del topic, partition, records

    def advance(self, seconds: float) -> None:
        self.current += seconds
