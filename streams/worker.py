"""The Faust app: topics, the account table, the scoring task and the timers. Thin glue.

Path of one input: event / accounts / overrides / ticks topic -> ``score_inputs``, in batches
(validate and fold each message; then rescore and publish each touched account once,
``streams/batching.py``) -> ``chs.scores`` when the score moved, ``chs.alerts``, and, once
those are delivered, the table's changelog (``streams/outputs_first.py``). Invalid messages
go to ``chs.events.dlq`` with their original key and bytes and the reason in headers. The
Redis view is written from ``chs.scores`` and ``chs.alerts`` by a consumer of its own
(``streams/view_feed.py``), so scoring never waits on Redis. The timer turns due accounts
into ticks on the account's own partition, so every state change goes through the one
scoring task.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import faust
from faust.serializers import codecs
from faust.types import TP, Message

from alerts.config import AlertRules
from readmodel.redis_view import ScoreView
from scoring.audit import Auditor
from scoring.audit_report import build_report
from scoring.schedule import next_due
from scoring.scoring_model import ScoringModel
from scoring.state import AccountState, SourcePosition
from scoring.update import Rescorer, ScoreUpdate
from streams import prometheus_metrics
from streams.alerting import AlertDelivery
from streams.audit_feed import LiveAudit
from streams.batching import AccountBatch, batches, wait_for_producer
from streams.book_reader import BookReader
from streams.clock import Clock
from streams.connections import broker_credentials, redis_client
from streams.faust_overrides import ChsApp, CodecTable, RawMessageTopic
from streams.outputs_first import OutputLost, OutputsFirst, SettledBatch
from streams.peer_feed import LivePeers
from streams.processing import (
    Control,
    Folded,
    Processor,
    Rejected,
    Skipped,
    SkipReason,
    Tick,
    TopicRole,
)
from streams.settings import Settings
from streams.timers import DueSchedule
from streams.view_feed import ViewFeed
from streams.web import add_web_views

log = logging.getLogger(__name__)

ACCOUNT_STATE_CODEC = "chs_account_state"


def encode_state(state: AccountState) -> bytes:
    """An account's state as its changelog records it: compact JSON."""
    return state.model_dump_json(exclude_defaults=True).encode()


class AccountStateCodec(codecs.Codec):
    """Table values are ``AccountState`` in memory and compact JSON in the changelog."""

    def _dumps(self, obj: Any) -> bytes:
        assert isinstance(obj, AccountState)
        return encode_state(obj)

    def _loads(self, s: bytes) -> Any:
        return AccountState.model_validate_json(s)


codecs.register(ACCOUNT_STATE_CODEC, AccountStateCodec())


class AccountTable(CodecTable[bytes, AccountState]):
    """Account id (raw bytes) -> AccountState; our codec in the changelog and on recovery."""

    value_codec = ACCOUNT_STATE_CODEC

    schedule: DueSchedule
    model: ScoringModel
    clock: Clock
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
        """The changelog record of ``key``'s state, ``encoded`` already (``encode_state``;
        None deletes it), outside Faust's stream iteration (which ``table[key] = ...`` needs
        to find the partition); the store itself is set by the scoring task."""
        self.send_changelog(partition, key, encoded, value_serializer="raw")

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        """After every rebalance: schedule the accounts of the partitions we now own, only."""
        await super().on_recovery_completed(active_tps, standby_tps)
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


def count_band_change(update: ScoreUpdate) -> None:
    """Keep the accounts-by-band gauges in step with published scores."""
    if update.previous_band is None:
        prometheus_metrics.ACCOUNTS_HELD.inc()
    elif update.previous_band != update.band:
        prometheus_metrics.ACCOUNTS_BY_BAND.labels(update.previous_band).dec()
    if update.previous_band != update.band:
        prometheus_metrics.ACCOUNTS_BY_BAND.labels(update.band).inc()
    prometheus_metrics.SCORE_UPDATES.inc()


def withdraw(state: AccountState) -> None:
    """A churned account leaves the accounts-by-band gauges."""
    if state.published is not None:
        prometheus_metrics.ACCOUNTS_BY_BAND.labels(state.published.band).dec()
        prometheus_metrics.ACCOUNTS_HELD.dec()


def dlq_headers(reason_code: str, reason: str, source: SourcePosition) -> list[tuple[str, bytes]]:
    return [
        ("chs-reason-code", reason_code.encode()),
        ("chs-reason", reason.encode()),
        ("chs-source-topic", source.topic.encode()),
        ("chs-source-partition", str(source.partition).encode()),
        ("chs-source-offset", str(source.offset).encode()),
    ]


def topic_roles(settings: Settings) -> dict[str, TopicRole]:
    return {
        **settings.event_topics,
        settings.topic_accounts: Control.ACCOUNTS,
        settings.topic_overrides: Control.OVERRIDES,
        settings.topic_outcomes: Control.OUTCOMES,
        settings.topic_ticks: Control.TICKS,
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

    def handle(batch: list[Message]) -> SettledBatch[Message]:
        """Fold the batch, then rescore and publish each touched account once; what is left
        (the states to write once the outputs are delivered, the inputs to acknowledge) is
        the writer's."""
        began = time.perf_counter()
        consumer = app.consumer
        generation = app.consumer_generation_id
        flowing = app.flow_control.is_active()
        owned = accounts.active_partitions
        work = AccountBatch(processor, accounts.data.get)
        settled: SettledBatch[Message] = SettledBatch()
        outputs, taken = settled.outputs, settled.inputs
        for message in batch:
            if not flowing or message.generation_id != generation:
                # Fetched before a rebalance: read again from the last commit (as Faust's
                # own streams drop them).
                continue
            if message.partition not in owned:
                # Defence in depth: a partition now another worker's must not be written.
                prometheus_metrics.INPUTS_SKIPPED.labels(SkipReason.MOVED.value).inc()
                continue
            consumer.track_message(message)
            taken.append(message)
            role = roles.get(message.topic)
            source = SourcePosition(message.topic, message.partition, message.offset)
            outcome = work.add(role, message.key, message.value, source)
            prometheus_metrics.EVENTS_CONSUMED.labels(role.value if role else "unknown").inc()
            if isinstance(outcome, Rejected):
                error = outcome.error
                log.warning("Rejected %s/%d@%d: %s", *source, error)
                prometheus_metrics.EVENTS_REJECTED.labels(error.code.value).inc()
                prometheus_metrics.DLQ_RECORDS.labels("events").inc()
                dead_letter = dlq_topic.send_soon(
                    key=message.key,
                    value=message.value,
                    headers=dlq_headers(error.code.value, error.reason, source),
                )
                outputs.append(dead_letter)
            elif isinstance(outcome, Skipped):
                prometheus_metrics.INPUTS_SKIPPED.labels(outcome.reason.value).inc()
            elif outcome.event is not None:
                prometheus_metrics.EVENT_LAG.observe(
                    max(0.0, clock.wall() - outcome.event.occurred_ts)
                )
            elif isinstance(outcome, Folded) and outcome.role is Control.OUTCOMES:
                prometheus_metrics.OUTCOMES.labels(outcome.state.outcomes[-1].outcome.value).inc()
        for key, applied in work.settle():
            state = applied.state
            assert state.partition is not None
            schedule.set(state.partition, key, applied.next_due)
            if applied.withdrawn:
                withdraw(state)
                outputs.append(scores_topic.send_soon(key=key, value=None))
            if applied.forget:
                accounts.data.pop(key, None)
                settled.states.append((key, state.partition, None))
                continue
            accounts.data[key] = state
            if applied.update is not None:
                count_band_change(applied.update)
                value = applied.update.model_dump_json().encode()
                outputs.append(scores_topic.send_soon(key=key, value=value))
            for alert in applied.alerts:
                prometheus_metrics.ALERTS_RAISED.labels(alert.rule, alert.severity.value).inc()
                value = alert.model_dump_json().encode()
                outputs.append(alerts_topic.send_soon(key=key, value=value))
            settled.states.append((key, state.partition, encode_state(state)))
        if taken:
            prometheus_metrics.LAST_EVENT.set(clock.wall())
            last_read = {message.tp: message.offset for message in taken}
            for tp, offset in last_read.items():
                highwater = consumer.highwater(tp)
                if highwater is not None:  # unknown until the first fetch response
                    behind = max(0, highwater - offset - 1)
                    prometheus_metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(behind)
                    clock.backlog(tp.topic, tp.partition, behind)
        prometheus_metrics.BATCH_INPUTS.observe(len(taken))
        prometheus_metrics.BATCH_TIME.observe(time.perf_counter() - began)
        return settled

    @app.task  # type: ignore[untyped-decorator]
    async def score_inputs() -> None:
        async for batch in batches(input_channel.queue, settings.input_batch_max):
            await writer.put(handle(batch))
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
