"""The services a benchmark runs against: a local broker (Apache Kafka by default, or the dev
broker, Tansu), Redis, ``chs worker``s."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from streams.ops.devstack import (
    DEV_BROKER_SETTINGS,
    ManagedProcess,
    chs_command,
    free_port,
    settings_env,
    start_process,
    start_redis,
    stopping,
    wait_for_port,
)
from streams.ops.local_broker import BrokerKind, start_broker
from streams.settings import Settings


@contextmanager
def dev_services(
    logs: Path, *, kind: BrokerKind = BrokerKind.KAFKA, **changes: Any
) -> Iterator[tuple[Settings, list[ManagedProcess]]]:
    """A broker of ``kind`` and Redis on free ports, and worker settings for them:
    production's client settings, and on the dev broker its work-arounds.

    Every process appended to the yielded list is stopped on the way out.
    """
    with stopping([]) as services:
        broker, redis = free_port(), free_port()
        log = logs / f"{kind.value}.log"
        services.append(start_broker(kind, broker, log, logs / "broker-data"))
        services.append(start_redis(redis, logs / "redis.log"))
        settings = Settings.model_validate(
            {
                **(DEV_BROKER_SETTINGS if kind is BrokerKind.TANSU else {}),
                "broker_url": f"kafka://127.0.0.1:{broker}",
                "redis_url": f"redis://127.0.0.1:{redis}/0",
                "web_port": free_port(),
                "data_dir": logs / "data",
                "log_level": "warning",
                **changes,
            }
        )
        yield settings, services


def start_worker(settings: Settings, name: str, logs: Path) -> tuple[Settings, ManagedProcess]:
    """A worker with its own web port and data directory; returns once its web server is up."""
    member = settings.model_copy(update={"web_port": free_port(), "data_dir": logs / name})
    process = start_process(
        "worker", chs_command("worker"), logs / f"{name}.log", settings_env(member)
    )
    wait_for_port(process, member.web_port, timeout=60)
    return member, process


def readiness(settings: Settings) -> dict[str, Any] | None:
    """The worker's /readyz body when it is ready, else None."""
    try:
        url = f"http://127.0.0.1:{settings.web_port}/readyz"
        with urllib.request.urlopen(url, timeout=5) as response:
            body: dict[str, Any] = json.loads(response.read())
            return body
    except (urllib.error.URLError, OSError):
        return None


def metric_sums(settings: Settings, *names: str) -> list[float] | None:
    """Each metric's samples summed over its labels, from the worker's /metrics (0 for one it
    has not shown yet); None while the worker does not answer."""
    try:
        url = f"http://127.0.0.1:{settings.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    return [
        sum(float(v) for v in re.findall(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M))
        for name in names
    ]


def wait_split(members: list[Settings], partitions: int, within: float = 120) -> list[set[int]]:
    """Wait until every worker is ready and each partition is scored by exactly one of them."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        bodies = [readiness(member) for member in members]
        if all(bodies):
            owned = [set(body["partitions"]["active"]) for body in bodies if body]
            if all(owned) and sorted(p for mine in owned for p in mine) == list(range(partitions)):
                return owned
        time.sleep(0.2)
    raise TimeoutError(f"{len(members)} workers did not split {partitions} partitions")


def peak_rss(pid: int) -> int:
    """The process's peak resident set size so far, in bytes (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0
