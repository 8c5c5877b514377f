"""Fixtures that start real services on free loopback ports: the broker, redis-server, the
worker.

The broker is Apache Kafka 3.9.0 (``streams.ops.local_kafka``), the release production runs;
``CHS_TEST_BROKER=tansu`` runs the session on the dev broker instead (``make test`` runs the
tests marked ``dev_broker`` on it too). One broker for the whole session. Each service is one
process group, stopped (and killed if it lingers) at the end of the session; their logs are
kept under pytest's temporary directory and printed on failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.ops.devstack import (
    DEV_BROKER_SETTINGS,
    QUICK_FAILOVER,
    ManagedProcess,
    chs_command,
    free_port,
    settings_env,
    start_process,
    start_redis,
    wait_for_port,
)
from streams.ops.local_broker import BrokerKind, describe, start_broker
from streams.settings import Settings
from tests.slack_server import FakeSlack


@pytest.fixture(scope="session")
def service_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("service-logs")


TEST_PARTITIONS = 4
"""Of the test topics; a topic created by a test's first record gets as many, as in
docker-compose.yml."""
TEST_BROKER = BrokerKind(os.environ.get("CHS_TEST_BROKER", BrokerKind.KAFKA.value))


def broker_settings() -> dict[str, Any]:
    """The test workers' client settings: production's but the timeouts; on the dev broker,
    its work-arounds too (docs/dev-broker.md)."""
    if TEST_BROKER is BrokerKind.TANSU:
        return dict(DEV_BROKER_SETTINGS)  # QUICK_FAILOVER included
    return dict(QUICK_FAILOVER)


def pytest_report_header() -> str:
    return f"broker: {describe(TEST_BROKER)} (CHS_TEST_BROKER={TEST_BROKER.value})"


@pytest.fixture(scope="session")
def broker_url(service_logs: Path) -> Iterator[str]:
    port = free_port()
    log = service_logs / f"{TEST_BROKER.value}.log"
    data = service_logs / "broker-data"
    broker = start_broker(TEST_BROKER, port, log, data, partitions=TEST_PARTITIONS)
    try:
        yield f"kafka://127.0.0.1:{port}"
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def redis_url(service_logs: Path) -> Iterator[str]:
    port = free_port()
    redis = start_redis(port, service_logs / "redis.log")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        redis.stop()


@pytest.fixture(scope="session")
def worker_settings(broker_url: str, redis_url: str, service_logs: Path) -> Settings:
    return Settings.model_validate(
        {
            **broker_settings(),
            "app_id": "chs-test",
            "broker_url": broker_url,
            "redis_url": redis_url,
            "web_port": free_port(),
            "data_dir": service_logs / "worker-data",
            "topic_partitions": TEST_PARTITIONS,
        }
    )


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis of the test module's own: the read model's keys (``chs:*``) are not shared."""
    port = free_port()
    process = start_redis(port, tmp_path_factory.mktemp("private-redis") / "redis.log")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.stop()


def isolated(settings: Settings, data_dir: Path, **changes: object) -> Settings:
    """``settings`` with its own group, topics, web port and data: a worker of its own."""
    run = uuid.uuid4().hex[:8]
    topics = {
        name: f"{value}.{run}"
        for name, value in settings.model_dump().items()
        if name.startswith("topic_") and name not in ("topic_partitions", "topic_replication")
    }
    return settings.model_copy(
        update={
            **topics,
            "app_id": f"chs-{run}",
            "web_port": free_port(),
            "data_dir": data_dir,
            **changes,
        }
    )


def start_worker(settings: Settings, log: Path) -> ManagedProcess:
    """A ``chs worker`` process; returns once its web server listens (fails fast if it dies)."""
    process = start_process("worker", chs_command("worker"), log, settings_env(settings))
    try:
        wait_for_port(process, settings.web_port, timeout=60)
    except Exception:
        process.stop()
        raise
    return process


@pytest.fixture(scope="session")
def worker(worker_settings: Settings, service_logs: Path) -> Iterator[ManagedProcess]:
    """One real ``chs worker`` process for the integration tests of this session."""
    process = start_worker(worker_settings, service_logs / "worker.log")
    try:
        yield process
    finally:
        process.stop()
        print(f"--- worker log (tail) ---\n{process.log_tail(40)}")


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    """A local server answering like Slack's incoming webhooks."""
    server = FakeSlack()
    await server.start()
    yield server
    await server.stop()
