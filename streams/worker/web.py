"""The worker's HTTP endpoints on its web port: /metrics, /healthz, /readyz."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.settings import Settings
from streams.worker.account_table import AccountTable
from streams.worker.connections import redis_client
from streams.worker.faust_overrides import ChsApp

STARTED = time.time()


async def _reachable(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


async def readiness(app: ChsApp, settings: Settings, redis: aioredis.Redis) -> dict[str, Any]:
    """What /readyz reports: every check, and which ones fail."""
    checks = app.ready_checks()
    brokers = []
    for server in settings.bootstrap_servers:
        host, _, port = server.rpartition(":")
        brokers.append(await _reachable(host, int(port)))
    checks["broker_reachable"] = any(brokers)
    try:
        checks["redis_reachable"] = bool(await asyncio.wait_for(redis.ping(), 1.0))
    except Exception:  # any failure means "not reachable"; its text may hold the URL
        checks["redis_reachable"] = False
    failing = [name for name, ok in checks.items() if not ok]
    return {"ready": not failing, "checks": checks, "failing": failing}


def add_web_views(app: ChsApp, settings: Settings, accounts: AccountTable) -> None:
    redis = redis_client(settings, timeout=1)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        # aiohttp wants the charset apart from the content type.
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"alive": True, "uptime_seconds": round(time.time() - STARTED, 1)})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        body = await readiness(app, settings, redis)
        body["accounts_held"] = len(accounts)
        body["partitions"] = {
            "active": sorted(accounts.active_partitions),
            "standby": sorted(accounts.standby_partitions),
        }
        return web.json(body, status=200 if body["ready"] else 503)
