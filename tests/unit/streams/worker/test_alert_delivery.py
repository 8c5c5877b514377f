"""Alert delivery's rebalance listener."""

from __future__ import annotations

import asyncio

from streams.worker.alert_delivery import FinishDeliveryFirst


async def test_a_rebalance_waits_for_the_alert_being_delivered() -> None:
    listener = FinishDeliveryFirst()
    await asyncio.wait_for(listener.on_partitions_revoked(set()), 1)  # nothing in flight
    posted = asyncio.Event()

    async def deliver() -> None:
        await posted.wait()

    listener.in_flight = asyncio.ensure_future(deliver())
    revoking = asyncio.ensure_future(listener.on_partitions_revoked(set()))
    await asyncio.sleep(0.05)
    assert not revoking.done()  # the partition is not handed over mid-post
    posted.set()
    await asyncio.wait_for(revoking, 1)

    # A delivery that failed neither holds the rebalance nor fails it (the worker stops on
    # the failure where it is awaited).
    async def fail() -> None:
        raise RuntimeError("Slack answered 500")

    listener.in_flight = failed = asyncio.ensure_future(fail())
    await asyncio.wait_for(listener.on_partitions_revoked(set()), 1)
    assert isinstance(failed.exception(), RuntimeError)
