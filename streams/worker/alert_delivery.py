"""Alert delivery in the worker: Slack when a webhook is configured, else the log.

Its own consumer of ``chs.alerts`` (group ``<app_id>-alerts``), committing each partition's
offset only after the alert was delivered, recorded as delivered, or sent to the alerts
dead-letter topic: at-least-once, and alerts already delivered (ids remembered in Redis with an
expiry) are skipped, so a restarted worker posts nothing twice. It runs beside the scoring
task, never in its way: scoring does not wait on Slack. A plain aiokafka consumer
(``consumer_loop``) rather than a Faust agent (docs/dev-broker.md says why).
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition

from alerts.alert import Alert
from alerts.delivery.dedup import DeliveredAlerts
from alerts.delivery.slack import DeliveryPolicy, Outcome, SlackNotifier, WebhookRoutes, log_line
from streams.settings import Settings
from streams.wire import REASON_HEADER
from streams.worker.connections import kafka_options, redis_client
from streams.worker.consumer_loop import ConsumerLoop, Round
from streams.worker.metrics import DLQ_RECORDS

log = logging.getLogger(__name__)


class FinishDeliveryFirst(ConsumerRebalanceListener):  # type: ignore[misc]
    """Holds a rebalance until the alert being delivered is recorded and its offset committed.

    The new owner of a partition skips alerts recorded as delivered; one still being posted
    when the partition moved is not recorded yet, and would be posted by both workers.
    """

    def __init__(self) -> None:
        self.in_flight: asyncio.Future[None] | None = None

    async def on_partitions_revoked(self, revoked: object) -> None:
        if self.in_flight is not None:
            await asyncio.wait([self.in_flight])

    async def on_partitions_assigned(self, assigned: object) -> None:
        pass


class AlertDelivery:
    def __init__(
        self,
        settings: Settings,
        notifier: SlackNotifier | None,
        delivered: DeliveredAlerts | None,
    ) -> None:
        self._settings = settings
        self._notifier = notifier
        self._delivered = delivered
        self._listener = FinishDeliveryFirst()
        self._producer: AIOKafkaProducer | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertDelivery:
        routes = WebhookRoutes(settings.slack_webhook_url, settings.slack_routes)
        if not routes.configured:
            log.info("No Slack webhook configured: alerts are written to the log")
            return cls(settings, None, None)
        policy = DeliveryPolicy(
            max_attempts=settings.slack_max_attempts,
            base_delay=settings.slack_retry_base_seconds,
            timeout=settings.slack_timeout_seconds,
            rate=settings.slack_rate_per_second,
            burst=settings.slack_burst,
        )
        ttl = int(settings.alert_dedup_days * 86_400)
        return cls(
            settings,
            SlackNotifier(routes, policy),
            DeliveredAlerts(redis_client(settings), ttl, settings.app_id),
        )

    async def handle(self, alert: Alert) -> str | None:
        """Deliver ``alert``; the reason if it must go to the dead-letter topic."""
        notifier, delivered = self._notifier, self._delivered
        if notifier is None or delivered is None or notifier.routes.route_for(alert) is None:
            log.info(log_line(alert))
            return None
        if await delivered.seen(alert.alert_id):
            return None
        result = await notifier.deliver(alert)
        if result.outcome is Outcome.DELIVERED:
            await delivered.remember(alert.alert_id)
            return None
        DLQ_RECORDS.labels("alerts").inc()
        return f"route {result.route}: {result.reason} after {result.attempts} attempts"

    async def run(self) -> None:
        """Consume ``chs.alerts`` until cancelled."""
        settings = self._settings
        self._producer = AIOKafkaProducer(
            **kafka_options(settings),
            max_batch_size=settings.producer_max_batch_size,
            acks="all",
        )
        loop = ConsumerLoop(
            settings,
            "alerts",
            [settings.topic_alerts],
            group=f"{settings.app_id}-alerts",
            listener=self._listener,
            max_records=100,
        )
        try:
            await self._producer.start()
            await loop.run(self.sink)
        finally:
            await self._producer.stop()
            if self._notifier is not None:
                await self._notifier.close()
            if self._delivered is not None:
                await self._delivered.close()

    async def sink(self, received: Round) -> bool:
        """Deliver each alert of the round in turn, committing after each."""
        for tp, records in received.fetched.items():
            for record in records:
                if not received.owns(tp):
                    break  # taken by a rebalance: the new owner goes on from the commit
                # Shielded: a stop lets the alert in hand finish and be recorded.
                delivery = asyncio.ensure_future(self._one(received, tp, record))
                self._listener.in_flight = delivery
                await asyncio.shield(delivery)
        return True

    async def _one(
        self, received: Round, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]
    ) -> None:
        try:
            alert = Alert.model_validate_json(record.value or b"")
        except ValueError:
            failure: str | None = "not an alert"
        else:
            failure = await self.handle(alert)
        if failure is not None and self._producer is not None:
            await self._producer.send_and_wait(
                self._settings.topic_alerts_dlq,
                key=record.key,
                value=record.value,
                headers=[(REASON_HEADER, failure.encode())],
            )
        # A rebalance may have taken the partition while the alert was being posted: the new
        # owner reads it again from the last commit and finds it among the delivered ones.
        await received.commit({tp: record.offset + 1})
