from __future__ import annotations

from collections.abc import Iterable

from scoring.audit import Auditor
from scoring.scoring_model import default_model
from scoring.state import AccountState, Published, day_of, fold
from streams.pipeline.due_schedule import DueSchedule
from streams.pipeline.ownership import Ownership
from tests.factories import T0, login

NOW = T0.timestamp()
MODEL = default_model()


class FixedClock:
    def now(self, partition: int | None = None) -> float:
        return NOW

    def wall(self) -> float:
        return NOW

    def observe(self, event_time: float, partition: int | None = None) -> None:
        return None

    def backlog(self, topic: str, partition: int, records: int) -> None:
        return None


class FakeBooks:
    def __init__(self) -> None:
        self.kept: list[set[int]] = []
        self.rebuilt: dict[int, list[str]] = {}

    def keep_only(self, partitions: set[int]) -> None:
        self.kept.append(set(partitions))

    def rebuild(self, partition: int, states: Iterable[AccountState], auditor: Auditor) -> None:
        self.rebuilt[partition] = sorted(state.account_id for state in states)

    def book_for(self, partition: int | None) -> object:
        raise AssertionError("not used when taking partitions over")


def account(name: str, partition: int, band: str | None = None) -> tuple[bytes, AccountState]:
    state = AccountState(account_id=name, partition=partition)
    fold(state, login(account=name))
    if band is not None:
        state.published = Published(score=50.0, band=band)
    return name.encode(), state


def ownership() -> tuple[Ownership, FakeBooks, FakeBooks]:
    peers, audit = FakeBooks(), FakeBooks()
    auditor = Auditor.for_models(MODEL, (), audit, 180)  # type: ignore[arg-type]
    return Ownership(DueSchedule(), MODEL, FixedClock(), auditor, peers, audit), peers, audit


def test_taking_partitions_schedules_their_accounts_only_and_counts_their_bands() -> None:
    owner, _, audit = ownership()
    owner.schedule.set(5, b"gone", NOW)  # a partition held before, no longer owned
    churned = account("left", 0)
    churned[1].churned_day = day_of(NOW) - 1
    accounts = [
        account("acme", 0, "healthy"),
        account("initech", 2, "at-risk"),
        account("globex", 1, "healthy"),
        churned,
    ]
    bands = owner.take(accounts, {0, 2, 3})
    assert bands == {"healthy": 1, "at-risk": 1}  # globex is another worker's
    due = owner.schedule.pop_due(float("inf"), 10)
    assert sorted((partition, key) for partition, key, _ in due) == [
        (0, b"acme"),
        (0, b"left"),
        (2, b"initech"),
    ]
    # Every owned partition's audit book is rebuilt, an empty one included.
    assert audit.rebuilt == {0: ["acme", "left"], 2: ["initech"], 3: []}


def test_a_rebalance_stops_the_timer_and_the_books_of_partitions_taken_away() -> None:
    owner, peers, audit = ownership()
    owner.schedule.set(0, b"acme", NOW)
    owner.schedule.set(1, b"globex", NOW)
    owner.keep_only({0})
    assert [key for _, key, _ in owner.schedule.pop_due(NOW, 10)] == [b"acme"]
    assert peers.kept == [{0}]
    assert audit.kept == [{0}]
