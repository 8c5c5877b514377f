"""A record the broker refuses stops the worker before its state or input offset is written."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from scoring.events import EventKind
from streams.settings import Settings
from streams.worker.connections import kafka_options
from streams.worker.topics import group_lag
from tests.conftest import isolated, start_worker
from tests.factories import login
from tests.integration.pipeline.test_pipeline import produce, recent
from tests.integration.reference import changelog_states
from tests.integration.waiting import eventually

pytestmark = [pytest.mark.integration]

MAX_SCORE_BYTES = 300
"""The scores topic's ``max.message.bytes`` here: a ScoreUpdate (about 2.7 KB) is refused."""


async def create_small_scores_topic(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    try:
        configs = {"cleanup.policy": "compact", "max.message.bytes": str(MAX_SCORE_BYTES)}
        topic = NewTopic(
            settings.topic_scores,
            settings.topic_partitions,
            settings.topic_replication,
            topic_configs=configs,
        )
        await admin.create_topics([topic])
    finally:
        await admin.close()


async def test_a_score_the_broker_refuses_stops_the_worker_with_nothing_written(
    worker_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated(worker_settings, tmp_path)
    await create_small_scores_topic(settings)
    worker = start_worker(settings, tmp_path / "worker.log")
    account = f"refused-{uuid.uuid4().hex[:6]}"
    try:
        await produce(settings, recent([login(account, days=-d) for d in range(3)]))
        await eventually(lambda: worker.process.poll() is not None, within=90)
        log = (tmp_path / "worker.log").read_text(errors="replace")
        assert "Stopping the worker" in log
        assert "MessageSizeTooLargeError" in log
        # Neither the account's state nor its inputs' offsets were written: a restart
        # (with the topic mended) scores the three logins again.
        assert account not in await changelog_states(settings)
        assert await group_lag(settings, [settings.topic_for(EventKind.LOGIN)]) == 3
    finally:
        worker.stop()
