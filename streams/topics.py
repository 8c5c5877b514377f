"""Create the project's topics up front, with the configured partition count.

The five event topics, the scores topic and the dead-letter topic must be co-partitioned
(same partition count, keyed by account_id) so that one worker owns all of an account's
events and its table partition. Faust creates only its own changelog topics.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError

from streams.settings import Settings

log = logging.getLogger(__name__)


def project_topics(settings: Settings) -> list[str]:
    return [
        *settings.input_topics,
        settings.topic_scores,
        settings.topic_dlq,
        settings.topic_alerts,
        settings.topic_alerts_dlq,
    ]


async def ensure_topics(settings: Settings, connect_timeout: float = 30.0) -> list[str]:
    """Create the missing project topics; return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
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
                        num_partitions=settings.topic_partitions,
                        replication_factor=settings.topic_replication,
                        # Attributes are snapshots: only the latest per account matters.
                        topic_configs={"cleanup.policy": "compact"}
                        if name == settings.topic_accounts
                        else {},
                    )
                    for name in missing
                ]
            )
            log.info("Created topics %s", ", ".join(missing))
        return missing
    finally:
        await admin.close()
