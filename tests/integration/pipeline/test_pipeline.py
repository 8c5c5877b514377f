"""End to end through the real broker: events in, ScoreUpdates on chs.scores and in Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from scoring.events import AccountAttributes, Event, PaymentStatus, SurveyType, TicketPriority
from scoring.score import Score, evaluate
from scoring.scoring_model import default_model
from scoring.state import AccountState, apply_attributes, fold
from scoring.update import ScoreUpdate
from streams.ops.devstack import ManagedProcess
from streams.settings import Settings
from streams.worker.event_producer import EventProducer
from tests.factories import T0, feature, login, payment, survey, ticket
from tests.integration.kafka import Records, read_until, wait_consumed

pytestmark = [pytest.mark.integration, pytest.mark.dev_broker]


def recent(events: list[Event]) -> list[Event]:
    """Move factory events (around T0) to the last days, as live traffic would be."""
    shift = datetime.now(UTC).replace(microsecond=0) - T0
    return [e.model_copy(update={"occurred_at": e.occurred_at + shift}) for e in events]


def folded(events: list[Event], *attributes: AccountAttributes) -> dict[str, AccountState]:
    """The same inputs applied by the pure core, in any order: the worker must agree."""
    states: dict[str, AccountState] = {}
    for event in events:
        state = states.setdefault(event.account_id, AccountState(account_id=event.account_id))
        fold(state, event)
    for snapshot in attributes:
        apply_attributes(states[snapshot.account_id], snapshot)
    return states


def expected_at(state: AccountState, update: ScoreUpdate, at: float | None = None) -> Score:
    """What the pure core scores for ``state`` at ``at`` (default: when the worker scored)."""
    score = evaluate(state, default_model(), update.as_of.timestamp() if at is None else at)
    assert score is not None
    return score


def agrees(state: AccountState, update: ScoreUpdate, at: float | None = None) -> bool:
    """The worker publishes when the score moves, so the score is what can be compared.

    With the wall clock, seconds between the last update and the last event change nothing;
    with the event clock, pass ``at``: the newest event time, the worker's final clock.
    """
    return update.score == expected_at(state, update, at).value


def latest_updates(records: Records, accounts: set[str]) -> dict[str, ScoreUpdate]:
    latest = {}
    for record in records:
        assert record.value is not None
        update = ScoreUpdate.model_validate_json(record.value)
        if update.account_id in accounts:
            assert record.key == update.account_id.encode()
            latest[update.account_id] = update
    return latest


async def produce(settings: Settings, events: list[Event]) -> None:
    async with EventProducer(settings) as producer:
        for event in events:
            await producer.send(event)
        await producer.flush()


async def test_events_of_all_kinds_become_score_updates_on_the_topic_and_in_redis(
    worker: ManagedProcess, worker_settings: Settings
) -> None:
    run = uuid.uuid4().hex[:8]
    busy, troubled, unhappy = f"busy-{run}", f"troubled-{run}", f"unhappy-{run}"
    events = recent(
        [
            *(feature(busy, days=-d, name=f"f{d % 6}", user=f"u{d % 7}") for d in range(25)),
            payment(busy, days=-3),
            survey(busy, days=-2, score=10),
            *(login(troubled, days=-d, user="u1") for d in range(0, 20, 4)),
            payment(troubled, days=-2, invoice="i9", status=PaymentStatus.FAILED),
            ticket(troubled, days=-1, ticket_id="t1", priority=TicketPriority.URGENT),
            survey(unhappy, days=-1, kind=SurveyType.CSAT, score=1),
        ]
    )
    profile = AccountAttributes(
        account_id=troubled,
        updated_at=datetime.now(UTC),
        plan="enterprise",
        csm_owner="ann@example.com",
        seats=20,
    )
    states = folded(events, profile)
    await produce(worker_settings, events)
    async with EventProducer(worker_settings) as producer:
        await producer.send_model(worker_settings.topic_accounts, troubled, profile)
        await producer.flush()

    def all_arrived(records: Records) -> bool:
        latest = latest_updates(records, set(states))
        return len(latest) == len(states) and all(agrees(states[a], u) for a, u in latest.items())

    records = await read_until(worker_settings, worker_settings.topic_scores, all_arrived)
    latest = latest_updates(records, set(states))
    for update in latest.values():
        assert update.model_version == default_model().version
        assert update.band == expected_at(states[update.account_id], update).band
        assert update.components
        assert update.summary
    assert latest[busy].score > latest[troubled].score
    assert latest[troubled].segment == "enterprise"
    assert latest[troubled].owner == "ann@example.com"
    assert "seat_utilisation_30d" in latest[troubled].measures

    client = aioredis.Redis.from_url(
        worker_settings.redis_url.get_secret_value(), decode_responses=True
    )
    try:
        async with asyncio.timeout(20):
            while True:
                views = {a: await client.hgetall(f"chs:account:{a}") for a in states}
                if all(v.get("score") == str(latest[a].score) for a, v in views.items()):
                    break
                await asyncio.sleep(0.2)
    finally:
        await client.aclose()
    assert views[troubled]["band"] == latest[troubled].band
    assert views[troubled]["owner"] == "ann@example.com"
    assert json.loads(views[busy]["update"])["components"] == {
        name: c.model_dump() for name, c in latest[busy].components.items()
    }


async def test_bad_messages_go_to_the_dead_letter_topic_and_scoring_goes_on(
    worker: ManagedProcess, worker_settings: Settings
) -> None:
    run = uuid.uuid4().hex[:8]
    account = f"after-bad-{run}"
    good = recent([login(account, user="u1")])[0]
    login_topic = worker_settings.topic_login
    valid_body = json.loads(good.model_dump_json())
    bad: dict[str, tuple[str, bytes | None, bytes]] = {
        "not_json": (login_topic, account.encode(), f"not json {run}".encode()),
        "empty_key": (login_topic, None, json.dumps({**valid_body, "run": run}).encode()),
        "schema": (
            worker_settings.topic_payment,
            account.encode(),
            json.dumps({**valid_body, "status": "maybe", "run": run}).encode(),
        ),
        "key_mismatch": (
            login_topic,
            b"someone-else",
            json.dumps({**valid_body, "run": run}).encode(),
        ),
        "in_future": (
            login_topic,
            account.encode(),
            json.dumps({**valid_body, "occurred_at": "2999-01-01T00:00:00Z", "run": run}).encode(),
        ),
        "too_old": (
            login_topic,
            account.encode(),
            json.dumps({**valid_body, "occurred_at": "2001-01-01T00:00:00Z", "run": run}).encode(),
        ),
    }
    async with EventProducer(worker_settings) as producer:
        for topic, key, value in bad.values():
            await producer.send_raw(topic, key, value)
        await producer.send(good)
        await producer.flush()

    def mine(records: Records) -> Records:
        return [r for r in records if r.value is not None and run.encode() in r.value]

    dead = await read_until(
        worker_settings, worker_settings.topic_dlq, lambda rs: len(mine(rs)) >= len(bad)
    )
    by_code = {}
    for record in mine(dead):
        headers = {name: value.decode() for name, value in record.headers}
        by_code[headers["chs-reason-code"]] = (record, headers)
    assert set(by_code) == set(bad)
    for code, (topic, key, value) in bad.items():
        record, headers = by_code[code]
        assert record.value == value, "the original bytes are kept"
        assert record.key == key
        assert headers["chs-source-topic"] == topic
        assert int(headers["chs-source-offset"]) >= 0
        assert headers["chs-reason"]
    assert "status" in by_code["schema"][1]["chs-reason"]

    scores = await read_until(
        worker_settings,
        worker_settings.topic_scores,
        lambda rs: account in latest_updates(rs, {account}),
    )
    assert latest_updates(scores, {account})[account].event_id == good.event_id


async def score_history(settings: Settings, history: list[Event], account: str) -> ScoreUpdate:
    """Produce ``history`` to a worker on the event clock and wait until it has all been
    consumed and ``account``'s published score is the one of the whole history."""
    await produce(settings, history)
    state = folded(history)[account]
    clock = max(event.occurred_ts for event in history)

    def settled(records: Records) -> bool:
        update = latest_updates(records, {account}).get(account)
        return update is not None and agrees(state, update, at=clock)

    await wait_consumed(settings, settings.input_topics)
    records = await read_until(settings, settings.topic_scores, settled)
    return latest_updates(records, {account})[account]
