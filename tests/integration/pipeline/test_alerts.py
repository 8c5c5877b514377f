"""Alerts end to end: the worker on the real broker, a local server answering like Slack."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from alerts.alert import Alert
from scoring.events import Event, PaymentStatus
from streams.ops.devstack import ManagedProcess
from streams.settings import Settings
from tests.conftest import isolated, start_worker
from tests.factories import active_history, login, payment
from tests.integration.kafka import Records, read_until
from tests.integration.pipeline.test_pipeline import produce, recent, score_history
from tests.integration.waiting import eventually
from tests.slack_server import FakeSlack, Reply

pytestmark = pytest.mark.integration


def alert_settings(
    worker_settings: Settings, tmp_path: Path, slack: FakeSlack, **changes: object
) -> Settings:
    return isolated(
        worker_settings,
        tmp_path,
        slack_webhook_url=SecretStr(slack.url),
        slack_retry_base_seconds=0.2,
        slack_max_attempts=3,
        **changes,
    )


def alerts_in(records: Records) -> list[Alert]:
    return [Alert.model_validate_json(r.value or b"") for r in records]


def posted_ids(slack: FakeSlack) -> list[str]:
    """The alert id each post carries in its context block."""
    ids = []
    for post in slack.posts:
        context = post.body["blocks"][-1]["elements"][0]["text"]
        ids.append(context.rsplit("id ", 1)[1])
    return ids


def failed_payments(accounts: list[str]) -> list[Event]:
    return recent(
        [
            event
            for account in accounts
            for event in (
                login(account, days=-1),
                payment(account, invoice="i1", status=PaymentStatus.FAILED),
            )
        ]
    )


async def test_a_declining_account_yields_one_alert_and_one_slack_post(
    worker_settings: Settings, tmp_path: Path, slack: FakeSlack
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("sharp_drop: {enabled: false}\ncritical_events: []\n")
    settings = alert_settings(
        worker_settings, tmp_path, slack, clock="event", alert_rules_file=rules
    )
    run = uuid.uuid4().hex[:6]
    declining, other = f"declining-{run}", f"other-{run}"
    history = recent(active_history(declining, first_day=-50, last_day=-21))
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        await score_history(settings, history, declining)
        # Twenty days pass for the rest of the book: the declining account goes quiet.
        await produce(settings, recent([login(other, days=-d) for d in range(20, -1, -1)]))

        def crossed(records: Records) -> bool:
            return any(a.account_id == declining for a in alerts_in(records))

        records = await read_until(settings, settings.topic_alerts, crossed)
        await eventually(lambda: len(slack.posts) >= 1)
        await asyncio.sleep(3)  # time for a duplicate or a second alert to show up
        records = await read_until(settings, settings.topic_alerts, crossed)
    finally:
        worker.stop()
    alerts = [a for a in alerts_in(records) if a.account_id == declining]
    assert [(a.rule, a.old_band, a.new_band) for a in alerts] == [
        ("band_change", "healthy", "at-risk")
    ]
    assert alerts[0].trigger.startswith("tick:")
    assert alerts[0].drivers
    assert len(slack.posts) == 1
    blocks = slack.posts[0].body["blocks"]
    # What pulls the score down, then why it moved: two sections.
    assert [b["type"] for b in blocks] == ["header", "section", "section", "section", "context"]
    assert blocks[0]["text"]["text"].startswith(f":large_orange_circle: {declining} is now at-risk")
    fields = [f["text"] for f in blocks[1]["fields"]]
    assert fields[1] == "*Band*\nhealthy -> at-risk"
    assert blocks[2]["text"]["text"].startswith("*What pulls it down*")
    assert blocks[3]["text"]["text"].startswith("*Why it moved*")
    assert "usage" in blocks[3]["text"]["text"]
    assert posted_ids(slack) == [alerts[0].alert_id]
    assert slack.posts[0].body["text"].startswith("[warning]")


async def post_one_alert(settings: Settings, tmp_path: Path, slack: FakeSlack) -> None:
    """A failed payment on a fresh account; returns once Slack has it (and a moment more,
    for a duplicate to show up)."""
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        await produce(settings, failed_payments([f"one-{uuid.uuid4().hex[:6]}"]))
        await eventually(lambda: len(slack.posts) >= 1)
        await asyncio.sleep(1.5)
    finally:
        worker.stop()


async def test_429_retry_after_delays_the_post_and_it_arrives_once(
    worker_settings: Settings, tmp_path: Path, slack: FakeSlack
) -> None:
    slack.script(Reply(429, "rate_limited", {"Retry-After": "2"}))
    await post_one_alert(alert_settings(worker_settings, tmp_path, slack), tmp_path, slack)
    assert len(slack.requests) == 2
    assert len(slack.posts) == 1
    assert slack.requests[1].at - slack.requests[0].at >= 2.0


async def test_5xx_then_200_delivers_once(
    worker_settings: Settings, tmp_path: Path, slack: FakeSlack
) -> None:
    slack.script(Reply(503, "unavailable"))
    await post_one_alert(alert_settings(worker_settings, tmp_path, slack), tmp_path, slack)
    assert len(slack.requests) == 2
    assert len(slack.posts) == 1


async def test_slack_down_for_the_whole_retry_budget_sends_the_alert_to_the_dlq(
    worker_settings: Settings, tmp_path: Path, slack: FakeSlack
) -> None:
    slack.script(*[Reply(500, "oops")] * 3)
    settings = alert_settings(worker_settings, tmp_path, slack)
    account = f"down-{uuid.uuid4().hex[:6]}"
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        await produce(settings, failed_payments([account]))
        dead = await read_until(settings, settings.topic_alerts_dlq, lambda records: bool(records))
    finally:
        worker.stop()
    alert = alerts_in(dead)[0]
    assert alert.account_id == account
    reason = dict(dead[0].headers)["chs-reason"].decode()
    assert reason == "route default: HTTP 500 after 3 attempts"
    assert len(slack.requests) == 3
    assert slack.posts == []


async def _restart_mid_stream(
    settings: Settings, tmp_path: Path, slack: FakeSlack, stop: Callable[[ManagedProcess], None]
) -> tuple[Counter[str], set[str], int]:
    """20 accounts' alerts; the worker is stopped with ``stop`` while Slack is still busy
    with them, then started again. Returns posts per alert id, the alert ids, and how many
    posts had arrived when it was stopped."""
    accounts = [f"restart-{uuid.uuid4().hex[:6]}-{i}" for i in range(20)]
    # Process control blocks: run it off the event loop, where the fake Slack answers.
    worker = await asyncio.to_thread(start_worker, settings, tmp_path / "worker-1.log")
    try:
        await produce(settings, failed_payments(accounts))
        await eventually(lambda: len(slack.posts) >= 5)
    finally:
        await asyncio.to_thread(stop, worker)
    posted_before = len(slack.posts)
    worker = await asyncio.to_thread(start_worker, settings, tmp_path / "worker-2.log")
    try:
        records = await read_until(
            settings,
            settings.topic_alerts,
            lambda records: {a.account_id for a in alerts_in(records)} >= set(accounts),
        )
        expected = {a.alert_id for a in alerts_in(records)}
        await eventually(lambda: set(posted_ids(slack)) >= expected, within=60)
        await asyncio.sleep(2)
    finally:
        await asyncio.to_thread(worker.stop)
    return Counter(posted_ids(slack)), expected, posted_before


async def test_restarting_the_slack_agent_mid_stream_posts_nothing_twice(
    worker_settings: Settings, tmp_path: Path, slack: FakeSlack
) -> None:
    slack.script(*[Reply(delay=0.3)] * 200)  # a slow Slack: the stop lands mid-stream
    settings = alert_settings(worker_settings, tmp_path, slack, slack_rate_per_second=20.0)
    counts, expected, posted_before = await _restart_mid_stream(
        settings, tmp_path, slack, ManagedProcess.stop
    )
    assert posted_before < len(expected)
    assert set(counts) == expected
    assert max(counts.values()) == 1


async def test_a_killed_slack_agent_loses_nothing_and_repeats_at_most_the_post_in_flight(
    worker_settings: Settings, tmp_path: Path, slack: FakeSlack
) -> None:
    slack.script(*[Reply(delay=0.3)] * 200)
    settings = alert_settings(worker_settings, tmp_path, slack, slack_rate_per_second=20.0)
    counts, expected, posted_before = await _restart_mid_stream(
        settings, tmp_path, slack, ManagedProcess.kill
    )
    assert posted_before < len(expected)
    assert set(counts) == expected
    # kill -9 between Slack's 200 and the record of it: that one post may come again.
    assert sum(n - 1 for n in counts.values()) <= 1
