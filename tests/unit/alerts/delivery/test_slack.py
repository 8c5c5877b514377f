"""SlackNotifier against a local server answering like Slack (200, 429, 5xx, slow)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from alerts.alert import Alert
from alerts.config import Severity
from alerts.delivery.slack import (
    DeliveryPolicy,
    Outcome,
    SlackNotifier,
    TokenBucket,
    WebhookRoutes,
    log_line,
    slack_message,
)
from tests.slack_server import FakeSlack, Reply


def alert(severity: Severity = Severity.WARNING, segment: str | None = None) -> Alert:
    return Alert(
        alert_id="a1",
        account_id="acme",
        rule="band_change",
        severity=severity,
        title="acme is now at-risk (75 -> 66)",
        old_score=75.0,
        new_score=66.0,
        old_band="healthy",
        new_band="at-risk",
        drivers=["usage -9: days since last login 2 -> 16"],
        owner="ana",
        segment=segment,
        occurred_at=datetime(2026, 3, 2, 12, tzinfo=UTC),
        trigger="e1",
        model_version="default@x",
    )


class Sleeps:
    """Records requested sleeps and sleeps for real only a little (keeps tests fast)."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        import asyncio

        self.asked.append(seconds)
        await asyncio.sleep(min(seconds, 0.01))


def notifier(
    slack: FakeSlack, sleeps: Sleeps, max_attempts: int = 5, base_delay: float = 0.5
) -> SlackNotifier:
    routes = WebhookRoutes(SecretStr(slack.url), {})
    policy = DeliveryPolicy(timeout=2, max_attempts=max_attempts, base_delay=base_delay)
    return SlackNotifier(routes, policy, sleep=sleeps, jitter=lambda: 1.0)


def test_what_pulls_the_score_down_is_a_section_apart_from_why_it_moved() -> None:
    pulled = alert(Severity.WARNING).model_copy(
        update={"drags": ["billing -30: failed payments in 30 days 2"]}
    )
    text, blocks = slack_message(pulled)
    assert [b["type"] for b in blocks] == ["header", "section", "section", "section", "context"]
    assert (
        blocks[2]["text"]["text"]
        == "*What pulls it down*\n• billing -30: failed payments in 30 days 2"
    )
    assert blocks[3]["text"]["text"].startswith("*Why it moved*\n")
    assert "What pulls it down: billing -30: failed payments in 30 days 2. Why it moved:" in text
    assert "pulls it down: billing -30" in log_line(pulled)


def test_message_has_blocks_and_a_plain_text_fallback() -> None:
    text, blocks = slack_message(alert(Severity.CRITICAL))
    assert [b["type"] for b in blocks] == ["header", "section", "section", "context"]
    assert blocks[0]["text"]["text"] == ":red_circle: acme is now at-risk (75 -> 66)"
    fields = [f["text"] for f in blocks[1]["fields"]]
    assert fields == [
        "*Score*\n75.0 -> 66.0",
        "*Band*\nhealthy -> at-risk",
        "*Owner*\nana",
        "*Segment*\ndefault",
    ]
    assert "• usage -9: days since last login 2 -> 16" in blocks[2]["text"]["text"]
    assert text.startswith("[critical] acme is now at-risk (75 -> 66). Band healthy -> at-risk.")
    assert "Owner: ana" in text
    assert "usage -9" in log_line(alert())


async def test_delivers_once_on_200(slack: FakeSlack) -> None:
    result = await notifier(slack, Sleeps()).deliver(alert())
    assert (result.outcome, result.attempts, result.route) == (Outcome.DELIVERED, 1, "default")
    assert len(slack.posts) == 1
    assert slack.posts[0].body["blocks"][0]["type"] == "header"
    assert "acme" in slack.posts[0].body["text"]


async def test_429_waits_for_retry_after(slack: FakeSlack) -> None:
    slack.script(Reply(429, "rate_limited", {"Retry-After": "2"}))
    sleeps = Sleeps()
    result = await notifier(slack, sleeps).deliver(alert())
    assert result.outcome is Outcome.DELIVERED
    assert 2.0 in sleeps.asked
    assert len(slack.requests) == 2
    assert len(slack.posts) == 1


async def test_5xx_is_retried_with_growing_backoff(slack: FakeSlack) -> None:
    slack.script(Reply(500), Reply(503), Reply(502))
    sleeps = Sleeps()
    result = await notifier(slack, sleeps, base_delay=0.5).deliver(alert())
    assert (result.outcome, result.attempts) == (Outcome.DELIVERED, 4)
    backoffs = [s for s in sleeps.asked if s in (0.5, 1.0, 2.0)]
    assert backoffs == [0.5, 1.0, 2.0]  # jitter pinned to its top
    assert len(slack.posts) == 1


async def test_gives_up_after_the_retry_budget(slack: FakeSlack) -> None:
    slack.script(*[Reply(500)] * 10)
    result = await notifier(slack, Sleeps(), max_attempts=3).deliver(alert())
    assert (result.outcome, result.attempts) == (Outcome.FAILED, 3)
    assert result.reason == "HTTP 500"
    assert slack.posts == []


async def test_a_4xx_is_not_retried(slack: FakeSlack) -> None:
    slack.script(Reply(400, "invalid_blocks"))
    result = await notifier(slack, Sleeps()).deliver(alert())
    assert (result.outcome, result.attempts) == (Outcome.FAILED, 1)
    assert "invalid_blocks" in result.reason


async def test_a_slow_server_times_out_and_is_retried(slack: FakeSlack) -> None:
    slack.script(Reply(delay=3.0))
    result = await notifier(slack, Sleeps()).deliver(alert())
    assert (result.outcome, result.attempts) == (Outcome.DELIVERED, 2)
    assert result.route == "default"


async def test_an_unreachable_webhook_fails_without_logging_its_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "http://127.0.0.1:9/services/T1/B1/VERYSECRET"
    routes = WebhookRoutes(SecretStr(secret), {})
    sleeps = Sleeps()
    with caplog.at_level(logging.DEBUG):
        result = await SlackNotifier(routes, DeliveryPolicy(max_attempts=2), sleep=sleeps).deliver(
            alert()
        )
    assert result.outcome is Outcome.FAILED
    assert result.reason.startswith("request failed")
    assert "VERYSECRET" not in caplog.text
    assert "VERYSECRET" not in result.reason


def test_routes_by_segment_then_severity_then_default() -> None:
    routes = WebhookRoutes(
        SecretStr("http://default"),
        {
            "severity:critical": SecretStr("http://crit"),
            "segment:enterprise": SecretStr("http://ent"),
        },
    )
    assert routes.route_for(alert(Severity.CRITICAL, "enterprise"))[0] == "segment:enterprise"  # type: ignore[index]
    assert routes.route_for(alert(Severity.CRITICAL))[0] == "severity:critical"  # type: ignore[index]
    assert routes.route_for(alert(Severity.INFO))[0] == "default"  # type: ignore[index]
    assert WebhookRoutes(None, {}).route_for(alert()) is None


async def test_token_bucket_allows_a_burst_then_one_a_second() -> None:
    now = [0.0]
    waited: list[float] = []

    async def sleep(seconds: float) -> None:
        waited.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(rate=1.0, burst=3, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        await bucket.acquire()
    assert waited == [1.0, 1.0]
    assert now[0] == 2.0
