"""The worker's wiring: the Faust app, its topics and table, and the tasks that run on it.

Path of one input: event / accounts / overrides / ticks topic -> the scoring task
(``streams/worker/scoring_task.py``), in batches (the application step
``streams/pipeline/window_step.py``: validate and fold each message; then rescore and publish
each touched account once) -> ``chs.scores`` when the change matters (docs/events.md),
``chs.alerts``, and, once those are delivered, the table's changelog
(``streams/pipeline/checkpoint.py``). Invalid messages go to ``chs.events.dlq`` with their
original key and bytes and the reason in headers. The Redis view is written from
``chs.scores`` and ``chs.alerts`` by a consumer of its own (``streams/worker/view_feed.py``),
and alerts are delivered by another (``streams/worker/alert_delivery.py``), so scoring never
waits on Redis or Slack.
"""

from __future__ import annotations

from typing import cast

import faust

from alerts.config import AlertRules
from readmodel.redis_view import ScoreView
from scoring.audit import Auditor
from scoring.scoring_model import ScoringModel
from scoring.update import Rescorer
from streams.pipeline.account_step import Processor
from streams.pipeline.clock import Clock
from streams.pipeline.due_schedule import DueSchedule
from streams.pipeline.ownership import Ownership
from streams.settings import Settings
from streams.worker.account_table import AccountTable
from streams.worker.alert_delivery import AlertDelivery
from streams.worker.audit_feed import LiveAudit
from streams.worker.book_tasks import add_audit_books, add_peer_books
from streams.worker.connections import broker_credentials, redis_client
from streams.worker.faust_overrides import ChsApp, RawMessageTopic, batch_sender
from streams.worker.peer_feed import LivePeers
from streams.worker.scoring_task import TopicPublisher, add_scoring_task
from streams.worker.state_records import StateWriter
from streams.worker.view_feed import ViewFeed
from streams.worker.web import add_web_views


def faust_app(settings: Settings) -> ChsApp:
    return ChsApp(
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


class WorkerTopics:
    """The Faust topics the worker reads and writes raw (shapes from ``Settings.topics``)."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        partitions = {t.name: t.partitions(settings.topic_partitions) for t in settings.topics}

        def raw(*names: str, kind: type[faust.Topic] = faust.Topic) -> faust.Topic:
            return kind(
                app,
                topics=list(names),
                partitions=partitions[names[0]],
                key_serializer="raw",
                value_serializer="raw",
            )

        self.inputs = cast(RawMessageTopic, raw(*settings.input_roles, kind=RawMessageTopic))
        self.peers = raw(settings.topic_peers)
        self.audit = raw(settings.topic_audit)
        self.publisher = TopicPublisher(
            lambda: batch_sender(app),
            scores=settings.topic_scores,
            alerts=settings.topic_alerts,
            dlq=settings.topic_dlq,
            rollup=settings.topic_rollup,
        )


def create_app(
    settings: Settings,
    model: ScoringModel,
    rules: AlertRules,
    clock: Clock,
    shadows: tuple[ScoringModel, ...] = (),
) -> faust.App:
    app = faust_app(settings)
    topics = WorkerTopics(app, settings)
    peers, audit, schedule = LivePeers(model.peers.min_accounts), LiveAudit(), DueSchedule()
    auditor = Auditor.for_models(model, shadows, audit, settings.audit_window_days)
    ownership = Ownership(schedule, model, clock, auditor, peers, audit)
    accounts = AccountTable(app, settings.topic_partitions, StateWriter(), ownership)
    app.tables.add(accounts)
    rescorer = Rescorer(model, peers, auditor, shadows, settings.publish_min_delta)
    processor = Processor(
        rescorer, rules, clock, settings.max_future_seconds, settings.max_event_bytes
    )
    add_scoring_task(app, settings, topics.inputs, topics.publisher, accounts, processor, clock)
    add_peer_books(app, settings, topics.peers, peers)
    segments = [segment.name for segment in model.segments]
    view = ScoreView(redis_client(settings), bands=model.band_labels, segments=segments)
    add_audit_books(app, settings, topics.audit, audit, auditor, schedule, clock, view)

    @app.task  # type: ignore[untyped-decorator]
    async def write_score_view() -> None:
        """The Redis view, from what reached chs.scores and chs.alerts (its own consumer)."""
        await ViewFeed(settings, view).run()

    @app.task  # type: ignore[untyped-decorator]
    async def deliver_alerts() -> None:
        """Slack (or the log) in its own consumer: scoring never waits on it."""
        await AlertDelivery.from_settings(settings).run()

    add_web_views(app, settings, accounts)
    return app
