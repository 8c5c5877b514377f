"""The broker unreachable for 30 s: the worker reconnects and goes on, losing no event.

A dedicated Tansu sits behind a TCP proxy (clients are told to connect to the proxy), so the
test can cut every connection for 30 s without losing the broker's in-memory data.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from streams.ops.devstack import ManagedProcess, free_port
from streams.ops.local_broker import start_broker
from streams.settings import Settings
from tests.conftest import TEST_BROKER, TEST_PARTITIONS, isolated, start_worker
from tests.factories import feature, login
from tests.integration.kafka import wait_consumed
from tests.integration.pipeline.test_pipeline import produce, recent
from tests.integration.reference import assert_matches_reference, changelog_states, reference
from tests.tcp_proxy import CuttableProxy

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

OUTAGE_SECONDS = 30


@pytest.fixture
async def proxied_broker(tmp_path: Path) -> AsyncIterator[tuple[CuttableProxy, ManagedProcess]]:
    port = free_port()
    proxy = CuttableProxy(port)
    broker = start_behind(proxy, port, tmp_path)
    await proxy.start()
    try:
        yield proxy, broker
    finally:
        await proxy.stop()
        broker.stop()


def start_behind(proxy: CuttableProxy, port: int, tmp_path: Path) -> ManagedProcess:
    """A broker of its own (the session's advertises its own port, not the proxy's)."""
    log, data = tmp_path / f"{TEST_BROKER.value}.log", tmp_path / "broker-data"
    return start_broker(TEST_BROKER, port, log, data, proxy.port, TEST_PARTITIONS)


async def test_worker_survives_a_30s_broker_outage_without_losing_events(
    worker_settings: Settings,
    tmp_path: Path,
    proxied_broker: tuple[CuttableProxy, ManagedProcess],
) -> None:
    proxy, _ = proxied_broker
    settings = isolated(
        worker_settings, tmp_path, broker_url=f"kafka://127.0.0.1:{proxy.port}", clock="event"
    )
    run = uuid.uuid4().hex[:6]
    before = recent([login(f"a-{run}-{i % 20}", days=-(i % 10), user=f"u{i}") for i in range(300)])
    after = recent(
        [feature(f"a-{run}-{i % 20}", days=-(i % 5), name=f"f{i % 4}") for i in range(300)]
    )
    event_topics = list(settings.event_topics)
    # The proxy runs on this event loop: process control must not block it.
    worker = await asyncio.to_thread(start_worker, settings, tmp_path / "worker.log")
    try:
        await produce(settings, before)
        await wait_consumed(settings, event_topics, within=120)
        await proxy.cut()
        await asyncio.sleep(OUTAGE_SECONDS)
        await proxy.restore()
        await produce(settings, after)
        await wait_consumed(settings, event_topics, within=180)
        assert worker.process.poll() is None, "the worker died during the outage"
        actual = await changelog_states(settings)
    finally:
        await asyncio.to_thread(worker.stop)
    assert_matches_reference(actual, reference([*before, *after]), len(before) + len(after))
