"""Authenticated Redis, refused credentials, and secrets kept out of every log and endpoint."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from api.store import ReadModel
from readmodel.redis_view import ScoreView
from streams.ops.devstack import (
    ManagedProcess,
    chs_command,
    free_port,
    settings_env,
    start_process,
    start_redis,
    wait_for_port,
)
from streams.settings import Settings
from streams.worker.connections import redis_client
from tests.conftest import isolated, start_worker
from tests.factories import scored
from tests.integration.kafka import wait_consumed
from tests.integration.pipeline.test_pipeline import produce
from tests.integration.reference import demo_events
from tests.integration.serving.test_api import put
from tests.integration.serving.test_operations import get, metric_url
from tests.integration.waiting import eventually
from tests.slack_server import FakeSlack

pytestmark = pytest.mark.integration

REDIS_PASSWORD = "r3dis-Pa55-4f9c"
API_TOKEN = "api-T0ken-77aa"


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A Redis that wants a password (``requirepass``); its port."""
    port = free_port()
    log = tmp_path_factory.mktemp("locked-redis") / "redis.log"
    process = start_redis(port, log, password=REDIS_PASSWORD)
    try:
        yield port
    finally:
        process.stop()


def read_logs(folder: Path) -> dict[str, str]:
    return {path.name: path.read_text(errors="replace") for path in folder.glob("*.log")}


def redis_url(port: int, password: str | None) -> SecretStr:
    auth = f":{password}@" if password is not None else ""
    return SecretStr(f"redis://{auth}127.0.0.1:{port}/0")


async def test_the_read_model_works_through_an_authenticated_redis(locked_redis: int) -> None:
    settings = Settings(redis_url=redis_url(locked_redis, REDIS_PASSWORD))
    view = ScoreView(redis_client(settings))
    update = scored()
    put(view, update)
    assert await view.flush()
    store = ReadModel(redis_client(settings))
    try:
        assert await store.account(update.account_id) == update
    finally:
        await store.close()
        await view.close()


@pytest.mark.parametrize("password", ["wrong-pa55word", None])
def test_refused_credentials_stop_the_api_with_the_setting_named(
    locked_redis: int, password: str | None, tmp_path: Path
) -> None:
    settings = Settings(redis_url=redis_url(locked_redis, password), api_port=free_port())
    done = subprocess.run(
        chs_command("api"),
        env={**settings_env(settings), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "CHS_REDIS_URL" in done.stderr
    assert "Traceback" not in done.stderr
    if password is not None:
        assert password not in done.stderr + done.stdout


async def test_no_secret_shows_in_logs_endpoints_or_metrics(
    worker_settings: Settings, locked_redis: int, slack: FakeSlack, tmp_path: Path
) -> None:
    settings = isolated(
        worker_settings,
        tmp_path,
        redis_url=redis_url(locked_redis, REDIS_PASSWORD),
        slack_webhook_url=SecretStr(slack.url),
        api_token=SecretStr(API_TOKEN),
        api_port=free_port(),
        clock="event",
        log_level="debug",  # the most a log could say
    )
    secrets = [REDIS_PASSWORD, API_TOKEN, slack.url.rsplit("/", 1)[1]]
    processes: list[ManagedProcess] = []
    try:
        processes.append(start_worker(settings, tmp_path / "worker.log"))
        api = start_process("api", chs_command("api"), tmp_path / "api.log", settings_env(settings))
        processes.append(api)
        wait_for_port(api, settings.api_port, timeout=30)
        events = demo_events(None, accounts=20, seed=5)
        await produce(settings, events)
        await wait_consumed(settings, list(settings.event_topics), within=120)
        base = f"http://127.0.0.1:{settings.api_port}"
        await eventually(lambda: get(f"{base}/healthz")[0] == 200, within=30)
        assert get(f"{base}/accounts")[0] == 401  # the token guards the data
        answers = [get(metric_url(settings, path))[1].decode() for path in ("readyz", "metrics")]
        answers.append(get(f"{base}/healthz")[1].decode())
        await asyncio.sleep(1)  # let the logs settle
    finally:
        for process in reversed(processes):
            process.stop()
    logs = read_logs(tmp_path)
    assert set(logs) >= {"worker.log", "api.log"}
    assert len(logs["worker.log"]) > 10_000  # a real run at debug level, not an empty file
    for secret in secrets:
        for name, text in logs.items():
            assert secret not in text, f"a secret shows in {name}"
        for answer in answers:
            assert secret not in answer
