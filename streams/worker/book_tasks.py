"""The tasks that share per-partition books between workers: each worker ships its own
partitions' peer and audit books and reads every partition's (``book_reader``), and
publishes the live audit's figures for the whole base."""

from __future__ import annotations

from datetime import UTC, datetime

import faust

from readmodel.redis_view import ScoreView
from scoring.audit import Auditor
from scoring.audit_report import build_report
from streams.pipeline.clock import Clock
from streams.pipeline.due_schedule import DueSchedule
from streams.settings import Settings
from streams.worker import metrics
from streams.worker.audit_feed import LiveAudit
from streams.worker.book_reader import read_books
from streams.worker.peer_feed import LivePeers


def add_peer_books(
    app: faust.App, settings: Settings, peers_topic: faust.Topic, peers: LivePeers
) -> None:
    async def ship_book(partition: int, book: bytes) -> None:
        await peers_topic.send(key=str(partition).encode(), value=book, partition=0)

    @app.timer(interval=settings.peers_ship_seconds)  # type: ignore[untyped-decorator]
    async def ship_peer_books() -> None:
        """This worker's partitions' peer sketches, for every worker to rank against."""
        metrics.PEER_BOOKS_SHIPPED.inc(await peers.ship(ship_book))

    @app.task  # type: ignore[untyped-decorator]
    async def read_peer_books() -> None:
        await read_books(settings, settings.topic_peers, peers.take)


def add_audit_books(
    app: faust.App,
    settings: Settings,
    audit_topic: faust.Topic,
    audit: LiveAudit,
    auditor: Auditor,
    schedule: DueSchedule,
    clock: Clock,
    view: ScoreView,
) -> None:
    async def ship_audit_record(key: bytes, value: bytes | None) -> None:
        await audit_topic.send(key=key, value=value, partition=0)

    @app.timer(interval=settings.audit_ship_seconds)  # type: ignore[untyped-decorator]
    async def ship_audit() -> None:
        """This worker's audit books to every worker; the whole base's figures out."""
        metrics.AUDIT_RECORDS_SHIPPED.inc(await audit.ship(ship_audit_record))
        for partition, key in audit.ready():
            schedule.set(partition, key, clock.now(partition))  # judged at the next tick
        tallies, outcomes = audit.totals()
        computed_at = datetime.fromtimestamp(clock.wall(), UTC)
        report = build_report(
            tallies, outcomes, auditor.versions, settings.audit_window_days, computed_at
        )
        metrics.show_audit(report)
        await view.write_audit(report.model_dump_json())

    @app.task  # type: ignore[untyped-decorator]
    async def read_audit_books() -> None:
        await read_books(settings, settings.topic_audit, audit.take)
