"""Reading topics in integration tests with a plain aiokafka consumer (no group)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

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


async def group_lag(settings: Settings, topics: list[str]) -> int:
    """Messages in ``topics`` not yet committed by the worker's group."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=settings.app_id,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, p) for topic in topics for p in range(settings.topic_partitions)
        ]
        ends = await consumer.end_offsets(partitions)
        behind = 0
        for tp in partitions:
            committed: int = await consumer.committed(tp) or 0
            behind += max(0, ends[tp] - committed)
        return behind
    finally:
        await consumer.stop()


async def wait_consumed(settings: Settings, topics: list[str], within: float = 60.0) -> None:
    """Wait until the worker's group has committed everything produced so far to ``topics``."""
    lag = -1
    try:
        async with asyncio.timeout(within):
            while (lag := await group_lag(settings, topics)) > 0:  # noqa: ASYNC110
                await asyncio.sleep(0.5)
    except TimeoutError:
        raise AssertionError(f"worker group {settings.app_id} still {lag} behind") from None
