"""Alert delivery: what is posted, what goes to the dead letters, what is committed, and its
rebalance listener."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition
from pydantic import SecretStr

from alerts.alert import Alert
from alerts.delivery.slack import Delivery, Outcome, WebhookRoutes
from streams.settings import Settings
from streams.worker.alert_delivery import AlertDelivery, FinishDeliveryFirst
from streams.worker.consumer_loop import Round
from tests.unit.streams.worker.test_consumer_loop import FakeConsumer
from tests.unit.streams.worker.test_view_feed import an_alert, record


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


class FakeNotifier:
    def __init__(self, outcome: Outcome) -> None:
        self.routes = WebhookRoutes(SecretStr("http://127.0.0.1:9/hook"), {})
        self.outcome = outcome
        self.posted: list[str] = []

    async def deliver(self, alert: Alert) -> Delivery:
        self.posted.append(alert.alert_id)
        return Delivery(self.outcome, "default", 5, "HTTP 500")


class FakeDelivered:
    def __init__(self, seen: set[str]) -> None:
        self.ids = seen

    async def seen(self, alert_id: str) -> bool:
        return alert_id in self.ids

    async def remember(self, alert_id: str) -> None:
        self.ids.add(alert_id)


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, list[tuple[str, bytes]]]] = []

    async def send_and_wait(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        self.sent.append((topic, value, headers))


def delivery_with(outcome: Outcome, seen: set[str]) -> tuple[AlertDelivery, FakeNotifier]:
    notifier = FakeNotifier(outcome)
    delivery = AlertDelivery(Settings(), notifier, FakeDelivered(seen))  # type: ignore[arg-type]
    return delivery, notifier


async def test_an_alert_is_posted_once_then_remembered() -> None:
    delivery, notifier = delivery_with(Outcome.DELIVERED, set())
    assert await delivery.handle(an_alert()) is None
    assert await delivery.handle(an_alert()) is None  # a redelivery after a restart
    assert notifier.posted == [an_alert().alert_id]


async def test_an_alert_slack_refused_goes_to_the_dead_letters_with_why() -> None:
    delivery, _ = delivery_with(Outcome.FAILED, set())
    assert await delivery.handle(an_alert()) == "route default: HTTP 500 after 5 attempts"


async def test_each_alert_is_committed_after_it_and_a_moved_partition_is_left_alone() -> None:
    settings = Settings()
    delivery, notifier = delivery_with(Outcome.DELIVERED, set())
    producer = FakeProducer()
    delivery._producer = producer
    mine, moved = TopicPartition(settings.topic_alerts, 0), TopicPartition(settings.topic_alerts, 1)
    consumer = FakeConsumer([])
    consumer.owned = {mine}
    good = an_alert().model_dump_json().encode()
    fetched = {
        mine: [record(mine, 3, good), record(mine, 4, b"not json")],
        moved: [record(moved, 8, good)],
    }
    assert await delivery.sink(Round(consumer, fetched, "alerts")) is True
    assert consumer.commits == [{mine: 4}, {mine: 5}]
    assert notifier.posted == [an_alert().alert_id]
    assert producer.sent == [
        (settings.topic_alerts_dlq, b"not json", [("chs-reason", b"not an alert")])
    ]
