"""kill -9 in the middle of a backlog: every alert and every account's last score that the
events should raise reach ``chs.alerts``, ``chs.scores`` and the Redis view, never zero times.

The backlog is like the one that lost an alert in production-like runs: 1,000 accounts with
five days of logins, then a backlog of feature uses with one failed payment per account (all
recent, so each raises a critical alert). The worker is killed as soon as some accounts have
their alert on ``chs.alerts``, in the stretch of the backlog that holds the payments, when
outputs of the batches in flight are likeliest to be lost while the states that record them
survive; started again, and killed again twice further on.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from alerts.alert import Alert
from readmodel.redis_view import read_update
from scoring.events import Event, FeatureUseEvent, LoginEvent, PaymentEvent, PaymentStatus
from scoring.state import AccountState
from scoring.update import ScoreUpdate
from streams.settings import Settings
from tests.conftest import isolated, start_worker
from tests.integration.kafka import Records, read_all, read_until, wait_consumed
from tests.integration.pipeline.test_pipeline import produce
from tests.integration.reference import (
    assert_matches_reference,
    changelog_states,
    reference_run,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

ACCOUNTS = 1_000
BACKLOG = 30_000
"""Feature uses in the backlog, besides the failed payments."""
KILL_AT_ALERTED = (10, 300, 600)
"""The worker is killed (and started again) once this many accounts have their alert."""
DAY = 86_400.0


def backlog_events(seed: int, now: float) -> list[Event]:
    """Five days of logins for each account, then the backlog of the last 75 minutes: feature
    uses and one failed payment per account at a random place among them."""
    rng = random.Random(seed)
    accounts = [f"acct-{seed}-{n:03d}" for n in range(ACCOUNTS)]
    events: list[Event] = []
    serial = 0

    def event_id() -> str:
        nonlocal serial
        serial += 1
        return f"ev-{seed}-{serial}"

    def instant(ts: float) -> datetime:
        return datetime.fromtimestamp(ts, UTC)

    for day in range(5, 0, -1):
        for account in accounts:
            for user in range(1):
                login_at = now - day * DAY + rng.uniform(0, DAY / 2)
                events.append(
                    LoginEvent(
                        event_id=event_id(),
                        account_id=account,
                        occurred_at=instant(login_at),
                        user_id=f"u{user}",
                    )
                )
    events.sort(key=lambda event: event.occurred_at)
    start = now - 75 * 60
    step = 75 * 60 / (BACKLOG + ACCOUNTS)
    # Bunched in a stretch of the backlog, where the worker is killed: batches then raise
    # several alerts each, and a crash has outputs in flight whenever it comes.
    stretch = range((BACKLOG + ACCOUNTS) // 5, (BACKLOG + ACCOUNTS) // 5 + ACCOUNTS * 10)
    payments = set(rng.sample(stretch, ACCOUNTS))
    unpaid = list(accounts)
    rng.shuffle(unpaid)
    for n in range(BACKLOG + ACCOUNTS):
        at = instant(start + n * step)
        if n in payments and unpaid:
            account = unpaid.pop()
            events.append(
                PaymentEvent(
                    event_id=event_id(),
                    account_id=account,
                    occurred_at=at,
                    invoice_id=f"inv-{account}",
                    status=PaymentStatus.FAILED,
                    amount=Decimal("4242.00"),
                    currency="EUR",
                )
            )
        else:
            events.append(
                FeatureUseEvent(
                    event_id=event_id(),
                    account_id=rng.choice(accounts),
                    occurred_at=at,
                    user_id=f"u{rng.randrange(2)}",
                    feature=f"f{rng.randrange(6)}",
                    count=1,
                )
            )
    assert not unpaid, "every account has its failed payment"
    return events


def alerted_accounts(records: Records) -> set[str]:
    return {Alert.model_validate_json(r.value or b"").account_id for r in records}


def enough_alerted(accounts: int) -> Callable[[Records], bool]:
    return lambda records: len(alerted_accounts(records)) >= accounts


def last_updates(records: Records) -> dict[str, ScoreUpdate]:
    latest: dict[str, ScoreUpdate] = {}
    for record in records:
        update = ScoreUpdate.model_validate_json(record.value or b"")
        latest[update.account_id] = update
    return latest


def published_as_recorded(state: AccountState) -> tuple[float, str, str | None, bool, float]:
    published = state.published
    assert published is not None
    return published.score, published.band, published.segment, published.stale, published.at


def as_published(update: ScoreUpdate) -> tuple[float, str, str | None, bool, float]:
    return update.score, update.band, update.segment, update.stale, update.as_of.timestamp()


async def test_kill_9_in_a_backlog_loses_no_alert_and_no_last_score(
    worker_settings: Settings, private_redis: str, tmp_path: Path
) -> None:
    # Windows of at most 2,000 inputs: the alerts come window by window through the stretch
    # of the payments, and each kill lands with some outputs in flight (one window could hold
    # the whole backlog, its alerts in one burst).
    settings = isolated(
        worker_settings, tmp_path, clock="event", redis_url=private_redis, window_max_inputs=2_000
    )
    events = backlog_events(seed=random.randrange(1_000_000), now=time.time())
    expected_states, raised = reference_run(events)
    expected_alerts = {a.alert_id for a in raised if a.rule == "critical_event:failed_payment"}
    assert len(expected_alerts) == ACCOUNTS

    event_topics = list(settings.event_topics)
    await produce(settings, events)
    for kill, alerted in enumerate(KILL_AT_ALERTED, start=1):
        worker = start_worker(settings, tmp_path / f"worker-{kill}.log")
        try:
            before_kill = await read_until(
                settings, settings.topic_alerts, enough_alerted(alerted), within=120
            )
        finally:
            worker.kill()
        print(f"kill {kill}: {len(alerted_accounts(before_kill))} accounts alerted")
    worker = start_worker(settings, tmp_path / "worker-last.log")
    try:
        await wait_consumed(settings, event_topics, within=240)
        states = await changelog_states(settings)
        alerts = await read_all(settings, settings.topic_alerts)
        scores = await read_all(settings, settings.topic_scores)
        # The view is written behind chs.scores: give it the time to catch up.
        client = aioredis.Redis.from_url(private_redis)
        latest = last_updates(scores)
        viewed: dict[str, ScoreUpdate | None] = {}
        try:
            async with asyncio.timeout(30):
                while True:
                    viewed = {account: await read_update(client, account) for account in latest}
                    if viewed == latest:
                        break
                    await asyncio.sleep(0.5)
        except TimeoutError:
            pass
        finally:
            await client.aclose()
    finally:
        worker.stop()

    # The state: every event applied once, as in an uninterrupted run.
    assert_matches_reference(states, expected_states, len(events))
    # Every failed payment's alert on chs.alerts (a repeat with the same id is allowed).
    ids = [Alert.model_validate_json(r.value or b"").alert_id for r in alerts]
    repeated = len(ids) - len(set(ids))
    missing = expected_alerts - set(ids)
    print(f"alerts: {len(ids)} records, {repeated} repeats; {len(missing)} missing")
    assert missing == set()
    # Every account's last ScoreUpdate on chs.scores is the score its state records as
    # published, and the Redis view holds that same update.
    assert set(latest) == set(states)
    differing = [
        account
        for account, state in states.items()
        if as_published(latest[account]) != published_as_recorded(state)
    ]
    assert differing == []
    assert viewed == latest
