"""The one loop of the worker's plain aiokafka consumers (the Redis view, alert delivery, the
peer and audit books) and of ``chs watch``: fetch, hand the round to a sink, commit what the
sink says it handled, until cancelled.

A consumer in a group commits only offsets of partitions it still owns: a partition a
rebalance moved is read again by its new owner from the last commit, so every sink must
tolerate a record twice. A sink that cannot take more yet (Redis away) holds the loop: the
consumer pauses but keeps polling, so the group does not take it for dead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from streams.settings import Settings
from streams.worker.connections import kafka_options

log = logging.getLogger(__name__)

HOLD_SECONDS = 1.0
"""Wait before handing a held sink the next (empty) round."""

Fetched = Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]]
"""What one fetch returns: each partition's records."""


class GroupMember(Protocol):
    """What a round needs of its consumer (an ``AIOKafkaConsumer``)."""

    def assignment(self) -> set[TopicPartition]: ...
    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None: ...


class Round:
    """One fetch as a sink sees it: the records, and the consumer's ownership and commit."""

    def __init__(self, consumer: GroupMember, fetched: Fetched, name: str) -> None:
        self.fetched = fetched
        self._consumer = consumer
        self._name = name

    def owns(self, tp: TopicPartition) -> bool:
        return tp in self._consumer.assignment()

    async def commit(self, positions: Mapping[TopicPartition, int]) -> None:
        """Commit the offsets of partitions still owned (a moved one is re-read elsewhere)."""
        owned = self._consumer.assignment()
        mine = {tp: offset for tp, offset in positions.items() if tp in owned}
        if not mine:
            return
        try:
            await self._consumer.commit(mine)
        except (IllegalStateError, CommitFailedError):
            log.info("%s: partitions moved to another worker during a commit", self._name)


Sink = Callable[[Round], Awaitable[bool]]
"""Handles one round; False holds the loop (nothing more is read until it says True)."""


class ConsumerLoop:
    """One consumer of ``topics``: of the group ``group`` committing what its sink handled, or
    of no group reading every partition from the start (``group=None``)."""

    def __init__(
        self,
        settings: Settings,
        name: str,
        topics: Sequence[str],
        group: str | None = None,
        listener: ConsumerRebalanceListener | None = None,
        max_records: int | None = None,
        poll_seconds: float = 1.0,
        make_consumer: Callable[..., AIOKafkaConsumer] = AIOKafkaConsumer,
        **options: Any,
    ) -> None:
        self.name = name
        self._topics = list(topics)
        self._group = group
        self._listener = listener
        self._max_records = max_records
        self._poll_ms = round(poll_seconds * 1000)
        self._make_consumer = make_consumer
        grouped = (
            {
                "session_timeout_ms": int(settings.broker_session_timeout * 1000),
                "heartbeat_interval_ms": int(settings.broker_heartbeat_interval * 1000),
            }
            if group is not None
            else {}
        )
        self._options = {
            **kafka_options(settings),
            "group_id": group,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            **grouped,
            **options,
        }

    async def run(self, sink: Sink) -> None:
        consumer = self._make_consumer(**self._options)
        try:
            # Without a group, every partition of the topics, from the start.
            consumer.subscribe(self._topics, listener=self._listener)
            await consumer.start()  # inside: a broker it cannot reach still closes the client
            while True:
                fetched = await consumer.getmany(
                    timeout_ms=self._poll_ms, max_records=self._max_records
                )
                if await sink(Round(consumer, fetched, self.name)):
                    consumer.resume(*consumer.paused())
                else:
                    consumer.pause(*consumer.assignment())
                    await asyncio.sleep(HOLD_SECONDS)
        finally:
            await consumer.stop()


def each_record(
    take: Callable[[ConsumerRecord[bytes, bytes]], None],
    after: Callable[[], None] | None = None,
) -> Sink:
    """A sink handing every record to ``take`` in turn (then calling ``after`` once a round)."""

    async def sink(received: Round) -> bool:
        for records in received.fetched.values():
            for record in records:
                take(record)
        if after is not None:
            after()
        return True

    return sink
