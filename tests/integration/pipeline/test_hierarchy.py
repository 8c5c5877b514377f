"""Roll-ups and erasure end to end, through the real broker, Redis and the API."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from aiokafka.partitioner import DefaultPartitioner

from api.app import create_api
from api.store import ReadModel
from readmodel.redis_view import ALERTS, ALL_ACCOUNTS, account_key, history_key
from scoring.events import AccountAttributes, PaymentStatus
from scoring.scoring_model import default_model
from scoring.update import ScoreUpdate
from streams.ops.devstack import ManagedProcess, chs_command, settings_env
from streams.settings import Settings
from streams.worker.event_producer import EventProducer
from tests.conftest import isolated, start_worker
from tests.factories import login, payment
from tests.integration.kafka import Records, read_all, read_until, wait_consumed
from tests.integration.pipeline.test_pipeline import produce, recent
from tests.integration.reference import changelog_states
from tests.integration.waiting import until

pytestmark = pytest.mark.integration


def partition_of(account: str, partitions: int) -> int:
    return int(DefaultPartitioner()(account.encode(), list(range(partitions)), None))


def on_distinct_partitions(prefix: str, count: int, partitions: int) -> list[str]:
    """``count`` account ids (``prefix-N``) on as many different partitions."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < count:
        account = f"{prefix}-{n}"
        found.setdefault(partition_of(account, partitions), account)
        n += 1
    return list(found.values())


async def send_attributes(settings: Settings, *snapshots: AccountAttributes) -> None:
    async with EventProducer(settings) as producer:
        for snapshot in snapshots:
            await producer.send_model(settings.topic_accounts, snapshot.account_id, snapshot)
        await producer.flush()


def attributes(
    account: str, parent: str | None, mrr: int | None, minutes: int = 0
) -> AccountAttributes:
    return AccountAttributes(
        account_id=account,
        updated_at=datetime.now(UTC) - timedelta(hours=1) + timedelta(minutes=minutes),
        mrr=None if mrr is None else Decimal(mrr),
        parent_account_id=parent,
    )


def latest(records: Records) -> dict[str, ScoreUpdate | None]:
    """Each account's last record on chs.scores (None: a tombstone)."""
    found: dict[str, ScoreUpdate | None] = {}
    for record in records:
        assert record.key is not None
        value = record.value
        found[record.key.decode()] = (
            None if value is None else ScoreUpdate.model_validate_json(value)
        )
    return found


def rolled_up(parent: str, children: dict[str, int]) -> Callable[[Records], bool]:
    """The parent's last update rolls up exactly ``children`` (id -> MRR) at their latest
    published scores, weighted by MRR."""

    def done(records: Records) -> bool:
        updates = latest(records)
        update = updates.get(parent)
        if update is None or update.rollup is None:
            return False
        scores = {child: updates.get(child) for child in children}
        if any(s is None for s in scores.values()):
            return False
        total = sum(children.values())
        expected = sum(children[c] / total * s.score for c, s in scores.items() if s is not None)
        members = {name.removeprefix("child:") for name in update.components}
        return members == set(children) and update.score == round(expected, 1)

    return done


async def test_children_on_other_partitions_roll_up_to_their_parent_and_move_with_it(
    worker: ManagedProcess, worker_settings: Settings
) -> None:
    run = uuid.uuid4().hex[:8]
    partitions = worker_settings.topic_partitions
    group, other, eu, us = on_distinct_partitions(f"hier-{run}", 4, partitions)
    await send_attributes(
        worker_settings,
        attributes(eu, group, 3000),
        attributes(us, group, 1000),
    )
    await produce(
        worker_settings,
        recent(
            [
                *(login(eu, days=-d, user=f"u{d % 5}") for d in range(20)),
                login(us, days=-18),
                payment(us, days=-1, invoice="i1", status=PaymentStatus.FAILED),
            ]
        ),
    )
    scores = worker_settings.topic_scores
    records = await read_until(worker_settings, scores, rolled_up(group, {eu: 3000, us: 1000}))
    parent = latest(records)[group]
    assert parent is not None
    assert parent.rollup is not None
    assert parent.rollup.scored_children == 2
    assert parent.trigger == "child"
    updates = latest(records)
    costs = {
        f"child:{child}": share * (100 - u.score)
        for child, share in ((eu, 0.75), (us, 0.25))
        if (u := updates[child]) is not None
    }
    assert parent.drags[0].component == max(costs, key=lambda name: costs[name])
    assert parent.components[f"child:{eu}"].weight == 0.75

    # us moves to another parent: both parents are recomputed.
    await send_attributes(worker_settings, attributes(us, other, 1000, minutes=5))
    records = await read_until(worker_settings, scores, rolled_up(other, {us: 1000}))
    records = await read_until(worker_settings, scores, rolled_up(group, {eu: 3000}))
    assert latest(records)[us] is not None

    # A parent of the parent: group rolls up into top, weighing its children's MRR.
    top = f"hier-{run}-top"
    await send_attributes(worker_settings, attributes(group, top, None, minutes=10))
    records = await read_until(worker_settings, scores, rolled_up(top, {group: 3000}))
    assert latest(records)[top] is not None

    # top names group as its parent: a cycle, refused where it closes, with the reason.
    await send_attributes(worker_settings, attributes(top, group, None, minutes=10))

    def cycle_refused(records: Records) -> bool:
        return any(
            dict(record.headers).get("chs-reason-code") == b"parent_cycle"
            and record.key in (group.encode(), top.encode())
            for record in records
        )

    dead = await read_until(worker_settings, worker_settings.topic_dlq, cycle_refused)
    reasons = {
        dict(r.headers)["chs-reason"].decode()
        for r in dead
        if dict(r.headers).get("chs-reason-code") == b"parent_cycle"
        and r.key in (group.encode(), top.encode())
    }
    assert all(reason.startswith("parent cycle ") for reason in reasons)
    assert any(f"{group} -> {top}" in r or f"{top} -> {group}" in r for r in reasons)


async def api_answer(redis_url: str, path: str) -> tuple[int, object]:
    app = create_api(ReadModel(aioredis.Redis.from_url(redis_url)), default_model(), None)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        response = await client.get(path)
        return response.status, await response.json()
    finally:
        await client.close()


async def erase(settings: Settings, account: str, reason: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *chs_command("account", "delete", account, "--reason", reason),
        env={**os.environ, **settings_env(settings)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    assert f"erasure of {account} sent" in output.decode()


async def readyz(settings: Settings) -> dict[str, object]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{settings.web_port}/readyz") as response,
    ):
        body: dict[str, object] = await response.json()
        return body


async def test_an_erased_account_leaves_nothing_behind_and_the_rest_keep_scoring(
    worker_settings: Settings, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    settings = isolated(worker_settings, tmp_path / "data")
    redis_url = settings.redis_url.get_secret_value()
    gone, kept, group = f"gone-{run}", f"kept-{run}", f"group-{run}"
    worker = start_worker(settings, tmp_path / "worker-1.log")
    client = aioredis.Redis.from_url(redis_url)
    try:
        await send_attributes(settings, attributes(gone, group, 100), attributes(kept, group, 100))
        await produce(
            settings,
            recent(
                [
                    *(login(gone, days=-d) for d in range(10, 0, -1)),
                    payment(gone, days=0, invoice="i1", status=PaymentStatus.FAILED),
                    *(login(kept, days=-d) for d in range(5, 0, -1)),
                ]
            ),
        )
        await read_until(settings, settings.topic_scores, rolled_up(group, {gone: 100, kept: 100}))

        async def in_view_with_its_alert() -> bool:
            alerts = await client.zrange(ALERTS, 0, -1)
            return bool(await client.exists(account_key(gone))) and any(
                gone.encode() in alert for alert in alerts
            )

        await until(in_view_with_its_alert)

        await erase(settings, gone, "GDPR request 1234")
        records = await read_until(
            settings, settings.topic_scores, lambda r: gone in latest(r) and latest(r)[gone] is None
        )
        tombstones = [r for r in records if r.key == gone.encode() and r.value is None]
        assert ("chs-erased", b"1") in tombstones[-1].headers
        await read_until(settings, settings.topic_scores, rolled_up(group, {kept: 100}))

        async def out_of_view() -> bool:
            return not await client.exists(account_key(gone), history_key(gone))

        await until(out_of_view)
        assert await client.zscore(ALL_ACCOUNTS, gone) is None
        assert not any(gone.encode() in m for m in await client.zrange(ALERTS, 0, -1))
        assert [key async for key in client.scan_iter(match=f"*{gone}*")] == []
        assert (await api_answer(redis_url, f"/accounts/{gone}"))[0] == 404
        assert (await api_answer(redis_url, f"/accounts/{kept}"))[0] == 200
        log = (tmp_path / "worker-1.log").read_text(errors="replace")
        assert f"Erasing account {gone} (reason: GDPR request 1234)" in log

        # An event older than the erasure (in flight when it was asked for) is dropped; the
        # others keep scoring.
        [stale_login, failed] = recent(
            [login(gone, days=-2), payment(kept, days=0, invoice="k1", status=PaymentStatus.FAILED)]
        )
        await produce(settings, [stale_login, failed])
        records = await read_until(
            settings,
            settings.topic_scores,
            lambda r: (u := latest(r).get(kept)) is not None and u.event_id == failed.event_id,
        )
        await wait_consumed(settings, settings.input_topics)
        assert latest(await read_all(settings, settings.topic_scores))[gone] is None
    finally:
        worker.stop()
        await client.aclose()

    states = await changelog_states(settings)
    assert gone not in states
    assert {kept, group} <= set(states)
    worker = start_worker(settings, tmp_path / "worker-2.log")
    try:
        answers: list[dict[str, object]] = []

        async def ready() -> bool:
            answers.append(await readyz(settings))
            return bool(answers[-1].get("ready"))

        await until(ready, within=60)
        assert answers[-1]["accounts_held"] == 2  # kept and its group: nothing of the erased one
    finally:
        worker.stop()
