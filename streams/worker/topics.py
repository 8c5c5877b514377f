"""Create the project's topics up front, with the configured partition count.

The five event topics, the scores topic and the dead-letter topic must be co-partitioned
(same partition count, keyed by account_id) so that one worker owns all of an account's
events and its table partition. Faust creates only its own changelog topics.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError

from streams.settings import Settings
from streams.worker.connections import kafka_options

log = logging.getLogger(__name__)


def project_topics(settings: Settings) -> list[str]:
    return [
        *settings.input_topics,
        settings.topic_scores,
        settings.topic_dlq,
        settings.topic_alerts,
        settings.topic_alerts_dlq,
        settings.topic_peers,
        settings.topic_audit,
    ]


def _topic_shape(settings: Settings, name: str) -> tuple[int, dict[str, str]]:
    """Partitions and configs of a project topic."""
    if name in (settings.topic_peers, settings.topic_audit):
        # Books per partition, latest wins; every worker reads them all.
        return 1, {"cleanup.policy": "compact"}
    if name in (settings.topic_accounts, settings.topic_scores):
        # Attributes are snapshots, a score is the latest: only the last per account
        # matters (an erased or churned account's tombstone removes it).
        return settings.topic_partitions, {"cleanup.policy": "compact"}
    return settings.topic_partitions, {}


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
        missing = [name for name in project_topics(settings) if name not in existing]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(
                        name=name,
                        num_partitions=_topic_shape(settings, name)[0],
                        replication_factor=settings.topic_replication,
                        topic_configs=_topic_shape(settings, name)[1],
                    )
                    for name in missing
                ]
            )
            log.info("Created topics %s", ", ".join(missing))
        return missing
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
