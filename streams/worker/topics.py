"""Create the project's topics (``Settings.topics``) up front, and measure a group's lag.

Every topic but the books is co-partitioned (the configured partition count, keyed by
account_id) so that one worker owns all of an account's inputs and its table partition.
Faust creates only its own changelog topics.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError

from streams.settings import Settings
from streams.wire import TopicSpec
from streams.worker.connections import kafka_options

log = logging.getLogger(__name__)


def new_topic(settings: Settings, topic: TopicSpec) -> NewTopic:
    return NewTopic(
        name=topic.name,
        num_partitions=topic.partitions(settings.topic_partitions),
        replication_factor=settings.topic_replication,
        topic_configs={"cleanup.policy": "compact"} if topic.compacted else {},
    )


async def ensure_topics(settings: Settings, connect_timeout: float = 30.0) -> list[str]:
    """Create the missing project topics; return the names created."""
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    deadline = asyncio.get_running_loop().time() + connect_timeout
    while True:
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
    try:
        existing = set(await admin.list_topics())
        missing = [topic for topic in settings.topics if topic.name not in existing]
        if missing:
            await admin.create_topics([new_topic(settings, topic) for topic in missing])
            log.info("Created topics %s", ", ".join(topic.name for topic in missing))
        return [topic.name for topic in missing]
    finally:
        await admin.close()


async def group_lag(settings: Settings, topics: list[str]) -> int:
    """Messages in ``topics`` not yet committed by the workers' consumer group."""
    consumer = AIOKafkaConsumer(
        **kafka_options(settings),
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
