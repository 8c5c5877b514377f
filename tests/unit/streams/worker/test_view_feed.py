from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from alerts.alert import Alert, alert_id
from alerts.config import Severity
from streams.settings import Settings
from streams.worker.consumer_loop import Round
from streams.worker.view_feed import ViewFeed
from tests.unit.streams.worker.test_consumer_loop import FakeConsumer


class FakeView:
    def __init__(self) -> None:
        self.updates: list[bytes] = []
        self.alerts: list[Alert] = []
        self.removed: list[str] = []
        self.erased: list[str] = []

    def remove(self, account_id: str, erased_at: float | None = None) -> None:
        self.removed.append(account_id)
        if erased_at is not None:
            self.erased.append(account_id)

    def add_published(self, encoded: bytes) -> None:
        self.updates.append(encoded)

    def add_alert(self, alert: Alert) -> None:
        self.alerts.append(alert)

    async def flush(self) -> bool:
        return True

    async def close(self) -> None:
        return None


def record(tp: TopicPartition, offset: int, value: bytes | None) -> ConsumerRecord[bytes, bytes]:
    size = len(value or b"")
    return ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, b"acme", value, None, 4, size, ())


def an_alert() -> Alert:
    return Alert(
        alert_id=alert_id("acme", "critical_event:failed_payment", "ev-1"),
        account_id="acme",
        rule="critical_event:failed_payment",
        severity=Severity.CRITICAL,
        title="acme: failed payment",
        old_score=None,
        new_score=40.0,
        old_band=None,
        new_band="critical",
        drivers=[],
        owner=None,
        segment=None,
        occurred_at=datetime(2026, 3, 2, tzinfo=UTC),
        trigger="ev-1",
        model_version="test",
    )


def test_updates_and_alerts_go_to_the_view_and_the_offsets_after_them_are_kept() -> None:
    settings = Settings()
    view = FakeView()
    feed = ViewFeed(settings, view)
    scores = TopicPartition(settings.topic_scores, 1)
    alerts = TopicPartition(settings.topic_alerts, 0)
    taken = feed.take(
        {
            scores: [record(scores, 7, b'{"u": 1}'), record(scores, 8, b'{"u": 2}')],
            alerts: [record(alerts, 3, an_alert().model_dump_json().encode())],
        }
    )
    assert taken == 3
    assert view.updates == [b'{"u": 1}', b'{"u": 2}']
    assert view.alerts == [an_alert()]
    assert feed.read_positions() == {scores: 9, alerts: 4}
    assert feed.read_positions() == {}  # handed over once


def test_a_withdrawn_score_takes_the_account_out_of_the_view() -> None:
    settings = Settings()
    view = FakeView()
    feed = ViewFeed(settings, view)
    scores = TopicPartition(settings.topic_scores, 0)
    feed.take({scores: [record(scores, 1, b'{"u": 1}'), record(scores, 2, None)]})
    assert view.updates == [b'{"u": 1}']
    assert view.removed == ["acme"]
    assert feed.read_positions() == {scores: 3}


def test_a_record_of_another_shape_is_logged_and_passed(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings()
    view = FakeView()
    feed = ViewFeed(settings, view)
    alerts = TopicPartition(settings.topic_alerts, 0)
    with caplog.at_level(logging.ERROR):
        assert feed.take({alerts: [record(alerts, 5, b'{"not": "an alert"}')]}) == 1
    assert view.alerts == []
    assert feed.read_positions() == {alerts: 6}  # not read again and again
    assert f"{alerts}@5 is not a valid alert" in caplog.text


async def test_while_redis_is_away_nothing_is_committed_and_the_loop_is_held() -> None:
    settings = Settings()
    view = FakeView()
    redis_up = [False, True]
    view.flush = lambda: _answer(redis_up.pop(0))  # type: ignore[method-assign]
    feed = ViewFeed(settings, view)
    scores = TopicPartition(settings.topic_scores, 0)
    consumer = FakeConsumer([])
    consumer.owned = {scores}
    held = await feed.sink(Round(consumer, {scores: [record(scores, 4, b"{}")]}, "view"))
    assert held is False
    assert consumer.commits == []
    # Back: what was read while away is written and committed, with nothing new read.
    assert await feed.sink(Round(consumer, {}, "view")) is True
    assert consumer.commits == [{scores: 5}]
    assert view.updates == [b"{}"]


async def _answer(value: bool) -> bool:
    return value
