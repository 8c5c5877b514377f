"""Two workers, one distribution: accounts on partitions owned by different workers are
ranked against the same peers (every partition's sketches, through ``chs.peers``).

80 accounts, active on 1 to 20 days each, split between two workers: neither worker alone
holds the default model's 50 peers, so an account is ranked at all only if its worker
merged the other's sketches, and all of them see one median.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scoring.events import Event, LoginEvent
from scoring.peers import PeerBook, merged
from scoring.state import day_of
from scoring.update import ScoreUpdate
from streams.settings import Settings
from tests.conftest import isolated
from tests.integration.faults.test_scale_out import Group, split_between
from tests.integration.kafka import read_all, read_until, wait_consumed
from tests.integration.pipeline.test_pipeline import produce
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration

ACCOUNTS = 80
PARTITIONS = 4
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@pytest.fixture
async def pair(worker_settings: Settings, tmp_path: Path) -> AsyncIterator[Group]:
    settings = isolated(
        worker_settings,
        tmp_path,
        clock="event",
        topic_partitions=PARTITIONS,
        peers_ship_seconds=1.0,
    )
    workers = Group(settings, tmp_path)
    try:
        yield workers
    finally:
        await workers.stop()


def logins(account: int, days: list[int], hour: float) -> list[Event]:
    return [
        LoginEvent(
            event_id=f"p{account}-{day}-{hour:.4f}",
            account_id=f"peer-{account:03d}",
            occurred_at=TODAY + timedelta(days=day, hours=hour),
            user_id=f"u{account}",
        )
        for day in days
    ]


def books(records: list[object]) -> dict[int, PeerBook]:
    latest: dict[int, PeerBook] = {}
    for record in records:
        key, value = getattr(record, "key"), getattr(record, "value")  # noqa: B009
        latest[int(key)] = PeerBook.from_bytes(value)
    return latest


async def test_workers_rank_their_accounts_against_every_partitions_peers(pair: Group) -> None:
    settings = pair.settings
    await pair.add()
    await pair.add()
    await eventually(lambda: split_between(pair.live(), PARTITIONS), within=120)
    # Account i was active on 1 + i % 20 of the 30 days before yesterday; yesterday everyone
    # logs in once (the first evaluation of the day adds each account to the sketches).
    history = sorted(
        (e for a in range(ACCOUNTS) for e in logins(a, list(range(-30, -30 + 1 + a % 20)), 9)),
        key=lambda e: e.occurred_at,
    )
    yesterday = [e for a in range(ACCOUNTS) for e in logins(a, [-1], 10)]
    await produce(settings, history + yesterday)
    await wait_consumed(settings, list(settings.event_topics), within=120)

    def complete(records: list[object]) -> bool:
        found = books(records)
        yesterday_day = day_of(TODAY.timestamp()) - 1
        sketches = merged(found.values(), yesterday_day).sketches
        sketch = sketches.get(("*", "active_days_30d"))
        return len(found) == PARTITIONS and sketch is not None and sketch.n == ACCOUNTS

    await read_until(settings, settings.topic_peers, complete, within=60)
    await asyncio.sleep(3)  # the workers' own readers of chs.peers catch up
    # Today's logins a moment ago (a fixed hour of today may still be ahead of the wall clock).
    just_now = max(0.0, (datetime.now(UTC) - TODAY).total_seconds() / 3600 - 0.01)
    await produce(settings, [e for a in range(ACCOUNTS) for e in logins(a, [0], just_now)])
    await wait_consumed(settings, list(settings.event_topics), within=60)

    latest: dict[str, ScoreUpdate] = {}
    for record in await read_all(settings, settings.topic_scores):
        update = ScoreUpdate.model_validate_json(record.value or b"")
        if update.as_of >= TODAY:
            latest[update.account_id] = update
    assert len(latest) == ACCOUNTS
    active = [update.measures["active_days_30d"] for update in latest.values()]
    assert all(m.percentile is not None for m in active), "ranked only among its own worker's"
    assert len({m.peers_median for m in active}) == 1
    ranks = {m.value or 0.0: m.percentile or 0.0 for m in active}
    assert sorted(ranks.values()) == [ranks[value] for value in sorted(ranks)]  # by value
    assert any("peers' median" in drag.text for update in latest.values() for drag in update.drags)
