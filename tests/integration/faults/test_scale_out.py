"""Several workers in one consumer group: partitions split between them, workers join, leave
cleanly and die while events flow, and every account ends where a single uninterrupted worker
would have left it (``reference``), with no alert posted twice.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from importlib import resources
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from scoring.events import Event
from streams.ops.devstack import ManagedProcess, free_port
from streams.settings import Settings
from tests.conftest import isolated, start_worker
from tests.factories import login
from tests.integration.kafka import read_all, wait_consumed
from tests.integration.pipeline.test_alerts import alerts_in, posted_ids
from tests.integration.pipeline.test_pipeline import produce, recent
from tests.integration.reference import (
    assert_matches_reference,
    changelog_states,
    demo_events,
    reference,
)
from tests.integration.serving.test_operations import get, metric, metric_url
from tests.integration.waiting import eventually
from tests.slack_server import FakeSlack

# Several workers each: about five minutes, so `make test-reliability` runs them, not `make test`.
pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.scale_out]

ACCOUNTS = 200
SEED = 23
HANDOVER_AFTER = 3.0
"""Seconds after the stream was produced: workers are still busy with it."""


class Group:
    """``chs worker`` processes of one consumer group, each with its own web port and data."""

    def __init__(self, settings: Settings, tmp_path: Path) -> None:
        self.settings = settings
        self.tmp_path = tmp_path
        self.members: list[tuple[Settings, ManagedProcess]] = []

    async def add(self) -> Settings:
        n = len(self.members) + 1
        member = self.settings.model_copy(
            update={"web_port": free_port(), "data_dir": self.tmp_path / f"worker-{n}"}
        )
        log = self.tmp_path / f"worker-{n}.log"
        # Process control blocks: off the event loop, where the fake Slack answers.
        process = await asyncio.to_thread(start_worker, member, log)
        self.members.append((member, process))
        return member

    async def remove(self, member: Settings, how: Callable[[ManagedProcess], None]) -> None:
        process = next(p for s, p in self.members if s is member)
        await asyncio.to_thread(how, process)
        self.members = [(s, p) for s, p in self.members if s is not member]

    async def stop(self) -> None:
        for _, process in self.members:
            await asyncio.to_thread(process.stop)
        self.members = []

    def live(self) -> list[Settings]:
        return [settings for settings, _ in self.members]


@pytest.fixture
async def group(
    worker_settings: Settings, tmp_path: Path, slack: FakeSlack
) -> AsyncIterator[Group]:
    settings = isolated(
        worker_settings,
        tmp_path,
        clock="event",
        slack_webhook_url=SecretStr(slack.url),
        slack_rate_per_second=50.0,
        slack_burst=50,
    )
    workers = Group(settings, tmp_path)
    try:
        yield workers
    finally:
        await workers.stop()


def readiness(member: Settings) -> dict[str, object] | None:
    status, body = get(metric_url(member, "readyz"))
    return json.loads(body) if status == 200 else None


def active_partitions(member: Settings) -> set[int]:
    ready = readiness(member)
    if ready is None:
        return set()
    partitions = ready["partitions"]
    assert isinstance(partitions, dict)
    return set(partitions["active"])


def split_between(members: list[Settings], partitions: int) -> bool:
    """Every member ready, each partition owned by exactly one, none idle."""
    owned = [active_partitions(member) for member in members]
    flat = [p for mine in owned for p in mine]
    return all(owned) and sorted(flat) == list(range(partitions))


async def settle(group: Group, within: float = 240) -> None:
    """Wait until the group has consumed every event and its members own every partition."""
    settings = group.settings
    await wait_consumed(settings, list(settings.event_topics), within=within)
    await eventually(lambda: split_between(group.live(), settings.topic_partitions), within=60)


async def alert_posts(settings: Settings, slack: FakeSlack) -> tuple[set[str], Counter[str]]:
    """The alert ids on the alerts topic, and how many times each was posted to Slack."""
    raised = {
        alert.alert_id for alert in alerts_in(await read_all(settings, settings.topic_alerts))
    }
    await eventually(lambda: set(posted_ids(slack)) >= raised, within=60)
    await asyncio.sleep(1)  # a duplicate would come now
    return raised, Counter(posted_ids(slack))


def parts_not_recovered(group: Group) -> list[str]:
    """Every member's log lines saying a recovery did not read back a part an input record
    names (a loss the reference may not see: the part can hold what it does not compare)."""
    return [
        line
        for log in sorted(group.tmp_path.glob("worker-*.log"))
        for line in log.read_text(errors="replace").splitlines()
        if "were not read back" in line
    ]


def worker_failures(group: Group) -> list[str]:
    """Every member's log lines that tell of an error that stopped it or a task."""
    return [
        line
        for log in sorted(group.tmp_path.glob("worker-*.log"))
        for line in log.read_text(errors="replace").splitlines()
        if "Traceback" in line or "Stopping the worker" in line
    ]


async def check_against_reference(group: Group, events: list[Event]) -> None:
    await settle(group)
    assert_matches_reference(await changelog_states(group.settings), reference(events), len(events))
    assert parts_not_recovered(group) == []


async def test_three_workers_split_the_partitions_and_score_every_account_once(
    group: Group, slack: FakeSlack
) -> None:
    # Two workers split them in each of the tests below.
    members = [await group.add() for _ in range(3)]
    partitions = group.settings.topic_partitions
    await eventually(lambda: split_between(members, partitions), within=90)
    events = demo_events(None, accounts=ACCOUNTS, seed=SEED)
    await produce(group.settings, events)
    await check_against_reference(group, events)
    # Each account is held by the one worker that owns its partition.
    held = [metric(member, "chs_accounts_held") for member in members]
    assert all(held)
    assert sum(held) == ACCOUNTS
    raised, posts = await alert_posts(group.settings, slack)
    assert raised
    assert set(posts) == raised
    assert max(posts.values()) == 1


async def one_of_two_leaves_mid_stream(
    group: Group, how: Callable[[ManagedProcess], None]
) -> tuple[Settings, list[Event]]:
    """Two workers split the partitions, the stream is produced, and one of them goes
    (``how``) while they are busy with it; returns the other one and the events."""
    staying, leaving = await group.add(), await group.add()
    partitions = group.settings.topic_partitions
    await eventually(lambda: split_between([staying, leaving], partitions), within=90)
    events = demo_events(None, accounts=ACCOUNTS, seed=SEED)
    await produce(group.settings, events)
    await asyncio.sleep(HANDOVER_AFTER)
    await group.remove(leaving, how)
    await check_against_reference(group, events)
    assert active_partitions(staying) == set(range(partitions))
    return staying, events


async def test_a_worker_leaving_cleanly_hands_its_partitions_over(
    group: Group, slack: FakeSlack
) -> None:
    await one_of_two_leaves_mid_stream(group, ManagedProcess.stop)
    raised, posts = await alert_posts(group.settings, slack)
    assert set(posts) == raised
    assert max(posts.values()) == 1


async def test_a_killed_worker_is_taken_over_and_its_redelivered_events_count_once(
    group: Group, slack: FakeSlack
) -> None:
    # With a standby copy of each partition (it must not change the outcome).
    group.settings = group.settings.model_copy(update={"table_standby_replicas": 1})
    surviving, events = await one_of_two_leaves_mid_stream(group, ManagedProcess.kill)
    # The killed worker applied events it had not committed; the survivor received them
    # again, and applied them or, if the dead worker's state of them had reached the
    # changelog, turned them away by the offset fence. How many met the fence depends on
    # when the kill came (states are written once their outputs are delivered, and a commit
    # follows soon after); test_crash.py kills between two commits and asserts some did.
    redelivered = metric(surviving, "chs_inputs_skipped_total", reason="redelivered")
    print(f"{len(events)} events; redelivered to the survivor and skipped: {redelivered:.0f}")
    raised, posts = await alert_posts(group.settings, slack)
    assert set(posts) == raised
    # kill -9 between Slack's 200 and the record of it: that one post may come again.
    assert sum(n - 1 for n in posts.values()) <= 1


async def test_a_worker_added_mid_stream_takes_a_share(group: Group, slack: FakeSlack) -> None:
    first = await group.add()
    partitions = group.settings.topic_partitions
    await eventually(lambda: split_between([first], partitions), within=90)
    events = demo_events(None, accounts=ACCOUNTS, seed=SEED)
    await produce(group.settings, events)
    await asyncio.sleep(HANDOVER_AFTER)
    second = await group.add()
    await check_against_reference(group, events)
    moved = metric(first, "chs_inputs_skipped_total", reason="moved")
    print(f"fetched by the first worker for partitions it had lost, skipped: {moved:.0f}")
    assert active_partitions(first)
    assert active_partitions(second)
    raised, posts = await alert_posts(group.settings, slack)
    assert set(posts) == raised
    assert max(posts.values()) == 1


DUE_ACCOUNTS = 10_000
REEVALUATE_HOURS = 0.0005
"""Every account due every 1.8 s: due accounts are re-evaluated all the time, through the
replay of the table that follows a rebalance too."""


async def test_a_rebalance_replays_the_tables_with_no_due_account_scored_meanwhile(
    worker_settings: Settings, tmp_path: Path
) -> None:
    """After a rebalance Faust replays every active partition's changelog, the kept ones too,
    into records not merged yet; a due account re-evaluated then met one and stopped the
    worker (``AccountTable.on_rebalance``)."""
    model = yaml.safe_load(resources.files("scoring").joinpath("models/default.yaml").read_text())
    model["reevaluate_hours"] = REEVALUATE_HOURS
    model_file = tmp_path / "model.yaml"
    model_file.write_text(yaml.safe_dump(model))
    settings = isolated(worker_settings, tmp_path, model_file=model_file, timer_interval=0.1)
    workers = Group(settings, tmp_path)
    try:
        first = await workers.add()
        partitions = settings.topic_partitions
        await eventually(lambda: split_between([first], partitions), within=90)
        accounts = [f"due-{n}" for n in range(DUE_ACCOUNTS)]
        await produce(settings, recent([login(account) for account in accounts]))
        await wait_consumed(settings, list(settings.event_topics), within=120)
        await eventually(lambda: metric(first, "chs_accounts_held") == DUE_ACCOUNTS, within=60)
        second = await workers.add()

        def split_while_alive() -> bool:
            for _, process in workers.members:
                assert process.process.poll() is None, process.log_tail()
            try:
                return split_between([first, second], partitions)
            except OSError:  # a worker's web server gone: the next round says why
                return False

        await eventually(split_while_alive, within=90)
        await asyncio.sleep(3)  # due accounts re-evaluated on both sides since
        for member, process in workers.members:
            assert process.process.poll() is None, process.log_tail()
            assert metric(member, "chs_accounts_held") > 0
        assert worker_failures(workers) == []
    finally:
        await workers.stop()
