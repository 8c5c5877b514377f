"""The scoring task and the timer that feeds it due accounts: the application step
(``streams/pipeline/window_step.py``) run on the input topics' raw messages in windows, its
outputs through Faust's producer, its states to the changelog once the outputs are delivered
(``streams/pipeline/checkpoint.py``)."""

from __future__ import annotations

import logging
import time
from typing import cast

import faust
from faust.types import TP, Message

from streams.pipeline.account_step import Processor, SkipReason, Tick
from streams.pipeline.batching import batches
from streams.pipeline.checkpoint import OutputLost, OutputsFirst
from streams.pipeline.clock import Clock, EventClock
from streams.pipeline.event_order import EventOrder
from streams.pipeline.window_step import (
    Delivery,
    ScoringPorts,
    ScoringWindow,
    WindowBound,
    window_closes,
)
from streams.settings import Settings
from streams.wire import ERASED_HEADER
from streams.worker import metrics as prometheus_metrics
from streams.worker.account_table import AccountTable, TableStore
from streams.worker.faust_overrides import ChsApp, ChsConsumer, RawMessageTopic, wait_for_producer
from streams.worker.metrics import PrometheusMetrics

log = logging.getLogger(__name__)

WINDOW_POLL_SECONDS = 0.01
"""While a window is open and no input has arrived: how often to ask whether it closes."""


class TopicPublisher:
    """The output topics as the scoring step's ``Publisher``: sends through the producer
    buffer, delivered in the background."""

    def __init__(
        self, scores: faust.Topic, alerts: faust.Topic, dlq: faust.Topic, rollup: faust.Topic
    ) -> None:
        self._scores, self._alerts, self._dlq, self._rollup = scores, alerts, dlq, rollup

    def score(self, key: bytes, value: bytes | None, erased: bool = False) -> Delivery:
        headers = [(ERASED_HEADER, b"1")] if erased else None
        return self._scores.send_soon(key=key, value=value, headers=headers)

    def alert(self, key: bytes, value: bytes) -> Delivery:
        return self._alerts.send_soon(key=key, value=value)

    def rollup(self, key: bytes, value: bytes) -> Delivery:
        return self._rollup.send_soon(key=key, value=value)

    def dead_letter(
        self, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> Delivery:
        return self._dlq.send_soon(key=key, value=value, headers=headers)


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
    writer: OutputsFirst[Message] = OutputsFirst(accounts.write_changelog, app.ack)

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
    window: ScoringWindow[Message] | None = None
    opened = 0.0

    def idle() -> float | None:
        waits = [order.wait_seconds] if order is not None and order.held else []
        if window is not None:
            waits.append(WINDOW_POLL_SECONDS)
        return min(waits, default=None)

    @app.task  # type: ignore[untyped-decorator]
    async def score_inputs() -> None:
        nonlocal window, opened
        async for batch in batches(queue, settings.input_batch_max, idle):
            if order is not None:
                batch = order.add(batch) if batch else order.release()
            if batch:
                if window is None:
                    window, opened = ScoringWindow(ports), time.monotonic()
                window.add(taken(batch))
            if window is None:
                continue
            waiting = window.behind or not queue.empty()
            age = time.monotonic() - opened
            if window_closes(window.inputs, age, waiting, app.flowing, bound):
                await writer.put(window.settle())
                window = None
                await wait_for_producer(app.producer.buffer)

    @app.task  # type: ignore[untyped-decorator]
    async def write_states() -> None:
        """Each window's states to the changelog once its outputs are delivered."""
        try:
            await writer.run()
        except OutputLost as lost:
            log.error("Stopping the worker: %s", lost)
            await app.crash(lost)


def add_due_ticks(
    app: ChsApp, settings: Settings, ticks: faust.Topic, accounts: AccountTable, clock: Clock
) -> None:
    """Due accounts become ticks on their own partition, so that every state change goes
    through the one scoring task."""
    schedule = accounts.ownership.schedule

    @app.timer(interval=settings.timer_interval)  # type: ignore[untyped-decorator]
    async def reevaluate_due_accounts() -> None:
        for partition, key, due in schedule.pop_due(clock.now, settings.timer_batch):
            prometheus_metrics.TIMER_TICKS.inc()
            tick = Tick(account_id=key.decode(), due_at=due)
            await ticks.send(key=key, value=tick.model_dump_json().encode(), partition=partition)
