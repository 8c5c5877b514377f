"""Input messages in batches, as many as are there (the batch step, ``window_step.py``, folds
and settles each batch).

Rather than Faust's per-event stream (an ``Event``, a changelog write and a send for each),
the conductor hands the raw messages to a queue and the scoring task takes whatever is there,
up to a limit: one message when the load is light, thousands when it is behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

T = TypeVar("T")


async def batches(
    queue: asyncio.Queue[T], limit: int, idle: Callable[[], float | None] = lambda: None
) -> AsyncIterator[list[T]]:
    """What ``queue`` holds, up to ``limit`` messages at a time; waits for the first one, or
    yields an empty batch after ``idle()`` seconds (None: never) with nothing to read.

    A wait that times out leaves its ``get`` pending for the next one: a cancelled get of
    Faust's stream queue can leave the task unwoken by later messages (docs/reliability.md)."""
    waiting: asyncio.Future[T] | None = None
    try:
        while True:
            if waiting is None:
                waiting = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({waiting}, timeout=idle())
            if not done:
                yield []
                continue
            batch, waiting = [waiting.result()], None
            while len(batch) < limit and not queue.empty():
                batch.append(queue.get_nowait())
            yield batch
    finally:
        if waiting is not None:
            waiting.cancel()
