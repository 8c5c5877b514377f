"""Slack delivery of alerts: Block Kit messages through incoming webhooks (``slack_sdk``).

``SlackNotifier.deliver`` posts one alert, at most about one message per second per webhook
(short bursts allowed), honouring 429 Retry-After, retrying 5xx and timeouts with exponential
backoff and jitter up to a bound, and reports the outcome; the caller sends failures to the
alerts dead-letter topic. Webhook URLs are secrets: they are never logged; routes are named.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import aiohttp
from prometheus_client import Counter
from pydantic import SecretStr
from slack_sdk.webhook.async_client import AsyncWebhookClient

from alerts.alert import Alert
from alerts.config import Severity

log = logging.getLogger(__name__)

# slack_sdk logs request URLs at debug level: give it a logger that never does.
_SDK_LOG = logging.getLogger("chs.slack_sdk")
_SDK_LOG.setLevel(logging.WARNING)
_SDK_LOG.propagate = False

SLACK_DELIVERIES = Counter(
    "chs_slack_deliveries_total", "Alerts handed to Slack, by outcome", ["outcome"]
)
SLACK_RETRIES = Counter("chs_slack_retries_total", "Slack posts retried after a 5xx or timeout")
SLACK_RATE_LIMITED = Counter("chs_slack_rate_limited_total", "Slack answers 429 Too Many Requests")

_EMOJI = {
    Severity.CRITICAL: ":red_circle:",
    Severity.WARNING: ":large_orange_circle:",
    Severity.INFO: ":large_green_circle:",
}


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def slack_message(alert: Alert) -> tuple[str, list[dict[str, Any]]]:
    """(plain-text fallback, Block Kit blocks) for ``alert``."""
    band = (
        alert.new_band
        if alert.old_band in (None, alert.new_band)
        else (f"{alert.old_band} -> {alert.new_band}")
    )
    why = "\n".join(f"• {driver}" for driver in alert.drivers) or "• (no change in the inputs)"
    drags = "\n".join(f"• {drag}" for drag in alert.drags)
    fields = [
        {"type": "mrkdwn", "text": f"*Score*\n{_score(alert.old_score)} -> {alert.new_score:.1f}"},
        {"type": "mrkdwn", "text": f"*Band*\n{band}"},
        {"type": "mrkdwn", "text": f"*Owner*\n{alert.owner or 'unassigned'}"},
        {"type": "mrkdwn", "text": f"*Segment*\n{alert.segment or 'default'}"},
    ]
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": f"{_EMOJI[alert.severity]} {alert.title}"[:150]},
        },
        {"type": "section", "fields": fields},
        *(
            [
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": f"*What pulls it down*\n{drags}"[:3000]},
                }
            ]
            if drags
            else []
        ),
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Why it moved*\n{why}"[:3000]}},
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"{alert.severity.value} · {alert.rule} · "
                    f"{alert.occurred_at:%Y-%m-%d %H:%M} UTC · {alert.model_version} · "
                    f"id {alert.alert_id}",
                }
            ],
        },
    ]
    text = (
        f"[{alert.severity.value}] {alert.title}. Band {band}. "
        f"{_pulls(alert)}Why it moved: {'; '.join(alert.drivers) or '-'}. "
        f"Owner: {alert.owner or 'unassigned'}."
    )
    return text, blocks


def _pulls(alert: Alert) -> str:
    return f"What pulls it down: {'; '.join(alert.drags)}. " if alert.drags else ""


def log_line(alert: Alert) -> str:
    """One readable line per alert, for when no webhook is configured."""
    why = "; ".join(alert.drivers) or "-"
    pulls = f" | pulls it down: {'; '.join(alert.drags)}" if alert.drags else ""
    return (
        f"ALERT [{alert.severity.value}] {alert.title}{pulls} | why it moved: {why} | "
        f"owner: {alert.owner or 'unassigned'} | {alert.alert_id}"
    )


@dataclass(frozen=True)
class WebhookRoutes:
    """Which webhook an alert goes to: a segment route, else a severity route, else default."""

    default: SecretStr | None
    routes: dict[str, SecretStr]

    def route_for(self, alert: Alert) -> tuple[str, SecretStr] | None:
        for name in (f"segment:{alert.segment}", f"severity:{alert.severity.value}"):
            if name in self.routes:
                return name, self.routes[name]
        return ("default", self.default) if self.default is not None else None

    @property
    def configured(self) -> bool:
        return self.default is not None or bool(self.routes)


class TokenBucket:
    """About ``rate`` messages a second, bursts of up to ``burst``."""

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._rate, self._burst = rate, float(burst)
        self._tokens = float(burst)
        self._clock, self._sleep = clock, sleep
        self._updated = clock()

    async def acquire(self) -> None:
        while True:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
            self._updated = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return
            await self._sleep((1.0 - self._tokens) / self._rate)


@dataclass(frozen=True)
class DeliveryPolicy:
    max_attempts: int = 5
    """Posts tried per alert on 5xx, timeouts and connection errors."""
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_rate_limited: int = 10
    """429 answers honoured per alert before giving up."""
    timeout: int = 10
    rate: float = 1.0
    burst: int = 3


class Outcome(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class Delivery:
    outcome: Outcome
    route: str
    attempts: int
    reason: str = ""


class _Retry(Exception):
    def __init__(self, reason: str, after: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.after = reason, after


class SlackNotifier:
    def __init__(
        self,
        routes: WebhookRoutes,
        policy: DeliveryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.routes = routes
        self.policy = policy or DeliveryPolicy()
        self._sleep = sleep
        self._clock = clock or time.monotonic
        self._jitter = jitter
        self._clients: dict[str, AsyncWebhookClient] = {}
        self._buckets: dict[str, TokenBucket] = {}

    def _client(self, url: SecretStr) -> tuple[AsyncWebhookClient, TokenBucket]:
        key = url.get_secret_value()
        if key not in self._clients:
            self._clients[key] = AsyncWebhookClient(
                key, timeout=self.policy.timeout, logger=_SDK_LOG, retry_handlers=[]
            )
            self._buckets[key] = TokenBucket(
                self.policy.rate, self.policy.burst, self._clock, self._sleep
            )
        return self._clients[key], self._buckets[key]

    async def deliver(self, alert: Alert) -> Delivery:
        route = self.routes.route_for(alert)
        if route is None:
            raise ValueError("no webhook route for this alert; check routes.configured first")
        name, url = route
        client, bucket = self._client(url)
        text, blocks = slack_message(alert)
        attempts = failures = limited = 0
        while True:
            await bucket.acquire()
            attempts += 1
            try:
                await self._post(client, text, blocks)
            except _Retry as retry:
                if retry.after is not None:
                    limited += 1
                    SLACK_RATE_LIMITED.inc()
                    if limited > self.policy.max_rate_limited:
                        return self._done(Outcome.FAILED, name, attempts, retry.reason)
                    await self._sleep(retry.after)
                    continue
                failures += 1
                if failures >= self.policy.max_attempts:
                    return self._done(Outcome.FAILED, name, attempts, retry.reason)
                SLACK_RETRIES.inc()
                delay = min(self.policy.max_delay, self.policy.base_delay * 2 ** (failures - 1))
                await self._sleep(delay * (0.5 + self._jitter() / 2))
            except _Rejected as rejected:
                return self._done(Outcome.FAILED, name, attempts, rejected.reason)
            else:
                return self._done(Outcome.DELIVERED, name, attempts)

    async def _post(
        self, client: AsyncWebhookClient, text: str, blocks: list[dict[str, Any]]
    ) -> None:
        try:
            response = await client.send(text=text, blocks=blocks)
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            # The exception text may carry the URL: only its type is reported.
            raise _Retry(f"request failed: {type(error).__name__}") from None
        status = response.status_code
        if status == 200:
            return
        if status == 429:
            after = response.headers.get("Retry-After") or response.headers.get("retry-after")
            raise _Retry("429 rate limited", after=_seconds(after))
        if status >= 500:
            raise _Retry(f"HTTP {status}")
        raise _Rejected(f"HTTP {status}: {response.body[:200]}")

    def _done(self, outcome: Outcome, route: str, attempts: int, reason: str = "") -> Delivery:
        SLACK_DELIVERIES.labels(outcome.value).inc()
        if outcome is Outcome.FAILED:
            log.warning(
                "Slack delivery via route %s failed after %d attempts: %s", route, attempts, reason
            )
        return Delivery(outcome, route, attempts, reason)

    async def close(self) -> None:
        for client in self._clients.values():
            if client.session is not None:
                await client.session.close()


class _Rejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _seconds(value: Any) -> float:
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return 1.0
