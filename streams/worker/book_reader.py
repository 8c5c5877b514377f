"""Reads a compacted topic of per-partition books (``chs.peers``, ``chs.audit``) whole, from the
start, with a consumer of no group: every worker holds every partition's latest books."""

from __future__ import annotations

from collections.abc import Callable

from aiokafka import ConsumerRecord

from streams.settings import Settings
from streams.worker.consumer_loop import ConsumerLoop, each_record

FETCH_MAX_WAIT_MS = 5_000
"""Books change once per ship interval: a slow fetch costs the broker least."""


async def read_books(
    settings: Settings, topic: str, take: Callable[[ConsumerRecord[bytes, bytes]], None]
) -> None:
    """Hands every record of ``topic`` to ``take``, until cancelled."""
    loop = ConsumerLoop(
        settings,
        topic,
        [topic],
        poll_seconds=FETCH_MAX_WAIT_MS / 1000 + 1,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    await loop.run(each_record(take))
