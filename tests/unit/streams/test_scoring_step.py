"""The scoring step with in-memory fakes of its ports: what it stores, publishes, schedules,
counts and leaves to write and acknowledge for a batch."""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from alerts.alert import Alert
from alerts.config import default_rules
from scoring.events import EventKind, PaymentStatus
from scoring.scoring_model import default_model
from scoring.state import AccountState
from scoring.update import Rescorer, ScoreUpdate
from streams.processing import Control, Processor, TopicRole
from streams.scoring_step import ScoringPorts, score_batch
from streams.state_records import StateWriter, replay
from tests.clock import ManualClock
from tests.factories import T0, login, outcome, payment

NOW = T0.timestamp()
ROLES: dict[str, TopicRole] = {
    "chs.events.login": EventKind.LOGIN,
    "chs.events.payment": EventKind.PAYMENT,
    "chs.outcomes": Control.OUTCOMES,
}


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


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
        self.alerts: list[tuple[bytes, bytes]] = []
        self.dead: list[tuple[bytes | None, bytes | None, dict[str, bytes]]] = []

    def score(self, key: bytes, value: bytes | None) -> Sent:
        self.scores.append((key, value))
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

    def alerted(self, alert: Alert) -> None:
        self.calls.append(("alerted", alert.rule))

    def consumer_lag(self, topic: str, partition: int, behind: int) -> None:
        self.calls.append(("consumer_lag", (topic, partition, behind)))

    def batch(self, inputs: int, seconds: float, wall: float) -> None:
        self.calls.append(("batch", inputs))


class Harness:
    def __init__(self, highwater: int | None = None) -> None:
        self.clock = ManualClock(NOW)
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


def test_an_event_is_stored_published_scheduled_and_left_to_write() -> None:
    run = Harness()
    record = run.record("chs.events.login", login())
    settled = score_batch(run.ports, [record])
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
    assert run.metrics.names() == ["consumed", "event_lag", "published", "batch"]


def test_an_account_is_rescored_and_written_once_per_batch() -> None:
    run = Harness()
    batch = [run.record("chs.events.login", login(user=f"u{n}")) for n in range(3)]
    settled = score_batch(run.ports, batch)
    assert len(run.publisher.scores) == 1
    assert [key for key, _, _ in settled.states if key == b"acme"] == [b"acme"]
    assert run.store.states[b"acme"].events_applied == 3
    assert run.metrics.calls[-1] == ("batch", 3)


def test_a_bad_message_goes_to_the_dead_letter_topic_with_its_reason() -> None:
    run = Harness()
    record = run.record("chs.events.login", b"{not json")
    settled = score_batch(run.ports, [record])
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
    score_batch(run.ports, [record])
    again = score_batch(run.ports, [record])
    assert len(run.publisher.scores) == 1
    assert again.states == []
    assert ("skipped", "redelivered") in run.metrics.calls


def test_an_alert_is_published_with_the_update() -> None:
    run = Harness()
    score_batch(run.ports, [run.record("chs.events.login", login(days=-20))])
    failed = payment(status=PaymentStatus.FAILED)
    score_batch(run.ports, [run.record("chs.events.payment", failed)])
    assert [json.loads(alert)["rule"] for _, alert in run.publisher.alerts] == [
        "critical_event:failed_payment"
    ]
    assert ("alerted", "critical_event:failed_payment") in run.metrics.calls


def test_a_churn_withdraws_the_published_score() -> None:
    run = Harness()
    score_batch(run.ports, [run.record("chs.events.login", login())])
    score_batch(run.ports, [run.record("chs.outcomes", outcome())])
    assert run.publisher.scores[-1] == (b"acme", None)
    assert ("outcome", "churned") in run.metrics.calls
    assert [name for name in run.metrics.names() if name == "withdrawn"] == ["withdrawn"]


def test_the_lag_behind_each_partition_is_reported_to_metrics_and_clock() -> None:
    backlog: list[tuple[str, int, int]] = []
    run = Harness(highwater=10)
    run.clock.backlog = lambda topic, partition, records: backlog.append(  # type: ignore[method-assign]
        (topic, partition, records)
    )
    score_batch(run.ports, [run.record("chs.events.login", login(), offset=4)])
    assert ("consumer_lag", ("chs.events.login", 0, 5)) in run.metrics.calls
    assert backlog == [("chs.events.login", 0, 5)]
