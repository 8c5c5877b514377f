"""The ceiling: a raw aiokafka consumer reading and parsing the workload, nothing else."""

from __future__ import annotations

import json
import time

from aiokafka import AIOKafkaConsumer

from streams.settings import Settings
from streams.worker.connections import kafka_options


async def raw_consumer_rate(settings: Settings, expected: int) -> float:
    """Events per second to read and ``json.loads`` ``expected`` events from the topics."""
    consumer = AIOKafkaConsumer(
        *settings.event_topics,
        **kafka_options(settings),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        seen = 0
        began = time.monotonic()
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                for record in records:
                    json.loads(record.value or b"")
                seen += len(records)
        return seen / (time.monotonic() - began)
    finally:
        await consumer.stop()
