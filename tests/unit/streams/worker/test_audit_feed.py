"""The live audit across workers, with a fake topic: what a worker ships, what another reads,
and what a rebuild after a rebalance gives."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from aiokafka import ConsumerRecord

from scoring.audit import TRAIL_DAYS, Auditor
from scoring.events import OutcomeEvent, OutcomeKind
from scoring.state import AccountState, LeadResult, apply_outcome, day_of, take_churn
from streams.worker.audit_feed import LiveAudit
from tests.factories import T0
from tests.unit.streams.worker.test_peer_feed import Record

TODAY = day_of(T0.timestamp())


class FakeTopic:
    """A compacted topic: the latest value per key."""

    def __init__(self) -> None:
        self.records: dict[bytes, bytes | None] = {}
        self.sends = 0

    async def send(self, key: bytes, value: bytes | None) -> None:
        self.records[key] = value
        self.sends += 1

    def replay_into(self, audit: LiveAudit) -> None:
        for key, value in self.records.items():
            audit.take(cast(ConsumerRecord[bytes, bytes], Record(key, value)))


def result(above: float) -> LeadResult:
    return LeadResult(score=10.0, above=above, bottom=1.0, survivors=4)


async def test_a_worker_judges_against_every_partitions_survivors_and_sums_their_results() -> None:
    first, second, topic = LiveAudit(), LiveAudit(), FakeTopic()
    for score in (60.0, 70.0):
        first.book_for(0).add_score("v", TODAY - 30, score)
    first.book_for(0).add_result(("v", 30, "smb"), result(1.0))
    second.book_for(1).add_score("v", TODAY - 30, 80.0)
    second.book_for(1).add_result(("v", 30, "smb"), result(0.5))
    await first.ship(topic.send)
    await second.ship(topic.send)
    topic.replay_into(first)
    topic.replay_into(second)
    for worker in (first, second):
        assert worker.survivors("v", TODAY - 30).counts == {600: 1, 700: 1, 800: 1}
        tallies, _ = worker.totals()
        assert tallies[("v", 30, "smb")].churners == 2
        assert tallies[("v", 30, "*")].above == 1.5


async def test_only_what_changed_is_shipped_and_a_dropped_day_is_deleted() -> None:
    audit, topic = LiveAudit(), FakeTopic()
    audit.book_for(0).add_score("v", TODAY - TRAIL_DAYS, 50.0)
    audit.book_for(0).add_score("v", TODAY - 1, 50.0)
    assert await audit.ship(topic.send) == 2
    assert await audit.ship(topic.send) == 0
    audit.book_for(0).prune(TODAY)
    assert await audit.ship(topic.send) == 2  # the day dropped, and the partition's progress
    assert topic.records[f"0/{TODAY - TRAIL_DAYS}".encode()] is None
    reader = LiveAudit()
    topic.replay_into(reader)
    assert reader.survivors("v", TODAY - TRAIL_DAYS).total == 0
    assert reader.survivors("v", TODAY - 1).total == 1


def test_a_partition_taken_over_is_rebuilt_from_its_states() -> None:
    audit = LiveAudit()
    auditor = Auditor(["v"], audit, 180, lambda s: None)
    state = AccountState(account_id="a", partition=3)
    for day in range(5):
        auditor.observe(state, {"v": 40.0 + day}, (TODAY + day) * 86_400.0)
    kept = {day: counts["v"].counts for day, counts in audit.book_for(3).alive.items()}
    audit.keep_only(set())
    audit.rebuild(3, [state], auditor)
    assert {day: c["v"].counts for day, c in audit.book_for(3).alive.items()} == kept


def test_a_record_of_another_shape_is_left_out() -> None:
    audit = LiveAudit()
    audit.take(cast(ConsumerRecord[bytes, bytes], Record(b"0/results", b"{}")))
    audit.take(cast(ConsumerRecord[bytes, bytes], Record(b"x/1", b"{}")))
    assert audit.totals() == ({}, cast(Any, {}))


async def test_a_judgement_waits_for_every_partition_with_accounts_to_reach_the_day() -> None:
    first, second, topic = LiveAudit(), LiveAudit(), FakeTopic()
    auditor = Auditor(["v"], first, 180, lambda s: None)
    ahead = AccountState(account_id="a", partition=0)
    for day in range(3):
        auditor.observe(ahead, {"v": 50.0}, (TODAY + day) * 86_400.0)
    behind = AccountState(account_id="b", partition=1)
    other = Auditor(["v"], second, 180, lambda s: None)
    for day in range(2):
        other.observe(behind, {"v": 50.0}, (TODAY + day) * 86_400.0)
    await second.ship(topic.send)
    topic.replay_into(first)
    assert first.reached(TODAY + 1)
    assert not first.reached(TODAY + 2)  # partition 1 has scored nothing of that day yet
    gone = AccountState(account_id="c", partition=2)  # a partition whose accounts all left
    auditor.observe(gone, {"v": 50.0}, TODAY * 86_400.0)
    auditor.observe(gone, {"v": 50.0}, (TODAY + 1) * 86_400.0)
    auditor.withdraw(gone)
    assert first.reached(TODAY + 1)


async def test_a_waiting_judgement_is_ready_once_the_day_is_reached_not_before() -> None:
    first, second, topic = LiveAudit(), LiveAudit(), FakeTopic()
    behind = AccountState(account_id="b", partition=1)
    other = Auditor(["v"], second, 180, lambda s: None)
    other.observe(behind, {"v": 50.0}, TODAY * 86_400.0)
    other.observe(behind, {"v": 50.0}, (TODAY + 1) * 86_400.0)
    await second.ship(topic.send)
    topic.replay_into(first)
    first.wait(0, "churner", TODAY + 2)
    first.wait(3, "moved-away", TODAY + 2)
    first.keep_only({0})
    assert first.ready() == []  # partition 1 is still a day behind
    other.observe(behind, {"v": 50.0}, (TODAY + 2) * 86_400.0)
    await second.ship(topic.send)
    topic.replay_into(first)
    assert first.ready() == [(0, b"churner")]
    assert first.ready() == []  # once


async def test_a_churn_told_and_not_in_effect_on_another_partition_holds_judgements_back() -> None:
    first, second, topic = LiveAudit(), LiveAudit(), FakeTopic()
    other = Auditor(["v"], second, 180, lambda s: None)
    told = AccountState(account_id="t", partition=1)
    for day in range(3):
        other.observe(told, {"v": 50.0}, (TODAY + day) * 86_400.0)
    churn_at = datetime.fromtimestamp((TODAY + 1) * 86_400.0, UTC)
    churn = OutcomeEvent(
        event_id="c", account_id="t", outcome=OutcomeKind.CHURNED, occurred_at=churn_at
    )
    apply_outcome(told, churn)
    other.count_outcome(told, None)
    await second.ship(topic.send)
    topic.replay_into(first)
    assert first.reached(TODAY + 1)  # a churn of that day may still come: judged later
    assert not first.reached(TODAY + 2)  # the churn of day 1 must leave the survivors first
    assert take_churn(told, (TODAY + 2) * 86_400.0)
    other.leave(told)
    await second.ship(topic.send)
    topic.replay_into(first)
    assert first.reached(TODAY + 2)
