"""The throughput benchmarks' shared workload: a realistic mix of the five event kinds over
10,000 accounts (the demo generator's history), produced once to the event topics so that
every contender reads the same bytes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from scoring.events import Event, PaymentEvent, PaymentStatus
from streams.ops.demo import DemoOptions, history_events
from streams.settings import Settings
from streams.worker.connections import kafka_options
from streams.worker.event_producer import EventProducer

ACCOUNTS = 10_000
EVENTS = 200_000
RETENTION_MS = str(7 * 24 * 3600 * 1000)


def realistic_events(count: int = EVENTS, accounts: int = ACCOUNTS) -> list[Event]:
    """``count`` events of the demo mix (logins, feature use, tickets, payments, surveys)."""
    days = 1
    while True:
        options = DemoOptions(accounts=accounts, history_days=days, seed=7)
        events = history_events(options, time.time())
        if len(events) >= count:
            return events[-count:]  # the most recent days: inside every window
        days += max(1, round(days * (count / max(1, len(events)) - 1)))


async def create_event_topics(settings: Settings) -> None:
    """The event topics with explicit retention and cleanup policy (Quix Streams asks for
    them, and the dev broker reports only configs set at creation)."""
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    name=name,
                    num_partitions=settings.topic_partitions,
                    replication_factor=1,
                    topic_configs={"retention.ms": RETENTION_MS, "cleanup.policy": "delete"},
                )
                for name in settings.event_topics
            ]
        )
    finally:
        await admin.close()


async def produce(settings: Settings, events: Sequence[Event]) -> None:
    async with EventProducer(settings) as producer:
        for event in events:
            await producer.send(event)
        await producer.flush()


def failed_payment_probe(account: str, event_id: str) -> PaymentEvent:
    """A probe that always yields an alert and, with it, a ScoreUpdate: a failed payment now
    (a login moves a score too little to be published, docs/events.md)."""
    return PaymentEvent(
        event_id=event_id,
        account_id=account,
        occurred_at=datetime.now(UTC),
        invoice_id=f"inv-{event_id}",
        status=PaymentStatus.FAILED,
        amount="99.00",
        currency="EUR",
    )
