"""Compaction on the real broker: the topics that keep the latest value per key are created
compacted (the account table's changelog by Faust, ours by ``chs topics``), and the broker
compacts them: many versions of a key written, segments rolled, fewer read back, the latest
kept. The dev broker does not compact: this runs on Apache Kafka only."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.ops.devstack import ManagedProcess
from streams.settings import Settings
from streams.worker.connections import kafka_options
from streams.worker.topics import ensure_topics
from tests.conftest import isolated
from tests.integration.waiting import until

pytestmark = pytest.mark.integration

VERSIONS = 400


async def cleanup_policies(settings: Settings, names: list[str]) -> dict[str, str]:
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    try:
        resources = [
            ConfigResource(ConfigResourceType.TOPIC, name, {"cleanup.policy": None})
            for name in names
        ]
        [response] = await admin.describe_configs(resources)
    finally:
        await admin.close()
    policies = {}
    for _, _, _, name, entries in response.resources:
        for entry in entries:
            if entry[0] == "cleanup.policy":
                policies[name] = entry[1]
    return policies


async def test_the_latest_value_topics_are_compacted(
    worker: ManagedProcess, worker_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated(worker_settings, tmp_path)
    await ensure_topics(settings)
    changelog = f"{worker_settings.app_id}-accounts-changelog"
    names = [
        settings.topic_peers,
        settings.topic_audit,
        settings.topic_accounts,
        settings.topic_scores,
        changelog,
    ]
    policies: dict[str, str] = {}

    async def described() -> bool:  # a topic just created may not be known everywhere yet
        policies.update(await cleanup_policies(settings, names))
        return set(policies) == set(names)

    await until(described, within=30)
    assert policies == dict.fromkeys(names, "compact")


async def read_all(settings: Settings, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    consumer = AIOKafkaConsumer(
        topic, **kafka_options(settings), auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    records: list[tuple[bytes | None, bytes | None]] = []
    try:
        while batch := await consumer.getmany(timeout_ms=1000):
            for messages in batch.values():
                records.extend((m.key, m.value) for m in messages)
    finally:
        await consumer.stop()
    return records


async def test_the_broker_compacts_what_it_is_given_to_compact(
    worker_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated(worker_settings, tmp_path)
    topic = settings.topic_scores
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    try:
        # Segments roll every 100 ms so that the cleaner may take them at once.
        configs = {
            "cleanup.policy": "compact",
            "segment.ms": "100",
            "min.cleanable.dirty.ratio": "0.01",
            "min.compaction.lag.ms": "0",
        }
        await admin.create_topics([NewTopic(topic, 1, 1, topic_configs=configs)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(**kafka_options(settings))
    await producer.start()
    try:
        for version in range(VERSIONS):
            await producer.send_and_wait(topic, f"v{version}".encode(), key=b"acct")
            if version % 50 == 49:
                await asyncio.sleep(0.2)  # a segment rolls
        await asyncio.sleep(0.2)
        await producer.send_and_wait(topic, b"x", key=b"other")  # rolls the last one

        async def compacted() -> bool:
            records = await read_all(settings, topic)
            return sum(key == b"acct" for key, _ in records) < VERSIONS / 2

        await until(compacted, within=60)
        records = [value for key, value in await read_all(settings, topic) if key == b"acct"]
        assert records[-1] == f"v{VERSIONS - 1}".encode()  # the latest is kept
    finally:
        await producer.stop()
