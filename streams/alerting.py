"""Alert delivery for the worker: Slack when a webhook is configured, else the log.

Skips alerts already delivered (ids remembered in Redis with an expiry), so a restarted
agent posts nothing twice; returns the reason when an alert could not be delivered, for the
alerts dead-letter topic.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter

from alerts.dedup import DeliveredAlerts
from alerts.model import Alert
from alerts.slack import DeliveryPolicy, Outcome, SlackNotifier, WebhookRoutes, log_line
from streams.settings import Settings

log = logging.getLogger(__name__)

ALERTS_RAISED = Counter(
    "chs_alerts_total", "Alerts raised, by rule and severity", ["rule", "severity"]
)
ALERTS_DEAD = Counter("chs_alerts_dlq_total", "Alerts sent to the alerts dead-letter topic")


class AlertDelivery:
    def __init__(self, notifier: SlackNotifier | None, delivered: DeliveredAlerts | None) -> None:
        self._notifier = notifier
        self._delivered = delivered

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertDelivery:
        routes = WebhookRoutes(settings.slack_webhook_url, settings.slack_routes)
        if not routes.configured:
            log.info("No Slack webhook configured: alerts are written to the log")
            return cls(None, None)
        policy = DeliveryPolicy(
            max_attempts=settings.slack_max_attempts,
            base_delay=settings.slack_retry_base_seconds,
            timeout=settings.slack_timeout_seconds,
            rate=settings.slack_rate_per_second,
            burst=settings.slack_burst,
        )
        ttl = int(settings.alert_dedup_days * 86_400)
        return cls(
            SlackNotifier(routes, policy),
            DeliveredAlerts.from_url(settings.redis_url, ttl),
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
        ALERTS_DEAD.inc()
        return f"route {result.route}: {result.reason} after {result.attempts} attempts"
