"""The Faust app: topics, the account table, the scoring task and the timers. Wiring only.

Path of one input: event / accounts / overrides / ticks topic -> ``score_inputs``, in batches
(the application step ``streams/pipeline/batch_step.py``: validate and fold each message; then
rescore and publish each touched account once) -> ``chs.scores`` when the change matters
(docs/events.md), ``chs.alerts``, and, once
those are delivered, the table's changelog (``streams/pipeline/checkpoint.py``). Invalid messages
go to ``chs.events.dlq`` with their original key and bytes and the reason in headers. The
Redis view is written from ``chs.scores`` and ``chs.alerts`` by a consumer of its own
(``streams/worker/view_feed.py``), so scoring never waits on Redis. The timer turns due accounts
into ticks on the account's own partition, so every state change goes through the one
scoring task.
"""

from __future__ import annotations

import gc
import logging
from collections import Counter
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any, cast

import faust
from faust.serializers import codecs
from faust.types import TP, Message

from alerts.config import AlertRules
from readmodel.redis_view import ScoreView
from scoring.audit import Auditor
from scoring.audit_report import build_report
from scoring.schedule import next_due
from scoring.scoring_model import ScoringModel
from scoring.state import AccountState
from scoring.update import Rescorer
from streams.pipeline.account_step import (
    Control,
    Processor,
    SkipReason,
    Tick,
    TopicRole,
)
from streams.pipeline.batch_step import ERASED_HEADER, Delivery, ScoringPorts, score_batch
from streams.pipeline.batching import batches
from streams.pipeline.checkpoint import OutputLost, OutputsFirst
from streams.pipeline.clock import Clock, EventClock
from streams.pipeline.due_schedule import DueSchedule
from streams.pipeline.event_order import EventOrder
from streams.settings import Settings
from streams.worker import metrics as prometheus_metrics
from streams.worker.alert_delivery import AlertDelivery
from streams.worker.audit_feed import LiveAudit
from streams.worker.book_reader import BookReader
from streams.worker.connections import broker_credentials, redis_client
from streams.worker.faust_overrides import (
    ChsApp,
    ChsConsumer,
    CodecTable,
    RawMessageTopic,
    wait_for_producer,
)
from streams.worker.metrics import PrometheusMetrics
from streams.worker.peer_feed import LivePeers
from streams.worker.state_records import StateWriter, decode, merge_recovered
from streams.worker.view_feed import ViewFeed
from streams.worker.web import add_web_views

log = logging.getLogger(__name__)

ACCOUNT_STATE_CODEC = "chs_account_state"


class AccountStateCodec(codecs.Codec):
    """Table values are ``AccountState`` in memory; in the changelog, an input record and parts
    (``streams/worker/state_records.py``), merged after a recovery."""

    def _dumps(self, obj: Any) -> bytes:
        assert isinstance(obj, AccountState)
        return obj.model_dump_json(exclude_defaults=True).encode()  # the older, whole form

    def _loads(self, s: bytes) -> Any:
        return decode(s)  # merged into states once recovered (``on_recovery_completed``)


codecs.register(ACCOUNT_STATE_CODEC, AccountStateCodec())


class AccountTable(CodecTable[bytes, AccountState]):
    """Account id (raw bytes) -> AccountState; our codec in the changelog and on recovery."""

    value_codec = ACCOUNT_STATE_CODEC

    schedule: DueSchedule
    model: ScoringModel
    clock: Clock
    state_writer: StateWriter
    peers: LivePeers
    audit: LiveAudit
    auditor: Auditor
    active_partitions: frozenset[int] = frozenset()
    standby_partitions: frozenset[int] = frozenset()

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP], generation_id: int = 0
    ) -> None:
        """Stop the timer for partitions taken away at once, not after the recovery."""
        changelogs = self.app.tables.changelog_topics
        kept = {tp.partition for tp in assigned if tp.topic not in changelogs}
        self.schedule.keep_only(kept)
        self.peers.keep_only(kept)
        self.audit.keep_only(kept)
        self.active_partitions &= kept
        prometheus_metrics.CONSUMER_LAG.clear()  # no stale lag for partitions now read elsewhere
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)

    def write_changelog(self, key: bytes, partition: int, encoded: bytes | None) -> None:
        """A changelog record of an account's state (``streams/worker/state_records.py``; None
        deletes it), outside Faust's stream iteration (which ``table[key] = ...`` needs
        to find the partition); the store itself is set by the scoring task."""
        self.send_changelog(partition, key, encoded, value_serializer="raw")

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        """After every rebalance: schedule the accounts of the partitions we now own, only."""
        await super().on_recovery_completed(active_tps, standby_tps)
        merge_recovered(self.data, self.state_writer)
        owned = {tp.partition for tp in active_tps}
        self.active_partitions = frozenset(owned)
        self.standby_partitions = frozenset(tp.partition for tp in standby_tps)
        self.schedule.keep_only(owned)
        bands: Counter[str] = Counter()
        states: dict[int, list[AccountState]] = {partition: [] for partition in owned}
        for key, state in self.items():
            if state.partition in owned:
                states[state.partition].append(state)
                if state.churned_day is not None:
                    self.schedule.set(state.partition, key, self.auditor.settle_due(state))
                    continue
                now = self.clock.now(state.partition)
                self.schedule.set(state.partition, key, next_due(state, self.model, now))
                if state.published is not None:
                    bands[state.published.band] += 1
        for partition, held in states.items():
            self.audit.rebuild(partition, held, self.auditor)
        # The recovered states live as long as the worker: full collections need not walk them.
        gc.freeze()
        prometheus_metrics.REBALANCES.inc()
        prometheus_metrics.ACCOUNTS_HELD.set(sum(bands.values()))
        for band in {b.label for b in self.model.bands} | set(bands):
            prometheus_metrics.ACCOUNTS_BY_BAND.labels(band).set(bands[band])
        log.info("Owning partitions %s: %d accounts scheduled", sorted(owned), len(self.schedule))


class TableStore:
    """The account table's in-memory data as the scoring step's ``AccountStore``."""

    def __init__(self, data: MutableMapping[bytes, AccountState]) -> None:
        self._data = data

    def get(self, key: bytes) -> AccountState | None:
        return self._data.get(key)

    def put(self, key: bytes, state: AccountState) -> None:
        self._data[key] = state

    def delete(self, key: bytes) -> None:
        self._data.pop(key, None)


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


def topic_roles(settings: Settings) -> dict[str, TopicRole]:
    return {
        **settings.event_topics,
        settings.topic_accounts: Control.ACCOUNTS,
        settings.topic_overrides: Control.OVERRIDES,
        settings.topic_outcomes: Control.OUTCOMES,
        settings.topic_ticks: Control.TICKS,
        settings.topic_rollup: Control.ROLLUP,
    }


def create_app(
    settings: Settings,
    model: ScoringModel,
    rules: AlertRules,
    clock: Clock,
    shadows: tuple[ScoringModel, ...] = (),
) -> faust.App:
    app = ChsApp(
        settings.app_id,
        broker=settings.broker_url,
        broker_credentials=broker_credentials(settings),
        store="memory://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        table_standby_replicas=settings.table_standby_replicas,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.broker_session_timeout,
        broker_rebalance_timeout=settings.broker_rebalance_timeout,
        broker_heartbeat_interval=settings.broker_heartbeat_interval,
        broker_fetch_max_wait=settings.broker_fetch_max_wait,
        producer_max_batch_size=settings.producer_max_batch_size,
        producer_linger=settings.producer_linger_seconds,
        broker_max_poll_records=settings.broker_max_poll_records,
        stream_buffer_maxsize=settings.stream_buffer_maxsize,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
    )
    roles = topic_roles(settings)

    def raw_topic(
        *names: str, kind: type[faust.Topic] = faust.Topic, partitions: int | None = None
    ) -> faust.Topic:
        return kind(
            app,
            topics=list(names),
            partitions=partitions or settings.topic_partitions,
            key_serializer="raw",
            value_serializer="raw",
        )

    inputs_topic = raw_topic(*roles, kind=RawMessageTopic)
    ticks_topic = raw_topic(settings.topic_ticks)
    scores_topic = raw_topic(settings.topic_scores)
    rollup_topic = raw_topic(settings.topic_rollup)
    dlq_topic = raw_topic(settings.topic_dlq)
    peers_topic = raw_topic(settings.topic_peers, partitions=1)
    alerts_topic = raw_topic(settings.topic_alerts)
    audit_topic = raw_topic(settings.topic_audit, partitions=1)
    accounts = AccountTable(
        app,
        name="accounts",
        default=None,
        partitions=settings.topic_partitions,
        key_type=bytes,
        beacon=app.tables.beacon,
    )
    app.tables.add(accounts)
    schedule = DueSchedule()
    peers = LivePeers(model.peers.min_accounts)
    accounts.schedule, accounts.model, accounts.clock = schedule, model, clock
    accounts.state_writer = state_writer = StateWriter()
    accounts.peers = peers
    audit = LiveAudit()
    auditor = Auditor.for_models(model, shadows, audit, settings.audit_window_days)
    accounts.audit, accounts.auditor = audit, auditor
    view = ScoreView(
        redis_client(settings),
        bands=model.band_labels,
        segments=[segment.name for segment in model.segments],
    )
    processor = Processor(
        Rescorer(model, peers, auditor, shadows, settings.publish_min_delta),
        rules,
        clock,
        settings.max_future_seconds,
        settings.max_event_bytes,
    )

    input_channel = inputs_topic.__aiter__()  # subscribed before the worker joins the group
    app.deliver_in_bulk(input_channel)

    def ack(message: Message) -> None:
        message.ack(app.consumer)

    writer: OutputsFirst[Message] = OutputsFirst(accounts.write_changelog, ack)
    metrics = PrometheusMetrics()
    ports = ScoringPorts(
        processor=processor,
        roles=roles,
        store=TableStore(accounts.data),
        state_records=state_writer,
        publisher=TopicPublisher(scores_topic, alerts_topic, dlq_topic, rollup_topic),
        schedule=schedule,
        clock=clock,
        metrics=metrics,
        highwater=lambda topic, partition: app.consumer.highwater(TP(topic, partition)),
    )

    def taken(batch: list[Message]) -> list[Message]:
        """The messages this worker may score now, tracked for acknowledgement."""
        consumer = app.consumer
        generation = app.consumer_generation_id
        flowing = app.flow_control.is_active()
        owned = accounts.active_partitions
        kept = []
        for message in batch:
            if not flowing or message.generation_id != generation:
                # Fetched before a rebalance: read again from the last commit (as Faust's
                # own streams drop them).
                continue
            if message.partition not in owned:
                # Defence in depth: a partition now another worker's must not be written.
                metrics.skipped(SkipReason.MOVED.value)
                continue
            consumer.track_message(message)
            kept.append(message)
        return kept

    # On event time, the topic-partitions are scored in event-time order (``EventOrder``).
    order: EventOrder[Message] | None = None
    if isinstance(clock, EventClock) and settings.event_order:

        def waiting(topic: str, partition: int) -> int | None:
            return cast(ChsConsumer, app.consumer).records_waiting(TP(topic, partition))

        order = EventOrder(
            settings.event_topics, lambda: accounts.active_partitions, waiting, clock.wall
        )

    def idle() -> float | None:
        return order.wait_seconds if order is not None and order.held else None

    @app.task  # type: ignore[untyped-decorator]
    async def score_inputs() -> None:
        async for batch in batches(input_channel.queue, settings.input_batch_max, idle):
            if order is not None:
                batch = order.add(batch) if batch else order.release()
            if batch:
                await writer.put(score_batch(ports, taken(batch)))
                await wait_for_producer(app.producer.buffer)

    @app.task  # type: ignore[untyped-decorator]
    async def write_states() -> None:
        """Each batch's states to the changelog once its outputs are delivered."""
        try:
            await writer.run()
        except OutputLost as lost:
            log.error("Stopping the worker: %s", lost)
            await app.crash(lost)

    @app.timer(interval=settings.timer_interval)  # type: ignore[untyped-decorator]
    async def reevaluate_due_accounts() -> None:
        for partition, key, due in schedule.pop_due(clock.now, settings.timer_batch):
            prometheus_metrics.TIMER_TICKS.inc()
            tick = Tick(account_id=key.decode(), due_at=due)
            await ticks_topic.send(
                key=key, value=tick.model_dump_json().encode(), partition=partition
            )

    @app.task  # type: ignore[untyped-decorator]
    async def deliver_alerts() -> None:
        """Slack (or the log) in its own consumer: scoring never waits on it."""
        await AlertDelivery.from_settings(settings).run()

    async def ship_book(partition: int, book: bytes) -> None:
        await peers_topic.send(key=str(partition).encode(), value=book, partition=0)

    @app.timer(interval=settings.peers_ship_seconds)  # type: ignore[untyped-decorator]
    async def ship_peer_books() -> None:
        """This worker's partitions' peer sketches, for every worker to rank against."""
        prometheus_metrics.PEER_BOOKS_SHIPPED.inc(await peers.ship(ship_book))

    @app.task  # type: ignore[untyped-decorator]
    async def read_peer_books() -> None:
        await BookReader(settings, settings.topic_peers, peers.take).run()

    async def ship_audit_record(key: bytes, value: bytes | None) -> None:
        await audit_topic.send(key=key, value=value, partition=0)

    @app.timer(interval=settings.audit_ship_seconds)  # type: ignore[untyped-decorator]
    async def ship_audit() -> None:
        """This worker's audit books to every worker; the whole base's figures out."""
        prometheus_metrics.AUDIT_RECORDS_SHIPPED.inc(await audit.ship(ship_audit_record))
        for partition, key in audit.ready():
            schedule.set(partition, key, clock.now(partition))  # judged at the next tick
        tallies, outcomes = audit.totals()
        computed_at = datetime.fromtimestamp(clock.wall(), UTC)
        report = build_report(
            tallies, outcomes, auditor.versions, settings.audit_window_days, computed_at
        )
        prometheus_metrics.show_audit(report)
        await view.write_audit(report.model_dump_json())

    @app.task  # type: ignore[untyped-decorator]
    async def read_audit_books() -> None:
        await BookReader(settings, settings.topic_audit, audit.take).run()

    add_web_views(app, settings, accounts)

    @app.task  # type: ignore[untyped-decorator]
    async def write_score_view() -> None:
        """The Redis view, from what reached chs.scores and chs.alerts (its own consumer)."""
        await ViewFeed(settings, view).run()

    return app
