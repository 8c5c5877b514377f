"""The worker's product events in event-time order across their topic-partitions, for scoring
on event time (``CHS_CLOCK=event``: replays, backfills).

The consumer reads topic-partitions unevenly: replaying 60 days on the dev broker, a
partition's feature uses ran up to 20 days ahead of its logins, and one partition days ahead
of another. An account scored at the leading topic's time, before the lagging topic's
events of the days between were folded, kept closing scores those days never had; and an
account of a partition read ahead ranked against peers of its own partition only (the
others had not reached its day), so the steady accounts of two partitions closed a day at
79.5 and 83.2 where one reader gives them all the same score. The live audit judged both
(docs/audit.md). As Kafka Streams aligns a task's partitions by stream time, an event is held
here while another product topic-partition of this worker, with records still to read, has
been read only to an earlier time; held events go on oldest first, each topic-partition's in
offset order (the state's offset fence turns away a lower offset after a higher one).

An event waits at most ``wait_seconds`` (wall time) for a lagging topic-partition, and at
most ``max_held`` events are held: past either, the oldest go on in order anyway.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Generic, TypeVar

from streams.pipeline.window_step import InputMessage

M = TypeVar("M", bound=InputMessage)
Source = tuple[str, int]
"""(topic, partition)."""


def event_time(value: bytes | None) -> float | None:
    """An event's ``occurred_at`` as POSIX seconds; None when it has none that reads (the
    message goes on at once, to be rejected by the validation)."""
    try:
        at = json.loads(value or b"")["occurred_at"]
        moment = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


class EventOrder(Generic[M]):
    def __init__(
        self,
        topics: Iterable[str],
        partitions: Callable[[], Iterable[int]],
        waiting: Callable[[str, int], int | None],
        wall: Callable[[], float],
        wait_seconds: float = 10.0,
        max_held: int = 50_000,
    ) -> None:
        """``topics``: the product event topics (any other message goes on at once);
        ``partitions()``: the partitions this worker reads; ``waiting(topic, partition)``:
        records of it not handed on yet, as of its last fetch (None: not known yet, taken
        as some)."""
        self.topics = tuple(topics)
        self._partitions = partitions
        self._waiting = waiting
        self._wall = wall
        self.wait_seconds = wait_seconds
        self.max_held = max_held
        self._queues: dict[Source, deque[tuple[float, float, M]]] = {}
        """(event time, wall time held, message) per topic-partition, in offset order."""
        self._read_to: dict[Source, float] = {}
        """Newest event time handed on from each topic-partition."""
        self.held = 0

    def add(self, messages: Iterable[M]) -> list[M]:
        """Take ``messages`` (in the order read); what may be scored now, in order."""
        ready: list[M] = []
        now = self._wall()
        for message in messages:
            at = event_time(message.value) if message.topic in self.topics else None
            if at is None:
                ready.append(message)
                continue
            source = (message.topic, message.partition)
            self._queues.setdefault(source, deque()).append((at, now, message))
            self.held += 1
        return ready + self.release()

    def release(self) -> list[M]:
        """Held events that may go on now, oldest first."""
        now = self._wall()
        released: list[M] = []
        while self._queues:
            at, source = min((queue[0][0], source) for source, queue in self._queues.items())
            queue = self._queues[source]
            waited = now - queue[0][1]
            if self.held <= self.max_held and waited < self.wait_seconds and self._lagging(at):
                break
            released.append(queue.popleft()[2])
            self.held -= 1
            self._read_to[source] = max(self._read_to.get(source, at), at)
            if not queue:
                del self._queues[source]
        return released

    def _lagging(self, at: float) -> bool:
        """Whether a topic-partition this worker reads, none of whose records is held, has
        records still to read and was read only to before ``at``."""
        for partition in self._partitions():
            for topic in self.topics:
                source = (topic, partition)
                if source in self._queues or self._read_to.get(source, -math.inf) >= at:
                    continue
                waiting = self._waiting(topic, partition)
                if waiting is None or waiting > 0:
                    return True
        return False
