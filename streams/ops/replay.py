"""``chs replay``: historical records onto the event topics, in event-time order, as fast as
the broker takes them or at a time-lapse factor. With ``CHS_CLOCK=event`` the worker scores
on event time, so replaying a year gives the scores of living through it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from scoring.events import AccountAttributes, OutcomeEvent
from sim.backtest import Item, record_time
from sim.progress import Progress
from streams.settings import Settings
from streams.worker.event_producer import EventProducer


async def replay(
    settings: Settings,
    records: Iterable[Item],
    speed: float | None = None,
    progress: Progress | None = None,
) -> int:
    """Send ``records`` (in event-time order) to their topics; returns how many. ``speed``:
    event time runs this many times faster than the wall clock (None: no waiting)."""
    loop = asyncio.get_running_loop()
    sent = 0
    start: tuple[float, float] | None = None
    async with EventProducer(settings) as producer:
        for record in records:
            if speed is not None:
                at = record_time(record)
                start = start or (at, loop.time())
                delay = start[1] + (at - start[0]) / speed - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            if isinstance(record, AccountAttributes):
                await producer.send_model(settings.topic_accounts, record.account_id, record)
            elif isinstance(record, OutcomeEvent):
                await producer.send_model(settings.topic_outcomes, record.account_id, record)
            else:
                await producer.send(record)
            sent += 1
            if progress is not None:
                progress.update(sent)
        await producer.flush()
    if progress is not None:
        progress.finish()
    return sent
