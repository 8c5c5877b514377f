"""Remember which alerts reached Slack, so a restarted agent posts nothing twice.

Ids live in Redis with an expiry (``SET ... EX``). If Redis is unreachable, delivery goes on
(a rare duplicate is better than a lost alert) and the failure is logged and counted.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

DEDUP_ERRORS = Counter(
    "chs_alert_dedup_errors_total", "Redis errors while checking or recording delivered alerts"
)


class DeliveredAlerts:
    """Delivered alert ids of one deployment: ``namespace`` (its app id) keeps two
    deployments that share a Redis from suppressing each other's alerts."""

    def __init__(self, client: aioredis.Redis, ttl_seconds: int, namespace: str) -> None:
        self._client = client
        self._ttl = ttl_seconds
        self._prefix = f"{namespace}:alert-delivered:"

    def _key(self, alert_id: str) -> str:
        return self._prefix + alert_id

    async def seen(self, alert_id: str) -> bool:
        try:
            return bool(await self._client.exists(self._key(alert_id)))
        except (RedisError, OSError) as error:
            DEDUP_ERRORS.inc()
            log.warning("Cannot check alert %s for a duplicate: %s", alert_id, type(error))
            return False

    async def remember(self, alert_id: str) -> None:
        try:
            await self._client.set(self._key(alert_id), b"1", ex=self._ttl)
        except (RedisError, OSError) as error:
            DEDUP_ERRORS.inc()
            log.warning("Cannot record alert %s as delivered: %s", alert_id, type(error))

    async def close(self) -> None:
        await self._client.aclose()
