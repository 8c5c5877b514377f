"""Reading topics in integration tests with a plain aiokafka consumer (no group)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from streams.settings import Settings

Records = list[ConsumerRecord[bytes, bytes]]


async def read_until(
    settings: Settings,
    topic: str,
    done: Callable[[Records], bool],
    within: float = 60.0,
) -> Records:
    """Read ``topic`` from the start until ``done(records)`` holds, for at most ``within`` s."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: Records = []
    try:
        async with asyncio.timeout(within):
            while not done(records):
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(batch)
    except TimeoutError:
        raise AssertionError(
            f"{topic}: condition not met after {within:.0f}s ({len(records)} records read)"
        ) from None
    finally:
        await consumer.stop()
    return records
