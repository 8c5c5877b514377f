"""The scoring step with in-memory fakes of its ports: what it stores, publishes, schedules,
counts and leaves to write and acknowledge for a window."""

from __future__ import annotations

import json
import logging
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import pytest

from alerts.alert import Alert
from alerts.config import default_rules
from scoring.events import AccountAttributes, EventKind, PaymentStatus
from scoring.scoring_model import default_model
from scoring.state import AccountState
from scoring.update import Rescorer, ScoreUpdate
from streams.pipeline.account_step import Control, Processor, TopicRole
from streams.pipeline.checkpoint import SettledWindow
from streams.pipeline.clock import Clock, EventClock
from streams.pipeline.window_step import (
    ScoringPorts,
    ScoringWindow,
    WindowBound,
    window_closes,
)
from streams.worker.state_records import StateWriter, replay
from tests.clock import ManualClock
from tests.factories import T0, at, login, outcome, payment

NOW = T0.timestamp()
ROLES: dict[str, TopicRole] = {
    "chs.events.login": EventKind.LOGIN,
    "chs.events.payment": EventKind.PAYMENT,
    "chs.events.feature_use": EventKind.FEATURE_USE,
    "chs.events.ticket": EventKind.TICKET,
    "chs.events.survey": EventKind.SURVEY,
    "chs.outcomes": Control.OUTCOMES,
    "chs.accounts": Control.ACCOUNTS,
    "chs.rollup": Control.ROLLUP,
}


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None


class Sent:
    """A delivery that has completed."""

    def __await__(self) -> Generator[Any, None, None]:
        yield from ()


class FakeStore:
    def __init__(self) -> None:
        self.states: dict[bytes, AccountState] = {}

    def get(self, key: bytes) -> AccountState | None:
        return self.states.get(key)

    def put(self, key: bytes, state: AccountState) -> None:
        self.states[key] = state

    def delete(self, key: bytes) -> None:
        del self.states[key]


class FakePublisher:
    def __init__(self) -> None:
        self.scores: list[tuple[bytes, bytes | None]] = []
        self.erased: list[bytes] = []
        self.alerts: list[tuple[bytes, bytes]] = []
        self.reports: list[tuple[bytes, bytes]] = []
        self.dead: list[tuple[bytes | None, bytes | None, dict[str, bytes]]] = []

    def score(self, key: bytes, value: bytes | None, erased: bool = False) -> Sent:
        self.scores.append((key, value))
        if erased:
            self.erased.append(key)
        return Sent()

    def rollup(self, key: bytes, value: bytes) -> Sent:
        self.reports.append((key, value))
        return Sent()

    def alert(self, key: bytes, value: bytes) -> Sent:
        self.alerts.append((key, value))
        return Sent()

    def dead_letter(
        self, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> Sent:
        self.dead.append((key, value, dict(headers)))
        return Sent()


class FakeSchedule:
    def __init__(self) -> None:
        self.due: dict[bytes, float | None] = {}

    def set(self, partition: int, key: bytes, due: float | None) -> None:
        self.due[key] = due


class FakeMetrics:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def consumed(self, role: str) -> None:
        self.calls.append(("consumed", role))

    def rejected(self, code: str) -> None:
        self.calls.append(("rejected", code))

    def skipped(self, reason: str) -> None:
        self.calls.append(("skipped", reason))

    def event_lag(self, seconds: float) -> None:
        self.calls.append(("event_lag", seconds))

    def outcome(self, outcome: str) -> None:
        self.calls.append(("outcome", outcome))

    def published(self, update: ScoreUpdate) -> None:
        self.calls.append(("published", update.band))

    def withdrawn(self, band: str | None) -> None:
        self.calls.append(("withdrawn", band))

    def erased(self) -> None:
        self.calls.append(("erased", None))

    def reported(self) -> None:
        self.calls.append(("reported", None))

    def alerted(self, alert: Alert) -> None:
        self.calls.append(("alerted", alert.rule))

    def consumer_lag(self, topic: str, partition: int, behind: int) -> None:
        self.calls.append(("consumer_lag", (topic, partition, behind)))

    def ticked(self) -> None:
        self.calls.append(("ticked", None))

    def window(self, inputs: int, seconds: float, wall: float) -> None:
        self.calls.append(("window", inputs))


class Harness:
    def __init__(self, highwater: int | None = None, clock: Clock | None = None) -> None:
        self.manual = ManualClock(NOW)
        self.clock = clock or self.manual
        self.store = FakeStore()
        self.writer = StateWriter()
        self.publisher = FakePublisher()
        self.schedule = FakeSchedule()
        self.metrics = FakeMetrics()
        processor = Processor(Rescorer(default_model()), default_rules(), self.clock, 600)
        self.ports = ScoringPorts(
            processor=processor,
            roles=ROLES,
            store=self.store,
            state_records=self.writer,
            publisher=self.publisher,
            schedule=self.schedule,
            clock=self.clock,
            metrics=self.metrics,
            highwater=lambda topic, partition: highwater,
        )
        self.offset = 0

    def record(
        self, topic: str, body: Any, key: bytes = b"acme", offset: int | None = None
    ) -> Record:
        if offset is None:
            self.offset += 1
            offset = self.offset
        value = body if isinstance(body, bytes) else body.model_dump_json().encode()
        return Record(topic, 0, offset, key, value)


def score_window(ports: ScoringPorts, *batches: list[Record]) -> SettledWindow[Record]:
    """One window of ``batches``, settled."""
    window: ScoringWindow[Record] = ScoringWindow(ports)
    for batch in batches:
        window.add(batch)
    return window.settle()


def test_an_event_is_stored_published_scheduled_and_left_to_write() -> None:
    run = Harness()
    record = run.record("chs.events.login", login())
    settled = score_window(run.ports, [record])
    state = run.store.states[b"acme"]
    assert state.events_applied == 1
    [(key, update)] = run.publisher.scores
    assert key == b"acme"
    assert update is not None
    assert json.loads(update)["account_id"] == "acme"
    assert run.schedule.due[b"acme"] is not None
    assert settled.inputs == [record]
    assert len(settled.outputs) == 1
    assert {partition for _, partition, _ in settled.states} == {0}
    assert settled.states[-1][0] == b"acme"  # the input record after its parts
    written = replay((key, value) for key, _, value in settled.states)
    assert written[b"acme"].events_applied == 1
    assert run.metrics.names() == ["consumed", "event_lag", "published", "window"]


def test_an_account_is_rescored_and_written_once_per_window_of_batches() -> None:
    run = Harness()
    batches = [[run.record("chs.events.login", login(user=f"u{n}"))] for n in range(3)]
    settled = score_window(run.ports, *batches)
    assert len(run.publisher.scores) == 1
    assert [key for key, _, _ in settled.states if key == b"acme"] == [b"acme"]
    assert run.store.states[b"acme"].events_applied == 3
    assert run.metrics.calls[-1] == ("window", 3)


def test_an_account_settled_on_several_days_is_written_once_as_the_window_left_it() -> None:
    run = Harness(clock=EventClock(lambda: NOW))
    days = [run.record("chs.events.login", login(days=day, user=f"u{day}")) for day in (-3, -2, -1)]
    settled = score_window(run.ports, days)
    assert len(run.publisher.scores) == 3  # each day's closing score
    assert [key for key, _, _ in settled.states if key == b"acme"] == [b"acme"]
    written = replay((key, value) for key, _, value in settled.states)
    assert written[b"acme"].events_applied == 3
    assert len(written[b"acme"].history) == len(run.store.states[b"acme"].history) >= 2


def test_a_window_counts_the_inputs_waiting_on_the_partitions_it_read() -> None:
    behind = Harness(highwater=10)
    window: ScoringWindow[Record] = ScoringWindow(behind.ports)
    window.add([behind.record("chs.events.login", login(), offset=3)])
    window.add([behind.record("chs.events.login", login(user="u2"), offset=5)])
    assert window.waiting == 4  # offsets 6 to 9, as of its last read
    assert window.grew
    caught_up = Harness(highwater=4)
    window = ScoringWindow(caught_up.ports)
    window.add([caught_up.record("chs.events.login", login(), offset=3)])
    assert window.waiting == 0
    assert not window.grew


def test_a_window_grows_only_while_more_inputs_wait_than_it_holds() -> None:
    bound = WindowBound(max_inputs=100, max_seconds=2.0)
    assert not window_closes(0, 5.0, 0, False, bound)  # nothing to settle
    assert window_closes(1, 0.0, 0, True, bound)  # light load: one batch
    assert window_closes(20, 0.0, 15, True, bound)  # a heavy live load: still one batch
    assert not window_closes(50, 1.0, 51, True, bound)  # a backlog: it grows
    assert window_closes(50, 1.0, 5000, False, bound)  # a rebalance began
    assert window_closes(100, 1.0, 5000, True, bound)
    assert window_closes(50, 2.0, 5000, True, bound)


def test_a_bad_message_goes_to_the_dead_letter_topic_with_its_reason() -> None:
    run = Harness()
    record = run.record("chs.events.login", b"{not json")
    settled = score_window(run.ports, [record])
    [(key, value, headers)] = run.publisher.dead
    assert (key, value) == (b"acme", b"{not json")
    assert headers["chs-reason-code"] == b"not_json"
    assert headers["chs-source-offset"] == str(record.offset).encode()
    assert ("rejected", "not_json") in run.metrics.calls
    assert settled.inputs == [record]  # acknowledged once the dead letter is delivered
    assert settled.states == []
    assert run.store.states == {}


def test_a_redelivered_message_changes_nothing_and_is_counted() -> None:
    run = Harness()
    record = run.record("chs.events.login", login())
    score_window(run.ports, [record])
    again = score_window(run.ports, [record])
    assert len(run.publisher.scores) == 1
    assert again.states == []
    assert ("skipped", "redelivered") in run.metrics.calls


def test_an_alert_is_published_with_the_update() -> None:
    run = Harness()
    score_window(run.ports, [run.record("chs.events.login", login(days=-20))])
    failed = payment(status=PaymentStatus.FAILED)
    score_window(run.ports, [run.record("chs.events.payment", failed)])
    # The failed payment counts against billing at once: the band falls too.
    assert [json.loads(alert)["rule"] for _, alert in run.publisher.alerts] == [
        "band_change",
        "critical_event:failed_payment",
    ]
    assert ("alerted", "critical_event:failed_payment") in run.metrics.calls


def test_a_churn_withdraws_the_published_score() -> None:
    run = Harness()
    score_window(run.ports, [run.record("chs.events.login", login())])
    score_window(run.ports, [run.record("chs.outcomes", outcome())])
    assert run.publisher.scores[-1] == (b"acme", None)
    assert ("outcome", "churned") in run.metrics.calls
    assert [name for name in run.metrics.names() if name == "withdrawn"] == ["withdrawn"]


def test_the_lag_behind_each_partition_is_reported_to_metrics_and_clock() -> None:
    backlog: list[tuple[str, int, int]] = []
    run = Harness(highwater=10)
    run.clock.backlog = lambda topic, partition, records: backlog.append(  # type: ignore[method-assign]
        (topic, partition, records)
    )
    score_window(run.ports, [run.record("chs.events.login", login(), offset=4)])
    assert ("consumer_lag", ("chs.events.login", 0, 5)) in run.metrics.calls
    assert backlog == [("chs.events.login", 0, 5)]


def attributes(account: str, parent: str | None, mrr: int = 100, days: float = 0.0) -> bytes:
    snapshot = AccountAttributes(
        account_id=account, updated_at=at(days), mrr=mrr, parent_account_id=parent
    )
    return snapshot.model_dump_json().encode()


def test_a_tombstone_erases_the_account_and_drops_what_is_older(
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = Harness()
    score_window(run.ports, [run.record("chs.events.login", login(days=-1))])
    reason = [("chs-reason", b"GDPR request 42")]
    tombstone = Record("chs.accounts", 0, 99, b"acme", None, reason)
    with caplog.at_level(logging.INFO):
        settled = score_window(run.ports, [tombstone])
    assert run.store.states == {}
    assert settled.states
    assert all(value is None for _, _, value in settled.states)
    assert b"acme" in {key for key, _, _ in settled.states}
    assert run.publisher.scores[-1] == (b"acme", None)
    assert run.publisher.erased == [b"acme"]
    assert run.schedule.due[b"acme"] is None
    assert [n for n in run.metrics.names() if n in ("erased", "withdrawn")] == [
        "withdrawn",
        "erased",
    ]
    assert "Erasing account acme (reason: GDPR request 42)" in caplog.text
    score_window(run.ports, [run.record("chs.events.login", login(days=-2))])
    assert run.store.states == {}  # older than the erasure: not a new account
    assert ("skipped", "erased") in run.metrics.calls
    run.manual.advance(3600)
    score_window(run.ports, [run.record("chs.events.login", login(days=0.01))])
    assert run.store.states[b"acme"].events_applied == 1  # newer: a new account


def test_events_after_a_tombstone_in_the_same_batch_start_the_account_anew() -> None:
    run = Harness()
    score_window(run.ports, [run.record("chs.events.login", login(days=-1, user="old"))])
    run.manual.advance(3600)
    batch = [
        run.record("chs.events.login", login(days=-0.5, user="before")),
        Record("chs.accounts", 0, 99, b"acme", None),
        run.record("chs.events.login", login(days=0.01, user="after")),
    ]
    settled = score_window(run.ports, batch)
    state = run.store.states[b"acme"]
    assert state.events_applied == 1
    assert len(state.active_users) == 1
    written = [value for key, _, value in settled.states if key == b"acme"]
    assert written[0] is None
    assert written[-1] is not None
    assert run.publisher.scores[-2:][0] == (b"acme", None)


def test_a_child_reports_to_its_parent_and_the_parent_rolls_it_up() -> None:
    run = Harness()
    score_window(
        run.ports,
        [
            run.record("chs.accounts", attributes("acme", "group", mrr=300)),
            run.record("chs.events.login", login()),
        ],
    )
    [(parent_key, report)] = run.publisher.reports
    assert parent_key == b"group"
    assert json.loads(report)["score"] == json.loads(run.publisher.scores[-1][1] or b"")["score"]
    score_window(run.ports, [run.record("chs.rollup", report, key=b"group")])
    group = run.store.states[b"group"]
    assert list(group.children) == ["acme"]
    update = json.loads(run.publisher.scores[-1][1] or b"")
    assert update["account_id"] == "group"
    assert update["rollup"]["scored_children"] == 1
    assert update["trigger"] == "child"
    assert ("reported", None) in run.metrics.calls


def test_a_report_that_comes_round_to_its_sender_is_refused_as_a_cycle() -> None:
    run = Harness()
    report = (
        b'{"account_id": "a", "child_id": "b", "score": 50, "at": "2026-03-02T12:00:00Z",'
        b' "path": ["a", "b"]}'
    )
    score_window(run.ports, [run.record("chs.rollup", report, key=b"a")])
    [(_, _, headers)] = run.publisher.dead
    assert headers["chs-reason-code"] == b"parent_cycle"
    assert b"a -> b -> a" in headers["chs-reason"]
    assert b"a" not in run.store.states


def test_a_parent_whose_last_child_leaves_is_withdrawn() -> None:
    run = Harness()
    score_window(
        run.ports,
        [
            run.record("chs.accounts", attributes("acme", "group")),
            run.record("chs.events.login", login()),
        ],
    )
    [(_, joined)] = run.publisher.reports
    score_window(run.ports, [run.record("chs.rollup", joined, key=b"group")])
    parent = json.loads(run.publisher.scores[-1][1] or b"")
    assert parent["account_id"] == "group"
    run.manual.advance(60)
    score_window(run.ports, [run.record("chs.accounts", attributes("acme", None, days=0.001))])
    [_, (parent_key, left)] = run.publisher.reports
    assert json.loads(left)["leaves"]
    score_window(run.ports, [run.record("chs.rollup", left, key=parent_key)])
    assert run.publisher.scores[-1] == (b"group", None)
    assert run.store.states[b"group"].published is None
    assert ("withdrawn", parent["band"]) in run.metrics.calls


def deliver_reports(run: Harness, rounds: int = 10) -> None:
    """Feed the reports sent so far back in as the roll-up topic would, until none is left."""
    delivered = 0
    for _ in range(rounds):
        pending = run.publisher.reports[delivered:]
        if not pending:
            return
        delivered += len(pending)
        score_window(
            run.ports, [run.record("chs.rollup", value, key=key) for key, value in pending]
        )
    raise AssertionError("reports still going round")


def test_a_cycle_is_refused_as_soon_as_it_closes_even_when_no_score_moves() -> None:
    run = Harness()
    score_window(
        run.ports,
        [
            run.record("chs.accounts", attributes("a", "b"), key=b"a"),
            run.record("chs.events.login", login("a"), key=b"a"),
        ],
    )
    deliver_reports(run)
    assert list(run.store.states[b"b"].children) == ["a"]
    run.manual.advance(60)
    score_window(
        run.ports, [run.record("chs.accounts", attributes("b", "a", days=0.0005), key=b"b")]
    )
    deliver_reports(run)
    [(key, _, headers)] = run.publisher.dead
    assert headers["chs-reason-code"] == b"parent_cycle"
    assert headers["chs-reason"].startswith(b"parent cycle ")
    assert key in (b"a", b"b")


def test_due_accounts_are_re_evaluated_at_the_end_of_a_window_without_an_input() -> None:
    run = Harness()
    for day in range(10):
        score_window(run.ports, [run.record("chs.events.login", login(days=-day, user=f"u{day}"))])
    before = run.store.states[b"acme"].published
    assert before is not None
    run.manual.advance(15 * 86_400)
    published = len(run.publisher.scores)
    window: ScoringWindow[Record] = ScoringWindow(run.ports)
    window.tick([(0, b"acme", run.manual.now()), (0, b"unknown", run.manual.now())])
    assert (window.inputs, window.size) == (0, 2)
    settled = window.settle()
    [(key, value)] = run.publisher.scores[published:]
    assert key == b"acme"
    assert value is not None
    update = json.loads(value)
    assert update["trigger"] == "timer"
    assert update["score"] < before.score
    assert [k for k, _, _ in settled.states if k == b"acme"] == [b"acme"]
    assert run.metrics.names().count("ticked") == 2


def test_an_account_due_and_touched_in_the_same_window_is_settled_once() -> None:
    run = Harness()
    score_window(run.ports, [run.record("chs.events.login", login(days=-3))])
    published = len(run.publisher.scores)
    window: ScoringWindow[Record] = ScoringWindow(run.ports)
    window.add([run.record("chs.events.login", login(user="u2"))])
    window.tick([(0, b"acme", NOW)])
    window.settle()
    assert len(run.publisher.scores) - published == 1
    assert run.store.states[b"acme"].events_applied == 2


def test_held_windows_write_an_account_erased_and_started_anew_after_its_tombstones() -> None:
    run = Harness()
    first: ScoringWindow[Record] = ScoringWindow(run.ports)
    first.add([run.record("chs.events.login", login(days=-1, user="old"))])
    held = first.settle(hold=True)
    assert held.states == []
    assert list(held.held) == [b"acme"]
    second: ScoringWindow[Record] = ScoringWindow(run.ports, held)
    second.add([Record("chs.accounts", 0, 99, b"acme", None)])
    assert second.settle(hold=True) is held
    assert held.held == {}  # erased: nothing of the old account left to write
    run.manual.advance(3600)
    third: ScoringWindow[Record] = ScoringWindow(run.ports, held)
    third.add([run.record("chs.events.login", login(days=0.01, user="new"))])
    settled = third.settle()
    assert settled is held
    assert len(settled.inputs) == 3
    assert third.inputs == 1
    written = [value for key, _, value in settled.states if key == b"acme"]
    assert written[0] is None
    assert written[-1] is not None
    state = replay((key, value) for key, _, value in settled.states)[b"acme"]
    assert state.events_applied == 1
    assert state.active_users == run.store.states[b"acme"].active_users
    assert len(state.active_users) == 1
