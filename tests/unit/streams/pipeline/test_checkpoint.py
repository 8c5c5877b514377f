from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from streams.pipeline.checkpoint import OutputLost, OutputsFirst, SettledWindow


class Log:
    """The port's fake: what was written and acknowledged, in order."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, object]] = []

    def write_state(self, key: bytes, partition: int, encoded: bytes | None) -> None:
        self.entries.append(("state", (key, partition, encoded)))

    async def states_sent(self) -> None:
        self.entries.append(("sent", None))

    def ack(self, message: str) -> None:
        self.entries.append(("ack", message))


def batch(
    outputs: list[asyncio.Future[object]], key: bytes, encoded: bytes, *inputs: str
) -> SettledWindow[str]:
    return SettledWindow(list(outputs), [(key, 0, encoded)], list(inputs))


@contextlib.asynccontextmanager
async def running(writer: OutputsFirst[str]) -> AsyncIterator[None]:
    """``writer.run`` in a task for the block's length."""
    task = asyncio.create_task(writer.run())
    try:
        yield
    finally:
        task.cancel()


async def settle_loop() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_states_are_written_and_inputs_acked_only_once_every_output_is_delivered() -> None:
    log = Log()
    writer: OutputsFirst[str] = OutputsFirst(log.write_state, log.states_sent, log.ack)
    score, alert = asyncio.Future[object](), asyncio.Future[object]()
    await writer.put(batch([score, alert], b"acme", b"{v1}", "m1", "m2"))
    async with running(writer):
        score.set_result("delivered")
        await settle_loop()
        assert log.entries == []  # the alert is not delivered yet
        alert.set_result("delivered")
        await settle_loop()
        assert log.entries == [
            ("state", (b"acme", 0, b"{v1}")),
            ("sent", None),
            ("ack", "m1"),
            ("ack", "m2"),
        ]


async def test_batches_complete_in_order_even_if_a_later_one_is_delivered_first() -> None:
    log = Log()
    writer: OutputsFirst[str] = OutputsFirst(log.write_state, log.states_sent, log.ack)
    first, second = asyncio.Future[object](), asyncio.Future[object]()
    await writer.put(batch([first], b"acme", b"{v1}", "m1"))
    await writer.put(batch([second], b"acme", b"{v2}", "m2"))
    async with running(writer):
        second.set_result("delivered")
        await settle_loop()
        assert log.entries == []
        first.set_result("delivered")
        await settle_loop()
        assert [entry for kind, entry in log.entries if kind == "state"] == [
            (b"acme", 0, b"{v1}"),
            (b"acme", 0, b"{v2}"),
        ]
        assert [entry for kind, entry in log.entries if kind == "ack"] == ["m1", "m2"]


async def test_a_lost_output_stops_the_writer_before_its_state_is_written() -> None:
    log = Log()
    writer: OutputsFirst[str] = OutputsFirst(log.write_state, log.states_sent, log.ack)
    delivered, lost = asyncio.Future[object](), asyncio.Future[object]()
    delivered.set_result("delivered")
    lost.set_exception(TimeoutError("no answer from the broker"))
    await writer.put(batch([delivered, lost], b"acme", b"{v1}", "m1"))
    with pytest.raises(OutputLost, match="1 of 2 outputs") as raised:
        await writer.run()
    assert isinstance(raised.value.__cause__, TimeoutError)
    assert log.entries == []


async def test_a_batch_without_outputs_is_written_at_once() -> None:
    log = Log()
    writer: OutputsFirst[str] = OutputsFirst(log.write_state, log.states_sent, log.ack)
    await writer.complete(batch([], b"acme", b"{v1}", "m1"))
    assert log.entries == [("state", (b"acme", 0, b"{v1}")), ("sent", None), ("ack", "m1")]


async def test_inputs_are_acknowledged_only_once_their_states_are_handed_over() -> None:
    """A commit covers what the producer holds: an input acknowledged before its state
    record reached the producer could be committed with the record unsent."""
    log = Log()
    handed_over = asyncio.Event()

    async def states_sent() -> None:
        await handed_over.wait()
        log.entries.append(("sent", None))

    writer: OutputsFirst[str] = OutputsFirst(log.write_state, states_sent, log.ack)
    completing = asyncio.create_task(writer.complete(batch([], b"acme", b"{v1}", "m1")))
    await settle_loop()
    assert log.entries == [("state", (b"acme", 0, b"{v1}"))]
    handed_over.set()
    await asyncio.wait_for(completing, 1)
    assert log.entries[1:] == [("sent", None), ("ack", "m1")]


async def test_the_scoring_task_waits_when_too_many_inputs_are_pending() -> None:
    log = Log()
    writer: OutputsFirst[str] = OutputsFirst(
        log.write_state, log.states_sent, log.ack, max_pending_inputs=3
    )
    await writer.put(batch([], b"acme", b"{v0}", "m0"))
    await writer.put(batch([], b"acme", b"{v1}", "m1", "m1b"))
    assert writer.pending == 3
    blocked = asyncio.create_task(writer.put(batch([], b"acme", b"{v2}", "m2")))
    await settle_loop()
    assert not blocked.done()
    async with running(writer):
        await asyncio.wait_for(blocked, 1)
        await settle_loop()
        assert [entry for kind, entry in log.entries if kind == "ack"] == [
            "m0",
            "m1",
            "m1b",
            "m2",
        ]
        assert writer.pending == 0


async def test_a_batch_larger_than_the_bound_is_let_in_alone() -> None:
    log = Log()
    writer: OutputsFirst[str] = OutputsFirst(
        log.write_state, log.states_sent, log.ack, max_pending_inputs=2
    )
    await asyncio.wait_for(writer.put(batch([], b"acme", b"{v1}", "m1", "m2", "m3")), 1)
    assert writer.pending == 3
