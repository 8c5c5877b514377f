from __future__ import annotations

import asyncio
import socket

from streams.settings import Settings
from streams.worker.web import readiness


class FakeApp:
    def __init__(self, joined: bool, recovered: bool) -> None:
        self.checks = {"joined_group": joined, "recovery_done": recovered}

    def ready_checks(self) -> dict[str, bool]:
        return dict(self.checks)


class FakeRedis:
    def __init__(self, answers: bool) -> None:
        self.answers = answers

    async def ping(self) -> bool:
        if not self.answers:
            raise ConnectionError("redis://:secret@10.0.0.1:6379 refused")
        return True


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_ready_when_every_check_passes() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        settings = Settings(
            broker_url=f"kafka://127.0.0.1:{closed_port()},kafka://127.0.0.1:{port}"
        )
        body = await readiness(FakeApp(True, True), settings, FakeRedis(True))  # type: ignore[arg-type]
    finally:
        server.close()
        await server.wait_closed()
    assert body == {
        "ready": True,
        "checks": {
            "joined_group": True,
            "recovery_done": True,
            "broker_reachable": True,  # one broker of two is enough
            "redis_reachable": True,
        },
        "failing": [],
    }


async def test_not_ready_names_each_failing_check_and_not_the_redis_url() -> None:
    settings = Settings(broker_url=f"kafka://127.0.0.1:{closed_port()}")
    body = await readiness(FakeApp(True, False), settings, FakeRedis(False))  # type: ignore[arg-type]
    assert body["ready"] is False
    assert body["failing"] == ["recovery_done", "broker_reachable", "redis_reachable"]
    assert "secret" not in repr(body)
