"""Polling for state another process (or task) changes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def eventually(condition: Callable[[], bool], within: float = 30.0) -> None:
    """Wait until ``condition()`` holds; TimeoutError after ``within`` seconds."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - the state lives in another process or task
            await asyncio.sleep(0.2)


async def until(check: Callable[[], Awaitable[bool]], within: float = 30.0) -> None:
    """Wait until ``await check()`` holds; TimeoutError after ``within`` seconds."""
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 - the state lives in another process
            await asyncio.sleep(0.2)
