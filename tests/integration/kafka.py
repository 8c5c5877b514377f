"""Reading topics in integration tests with a plain aiokafka consumer (no group)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from streams.settings import Settings
from streams.worker.connections import kafka_options
from streams.worker.topics import group_lag

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
        **kafka_options(settings),
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


async def read_all(settings: Settings, topic: str, quiet_seconds: float = 2.0) -> Records:
    """Every record of ``topic``: read from the start until nothing new came for a while."""
    consumer = AIOKafkaConsumer(
        topic,
        **kafka_options(settings),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: Records = []
    try:
        quiet = 0.0
        while quiet < quiet_seconds:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            quiet = 0.0 if batches else quiet + 0.5
            for batch in batches.values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def wait_consumed(settings: Settings, topics: list[str], within: float = 60.0) -> None:
    """Wait until the worker's group has committed everything produced so far to ``topics``."""
    lag = -1
    try:
        async with asyncio.timeout(within):
            while (lag := await group_lag(settings, topics)) > 0:  # noqa: ASYNC110
                await asyncio.sleep(0.5)
    except TimeoutError:
        raise AssertionError(f"worker group {settings.app_id} still {lag} behind") from None
