"""The scoring task and the timer that feeds it due accounts: the application step
(``streams/pipeline/window_step.py``) run on the input topics' raw messages in windows, its
outputs in batches (``streams/worker/batch_sender.py``), its states to the changelog once the
outputs are delivered (``streams/pipeline/checkpoint.py``). Under a live load the states of
the windows of ``CHS_STATE_WRITE_SECONDS`` are written together, each account once (Kafka
Streams' record cache); their outputs go at once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import cast

from faust.types import TP, Message

from streams.pipeline.account_step import Processor, SkipReason
from streams.pipeline.batching import batches
from streams.pipeline.checkpoint import OutputLost, OutputsFirst, SettledWindow
from streams.pipeline.clock import Clock, EventClock
from streams.pipeline.event_order import EventOrder
from streams.pipeline.window_step import (
    ClosingWrite,
    Delivery,
    ScoringPorts,
    ScoringWindow,
    WindowBound,
    window_closes,
)
from streams.settings import Settings
from streams.wire import ERASED_HEADER
from streams.worker.account_table import AccountTable, TableStore
from streams.worker.batch_sender import BatchSender
from streams.worker.faust_overrides import ChsApp, ChsConsumer, RawMessageTopic, batch_sender
from streams.worker.metrics import PrometheusMetrics

log = logging.getLogger(__name__)

WINDOW_POLL_SECONDS = 0.01
"""While a window is open and no input has arrived: how often to ask whether it closes."""
IDLE_WRITE_SECONDS = 0.5
"""No input for this long: held states are written at once."""
ENCODE_SLICE = 100
"""Accounts of the closing windows encoded per batch under a live load (about 10 ms)."""


class TopicPublisher:
    """The output topics as the scoring step's ``Publisher``: records queued in the batch
    sender, handed to the producer once the window is settled."""

    def __init__(
        self, sender: Callable[[], BatchSender], scores: str, alerts: str, dlq: str, rollup: str
    ) -> None:
        self._sender = sender
        self._scores, self._alerts, self._dlq, self._rollup = scores, alerts, dlq, rollup

    def score(self, key: bytes, value: bytes | None, erased: bool = False) -> Delivery:
        headers = [(ERASED_HEADER, b"1")] if erased else None
        return self._sender().add(self._scores, key, value, headers=headers)

    def alert(self, key: bytes, value: bytes) -> Delivery:
        return self._sender().add(self._alerts, key, value)

    def rollup(self, key: bytes, value: bytes) -> Delivery:
        return self._sender().add(self._rollup, key, value)

    def dead_letter(
        self, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> Delivery:
        return self._sender().add(self._dlq, key, value, headers=headers)


def add_scoring_task(
    app: ChsApp,
    settings: Settings,
    inputs: RawMessageTopic,
    publisher: TopicPublisher,
    accounts: AccountTable,
    processor: Processor,
    clock: Clock,
) -> None:
    """The one task that changes account states: windows of inputs, scored and published,
    then their states written."""
    queue = app.read_in_bulk(inputs)
    metrics = PrometheusMetrics()
    ports = ScoringPorts(
        processor=processor,
        roles=settings.input_roles,
        store=TableStore(accounts.data),
        state_records=accounts.state_writer,
        publisher=publisher,
        schedule=accounts.ownership.schedule,
        clock=clock,
        metrics=metrics,
        highwater=lambda topic, partition: app.consumer.highwater(TP(topic, partition)),
    )
    sender = batch_sender(app)
    writer: OutputsFirst[Message] = OutputsFirst(accounts.write_changelog, sender.send, app.ack)

    def taken(batch: list[Message]) -> list[Message]:
        kept, moved = app.scorable(batch, accounts.active_partitions)
        for _ in range(moved):
            metrics.skipped(SkipReason.MOVED.value)
        return kept

    # On event time, the topic-partitions are scored in event-time order (``EventOrder``).
    order: EventOrder[Message] | None = None
    if isinstance(clock, EventClock) and settings.event_order:

        def waiting(topic: str, partition: int) -> int | None:
            return cast(ChsConsumer, app.consumer).records_waiting(TP(topic, partition))

        order = EventOrder(
            settings.event_topics, lambda: accounts.active_partitions, waiting, clock.wall
        )

    bound = WindowBound(settings.window_max_inputs, settings.window_max_seconds)
    schedule = accounts.ownership.schedule
    window: ScoringWindow[Message] | None = None
    opened = next_tick = 0.0
    behind = False  # whether the last window of inputs grew, or closed with more waiting
    held: SettledWindow[Message] | None = None  # settled windows whose states wait
    held_since = 0.0
    closing: ClosingWrite[Message] | None = None  # held windows whose states are being encoded
    was_behind = False  # whether the window before the last one was behind
    last_input = 0.0

    def open_window() -> ScoringWindow[Message]:
        nonlocal opened
        opened = time.monotonic()
        return ScoringWindow(ports, held, closing)

    def write_due() -> bool:
        """Whether the held windows' states are due: under a backlog (its windows are large
        already) and in the window that ends one, once ``state_write_seconds`` have passed
        since the first was held, when no input came for ``IDLE_WRITE_SECONDS`` (the lag
        goes to zero with the last input, not ``state_write_seconds`` later), and during a
        rebalance (it waits for the inputs to be acknowledged)."""
        now = time.monotonic()
        age = now - held_since if held is not None else 0.0
        return (
            behind
            or was_behind
            or not app.flowing
            or age >= settings.state_write_seconds
            or now - last_input >= IDLE_WRITE_SECONDS
        )

    async def encode_closing() -> None:
        """Make the held windows the closing ones when due; go on encoding the closing
        windows' states, a slice per batch (all of them under a backlog or a rebalance, or
        when held ones are due behind them), and hand them to the writer once encoded."""
        nonlocal held, closing
        while True:
            if closing is None:
                if held is None or not write_due():
                    return
                closing, held = ClosingWrite(held, ports, behind), None
            at_once = behind or not app.flowing or (held is not None and write_due())
            closing.encode_some(None if at_once else ENCODE_SLICE)
            if not closing.done:
                return
            await writer.put(closing.settled)
            closing = None

    def due() -> list[tuple[int, bytes, float]]:
        """The due accounts of the partitions this worker scores (none during a rebalance)."""
        nonlocal next_tick
        next_tick = time.monotonic() + settings.timer_interval
        if not app.flowing:
            return []
        owned = accounts.active_partitions
        return [d for d in schedule.pop_due(clock.now, settings.timer_batch) if d[0] in owned]

    def idle() -> float | None:
        now = time.monotonic()
        waits = [order.wait_seconds] if order is not None and order.held else []
        waits.append(WINDOW_POLL_SECONDS if window else max(0.0, next_tick - now))
        if closing is not None:
            waits.append(0.0)
        elif held is not None:
            due = min(held_since + settings.state_write_seconds, last_input + IDLE_WRITE_SECONDS)
            waits.append(WINDOW_POLL_SECONDS if not app.flowing else max(0.0, due - now))
        return min(waits)

    @app.task  # type: ignore[untyped-decorator]
    async def score_inputs() -> None:
        nonlocal window, behind, held, held_since, was_behind, last_input
        async for batch in batches(queue, settings.input_batch_max, idle):
            if order is not None:
                batch = order.add(batch) if batch else order.release()
            if batch:
                last_input = time.monotonic()
                window = window or open_window()
                window.add(taken(batch))
            elif window is None and time.monotonic() >= next_tick:
                window = open_window()  # idle: the due accounts alone
            if window is None:
                await encode_closing()
                continue
            size, waiting, age = window.size, window.waiting, time.monotonic() - opened
            if not window.inputs or window_closes(size, age, waiting, app.flowing, bound):
                if window.inputs:  # a window of ticks alone keeps what the last one found
                    was_behind, behind = behind, window.grew or waiting > size
                window.tick(due())  # the accounts due, at the window's end
                if window.size:
                    settled = window.settle(backlog=behind, hold=True)
                    await sender.send()
                    if held is None:
                        held, held_since = settled, time.monotonic()
                window = None
                await encode_closing()

    @app.task  # type: ignore[untyped-decorator]
    async def write_states() -> None:
        """Each window's states to the changelog once its outputs are delivered."""
        try:
            await writer.run()
        except OutputLost as lost:
            log.error("Stopping the worker: %s", lost)
            await app.crash(lost)
