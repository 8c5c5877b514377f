"""Reads a compacted topic of per-partition books (``chs.peers``, ``chs.audit``) whole, from the
start, with a consumer of no group: every worker holds every partition's latest books."""

from __future__ import annotations

from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from streams.settings import Settings
from streams.worker.connections import kafka_options

FETCH_MAX_WAIT_MS = 5_000
"""Books change once per ship interval: a slow fetch costs the broker least."""


class BookReader:
    """Hands every record of ``topic`` (one partition) to ``take``, until cancelled."""

    def __init__(
        self, settings: Settings, topic: str, take: Callable[[ConsumerRecord[bytes, bytes]], None]
    ) -> None:
        self._settings = settings
        self._topic = topic
        self._take = take

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            **kafka_options(self._settings),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        try:
            await consumer.start()
            consumer.assign([TopicPartition(self._topic, 0)])
            await consumer.seek_to_beginning()
            while True:
                fetched = await consumer.getmany(timeout_ms=FETCH_MAX_WAIT_MS + 1_000)
                for records in fetched.values():
                    for record in records:
                        self._take(record)
        finally:
            await consumer.stop()
