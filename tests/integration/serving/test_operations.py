"""Operability: /metrics values after a known stream, promtool, a real Prometheus scraping
the worker, /healthz and /readyz."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from streams.ops.devstack import ManagedProcess, free_port, start_process, wait_for_port
from streams.settings import Settings
from streams.worker.event_producer import EventProducer
from tests.conftest import isolated, start_worker
from tests.factories import feature, login
from tests.integration.pipeline.test_pipeline import recent
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def known_stream_worker(
    worker_settings: Settings, tmp_path: Path
) -> Iterator[tuple[Settings, ManagedProcess]]:
    settings = isolated(worker_settings, tmp_path)
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        yield settings, worker
    finally:
        worker.stop()


async def send_known_stream(settings: Settings) -> None:
    """5 logins and 3 feature uses for two accounts, and 2 messages that are not JSON."""
    run = uuid.uuid4().hex[:6]
    events = recent(
        [
            *(login(f"a-{run}", days=-d, user=f"u{d}") for d in range(3)),
            *(login(f"b-{run}", days=-d) for d in range(2)),
            *(feature(f"a-{run}", days=-d, name=f"f{d}") for d in range(3)),
        ]
    )
    async with EventProducer(settings) as producer:
        for event in events:
            await producer.send(event)
        await producer.send_raw(settings.topic_login, f"a-{run}".encode(), b"nope")
        await producer.send_raw(settings.topic_feature_use, f"b-{run}".encode(), b"{")
        await producer.flush()


def metric_url(settings: Settings, path: str = "metrics") -> str:
    return f"http://127.0.0.1:{settings.web_port}/{path}"


def metric(settings: Settings, name: str, **labels: str) -> float:
    """One sample of the worker's /metrics now (0 if it has none yet)."""
    _, body = get(metric_url(settings))
    return samples(body.decode()).get((name, tuple(sorted(labels.items()))), 0.0)


async def wait_for_metric(
    settings: Settings, name: str, labels: dict[str, str], value: float
) -> str:
    key = (name, tuple(sorted(labels.items())))
    text = ""
    async with asyncio.timeout(60):
        while samples(text).get(key) != value:
            await asyncio.sleep(0.5)
            text = get(metric_url(settings))[1].decode()
    return text


async def test_metrics_count_a_known_stream_and_pass_promtool(
    known_stream_worker: tuple[Settings, ManagedProcess],
) -> None:
    settings, _ = known_stream_worker
    await send_known_stream(settings)
    text = await wait_for_metric(settings, "chs_events_rejected_total", {"reason": "not_json"}, 2)
    text = await wait_for_metric(settings, "chs_events_consumed_total", {"kind": "login"}, 6)
    values = samples(text)
    assert values[("chs_events_consumed_total", (("kind", "feature_use"),))] == 4
    assert values[("chs_dlq_records_total", (("dlq", "events"),))] == 2
    assert values[("chs_score_updates_total", ())] >= 2
    assert values[("chs_event_lag_seconds_count", ())] == 8
    assert values[("chs_window_inputs_sum", ())] == 10
    assert 1 <= values[("chs_window_handling_seconds_count", ())] <= 10
    held = values[("chs_accounts_held", ())]
    assert held == 2
    assert sum(v for (name, _), v in values.items() if name == "chs_accounts") == held
    assert values[("chs_last_event_processed_timestamp_seconds", ())] > 0
    assert any(name == "chs_consumer_lag_messages" for name, _ in values)
    assert not any("account" in dict(labels) for _, labels in values)

    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool (Debian package prometheus) is needed"
    check = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


async def test_health_and_readiness_say_what_is_wrong(
    known_stream_worker: tuple[Settings, ManagedProcess],
) -> None:
    settings, _ = known_stream_worker
    status, body = get(metric_url(settings, "healthz"))
    assert status == 200
    assert json.loads(body)["alive"] is True
    await eventually(lambda: get(metric_url(settings, "readyz"))[0] == 200, within=60)
    ready = json.loads(get(metric_url(settings, "readyz"))[1])
    assert ready["ready"] is True
    assert ready["checks"] == {
        "joined_group": True,
        "recovery_done": True,
        "broker_reachable": True,
        "redis_reachable": True,
    }
    assert ready["failing"] == []
    assert ready["partitions"] == {"active": list(range(settings.topic_partitions)), "standby": []}


async def test_readiness_names_an_unreachable_redis(
    worker_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated(
        worker_settings, tmp_path, redis_url=SecretStr(f"redis://127.0.0.1:{free_port()}/0")
    )
    worker = start_worker(settings, tmp_path / "worker.log")

    def settled() -> bool:
        checks = json.loads(get(metric_url(settings, "readyz"))[1])["checks"]
        return bool(checks["joined_group"] and checks["recovery_done"])

    try:
        await eventually(settled, within=60)
        status, body = get(metric_url(settings, "readyz"))
        report = json.loads(body)
    finally:
        worker.stop()
    assert status == 503
    assert report["failing"] == ["redis_reachable"]


async def test_a_real_prometheus_scrapes_the_worker(
    known_stream_worker: tuple[Settings, ManagedProcess], tmp_path: Path
) -> None:
    settings, _ = known_stream_worker
    binary = shutil.which("prometheus")
    assert binary is not None, "prometheus (Debian package prometheus) is needed"
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: chs\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{settings.web_port}']}}]\n"
    )
    prometheus = start_process(
        "prometheus",
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        tmp_path / "prometheus.log",
    )
    try:
        wait_for_port(prometheus, port, timeout=30)
        await send_known_stream(settings)
        query = f"http://127.0.0.1:{port}/api/v1/query?query=sum(chs_events_consumed_total)"

        seen: list[str | None] = []

        def counted_all() -> bool:
            result = json.loads(get(query)[1])["data"]["result"]
            seen.append(result[0]["value"][1] if result else None)
            return seen[-1] == "10"

        await eventually(counted_all, within=90)
    finally:
        prometheus.stop()
    assert seen[-1] == "10"  # 5 logins + 3 feature uses + 2 rejected messages
