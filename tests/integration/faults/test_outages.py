"""Outages: Redis down while events flow."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from streams.ops.devstack import free_port, start_redis
from streams.settings import Settings
from tests.conftest import isolated, start_worker
from tests.factories import login
from tests.integration.kafka import Records, read_until
from tests.integration.pipeline.test_pipeline import latest_updates, produce, recent
from tests.integration.serving.test_operations import get, metric_url, samples
from tests.integration.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

OUTAGE_SECONDS = 20


async def test_redis_down_scoring_goes_on_and_the_view_catches_up(
    worker_settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    redis = start_redis(port, tmp_path / "redis.log")
    url = f"redis://127.0.0.1:{port}/0"
    settings = isolated(worker_settings, tmp_path, redis_url=SecretStr(url))
    worker = start_worker(settings, tmp_path / "worker.log")
    run = uuid.uuid4().hex[:6]
    before, during = f"before-{run}", f"during-{run}"
    try:
        await produce(settings, recent([login(before, days=-d) for d in range(3)]))
        await read_until(
            settings, settings.topic_scores, lambda r: before in latest_updates(r, {before})
        )
        await asyncio.to_thread(redis.kill)  # Redis gone, as a crash would take it
        events = recent([login(during, days=-d) for d in range(4)])
        await produce(settings, events)
        last = events[-1].event_id

        def scored(records: Records) -> bool:
            # The update of the last event: the four may be scored in more than one batch.
            update = latest_updates(records, {during}).get(during)
            return update is not None and update.event_id == last

        # Scoring goes on: the update reaches the scores topic with Redis down.
        records = await read_until(settings, settings.topic_scores, scored)
        expected = latest_updates(records, {during})[during].score

        def failed_writes() -> float:
            text = get(metric_url(settings))[1].decode()
            return samples(text).get(("chs_redis_write_errors_total", ()), 0.0)

        await eventually(lambda: failed_writes() > 0, within=30)
        await asyncio.sleep(OUTAGE_SECONDS)
        redis = await asyncio.to_thread(start_redis, port, tmp_path / "redis-2.log")
        client = aioredis.Redis.from_url(url, decode_responses=True)
        try:
            async with asyncio.timeout(30):
                while (await client.hget(f"chs:account:{during}", "score")) != str(expected):  # noqa: ASYNC110
                    await asyncio.sleep(0.5)
        finally:
            await client.aclose()
    finally:
        worker.stop()
        redis.stop()
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert "Redis view write of" in log  # the outage was logged...
    assert url not in log  # ...without the URL
