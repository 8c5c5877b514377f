"""A local HTTP server that answers like Slack's incoming webhooks, for the tests.

Answers are scripted: each request takes the next ``Reply`` (200 "ok" when none is left).
Every request is recorded with the time it arrived.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from streams.ops.devstack import free_port


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Post:
    at: float
    body: dict[str, Any]


class FakeSlack:
    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.posts: list[Post] = []
        """Requests answered 200: what reached the channel."""
        self.requests: list[Post] = []
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/services/T000/B000/SECRETxyz"

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def _hook(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        post = Post(time.monotonic(), body)
        self.requests.append(post)
        reply = self.replies.popleft() if self.replies else Reply()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status == 200:
            self.posts.append(post)
        return web.Response(status=reply.status, text=reply.body, headers=reply.headers)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/services/{path:.*}", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
