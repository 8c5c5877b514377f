"""Delivered alert ids in a real Redis: remembered per deployment, forgotten after the TTL."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from alerts.delivery.dedup import DeliveredAlerts

pytestmark = pytest.mark.integration


async def test_an_alert_delivered_by_one_deployment_is_not_suppressed_in_another(
    redis_url: str,
) -> None:
    alert_id = uuid.uuid4().hex
    production = DeliveredAlerts(aioredis.Redis.from_url(redis_url), 60, "chs")
    staging = DeliveredAlerts(aioredis.Redis.from_url(redis_url), 60, "chs-staging")
    try:
        await production.remember(alert_id)
        assert await production.seen(alert_id)
        assert not await staging.seen(alert_id)
    finally:
        await production.close()
        await staging.close()


async def test_a_delivered_alert_is_forgotten_after_its_ttl(redis_url: str) -> None:
    alert_id = uuid.uuid4().hex
    delivered = DeliveredAlerts(aioredis.Redis.from_url(redis_url), 1, "chs")
    try:
        await delivered.remember(alert_id)
        assert await delivered.seen(alert_id)
        await asyncio.sleep(2.1)
        assert not await delivered.seen(alert_id)
    finally:
        await delivered.close()
