from __future__ import annotations

import json
from datetime import timedelta

import pytest
from pydantic import BaseModel

from alerts.config import default_rules
from scoring.audit import Auditor, LocalAudit
from scoring.events import (
    AccountAttributes,
    CsmOverride,
    EventKind,
    OutcomeKind,
    OverrideAction,
    PaymentStatus,
)
from scoring.scoring_model import ScoringModel, default_model
from scoring.state import SECONDS_PER_DAY, AccountState, SourcePosition, day_of
from scoring.update import Rescorer, Trigger
from scoring.validation import RejectCode
from streams.pipeline.account_step import (
    Applied,
    Control,
    Processor,
    Rejected,
    Skipped,
    SkipReason,
    TopicRole,
)
from streams.pipeline.clock import FLOWING_SECONDS, EventClock
from tests.clock import ManualClock
from tests.factories import T0, at, feature, login, outcome, payment

NOW = T0.timestamp()


def processor(clock: ManualClock | EventClock | None = None) -> Processor:
    return Processor(
        Rescorer(default_model()),
        default_rules(),
        clock or ManualClock(NOW),
        max_future_seconds=600,
    )


class Feed:
    """Feeds messages to a processor with increasing offsets per role."""

    def __init__(self, proc: Processor) -> None:
        self.proc = proc
        self.states: dict[bytes, AccountState] = {}
        self.offsets: dict[TopicRole, int] = {}

    def send(self, role: TopicRole, body: BaseModel | bytes, key: bytes = b"acme") -> object:
        offset = self.offsets.get(role, -1) + 1
        self.offsets[role] = offset
        payload = body if isinstance(body, bytes) else body.model_dump_json().encode()
        source = SourcePosition(f"topic-{role}", 0, offset)
        return self.proc.process(self.states, role, key, payload, source)

    def tick(self, due_at: float, key: bytes = b"acme") -> object:
        return self.proc.process_tick(self.states, key, due_at, 0)


def test_good_event_is_folded_scored_and_stored() -> None:
    feed = Feed(processor())
    event = login(account="acme")
    outcome = feed.send(EventKind.LOGIN, event)
    assert isinstance(outcome, Applied)
    assert outcome.update is not None
    assert outcome.update.event_id == event.event_id
    assert outcome.update.trigger is Trigger.EVENT
    assert outcome.now == NOW
    assert feed.states[b"acme"].published is not None
    assert feed.states[b"acme"].partition == 0


def test_bad_message_is_rejected_and_touches_no_state() -> None:
    feed = Feed(processor())
    outcome = feed.send(EventKind.LOGIN, b"{oops")
    assert isinstance(outcome, Rejected)
    assert outcome.error.code is RejectCode.NOT_JSON
    assert feed.states == {}


def test_events_from_the_future_or_beyond_the_window_are_rejected() -> None:
    feed = Feed(processor())
    future = feed.send(EventKind.LOGIN, login(days=1))
    old = feed.send(EventKind.LOGIN, login(days=-100))
    assert isinstance(future, Rejected)
    assert future.error.code is RejectCode.IN_FUTURE
    assert isinstance(old, Rejected)
    assert old.error.code is RejectCode.TOO_OLD


def skip_reason(outcome: object) -> SkipReason:
    assert isinstance(outcome, Skipped)
    return outcome.reason


def test_redelivery_and_a_producer_duplicate_are_skipped_and_told_apart() -> None:
    proc = processor()
    states: dict[bytes, AccountState] = {}
    payload = login().model_dump_json().encode()
    first, later = (
        SourcePosition("chs.events.login", 0, 5),
        SourcePosition("chs.events.login", 0, 9),
    )
    assert isinstance(proc.process(states, EventKind.LOGIN, b"acme", payload, first), Applied)
    redelivered = proc.process(states, EventKind.LOGIN, b"acme", payload, first)
    duplicate = proc.process(states, EventKind.LOGIN, b"acme", payload, later)
    assert skip_reason(redelivered) is SkipReason.REDELIVERED
    assert skip_reason(duplicate) is SkipReason.DUPLICATE
    assert states[b"acme"].events_applied == 1


def test_an_older_attributes_snapshot_is_outdated() -> None:
    feed = Feed(processor())
    newer = AccountAttributes(account_id="acme", updated_at=T0, plan="enterprise")
    older = AccountAttributes(account_id="acme", updated_at=at(days=-1), plan="starter")
    assert isinstance(feed.send(Control.ACCOUNTS, newer), Applied)
    assert skip_reason(feed.send(Control.ACCOUNTS, older)) is SkipReason.OUTDATED
    attributes = feed.states[b"acme"].attributes
    assert attributes is not None
    assert attributes.plan == "enterprise"


def test_attributes_change_the_segment_and_owner() -> None:
    feed = Feed(processor())
    feed.send(EventKind.LOGIN, login())
    attributes = AccountAttributes(
        account_id="acme", updated_at=T0, plan="enterprise", csm_owner="ann"
    )
    outcome = feed.send(Control.ACCOUNTS, attributes)
    assert isinstance(outcome, Applied)
    assert outcome.update is not None
    assert outcome.update.segment == "enterprise"
    assert outcome.update.owner == "ann"
    assert outcome.update.trigger is Trigger.ATTRIBUTES
    assert "segment default -> enterprise" in outcome.update.summary


def override(event_id: str, author: str, replaces: str | None = None) -> CsmOverride:
    return CsmOverride(
        event_id=event_id,
        account_id="acme",
        occurred_at=T0,
        action=OverrideAction.SET,
        author=author,
        reason="renewal at risk",
        score=5,
        expires_at=at(14),
        replaces=replaces,
    )


def test_conflicting_override_goes_to_the_dlq_with_the_active_one_named() -> None:
    feed = Feed(processor())
    feed.send(EventKind.LOGIN, login())
    first = feed.send(Control.OVERRIDES, override("o1", "ann"))
    assert isinstance(first, Applied)
    assert first.update is not None
    assert first.update.override is not None
    conflict = feed.send(Control.OVERRIDES, override("o2", "bob"))
    assert isinstance(conflict, Rejected)
    assert conflict.error.code is RejectCode.OVERRIDE_CONFLICT
    assert "o1" in conflict.error.reason
    replaced = feed.send(Control.OVERRIDES, override("o3", "bob", replaces="o1"))
    assert isinstance(replaced, Applied)


def test_a_tick_re_evaluates_with_time_moved_on() -> None:
    clock = ManualClock(NOW)
    feed = Feed(processor(clock))
    for day in range(10):
        feed.send(EventKind.LOGIN, login(days=-day, user=f"u{day}"))
    before = feed.states[b"acme"].published
    assert before is not None
    clock.advance(15 * SECONDS_PER_DAY)
    outcome = feed.tick(clock.now())
    assert isinstance(outcome, Applied)
    assert outcome.update is not None
    assert outcome.update.trigger is Trigger.TIMER
    assert outcome.update.score < before.score
    assert "days since last login" in outcome.update.summary


def test_a_tick_for_an_unknown_account_is_skipped() -> None:
    feed = Feed(processor())
    outcome = feed.tick(NOW)
    assert skip_reason(outcome) is SkipReason.NO_ACCOUNT
    assert feed.states == {}


def test_event_clock_scores_at_the_newest_event_time() -> None:
    clock = EventClock()
    feed = Feed(processor(clock))
    feed.send(EventKind.LOGIN, login(account="a", days=-30), key=b"a")
    outcome = feed.send(EventKind.LOGIN, login(account="b", days=-10), key=b"b")
    assert clock.now() == at(-10).timestamp()
    assert isinstance(outcome, Applied)
    assert outcome.now == at(-10).timestamp()


def test_a_partition_read_behind_the_others_is_scored_at_its_own_event_time() -> None:
    wall = ManualClock(NOW)
    clock = EventClock(wall.wall)
    proc = processor(clock)
    states: dict[bytes, AccountState] = {}

    def send(account: str, days: float, partition: int, offset: int) -> Applied:
        payload = login(account=account, days=days).model_dump_json().encode()
        source = SourcePosition("chs.events.login", partition, offset)
        applied = proc.process(states, EventKind.LOGIN, account.encode(), payload, source)
        assert isinstance(applied, Applied)
        return applied

    send("ahead", -10, partition=0, offset=0)
    behind = send("behind", -40, partition=1, offset=0)  # partition 1 is read 30 days behind
    assert behind.now == at(-40).timestamp()  # not partition 0's day
    assert clock.now(1) == at(-40).timestamp()
    assert clock.now(0) == clock.now() == at(-10).timestamp()
    assert clock.now(2) == at(-10).timestamp()  # nothing read from it: the newest of all
    clock.backlog("chs.events.login", 1, 300)  # its last fetch left 300 records waiting
    wall.advance(FLOWING_SECONDS)  # and none read for a while (the consumer read others)
    assert clock.now(1) == at(-40).timestamp()
    clock.backlog("chs.events.login", 1, 0)  # read to the end, and quiet: time passes for it
    assert clock.now(1) == at(-10).timestamp()
    assert send("behind", -39, partition=1, offset=1).now == at(-39).timestamp()


class BrokenStore(dict[bytes, AccountState]):
    def get(self, key: bytes, default: object = None) -> AccountState:
        raise RuntimeError("store bug")


def test_a_failure_while_applying_sends_the_input_to_the_dlq() -> None:
    proc = processor()
    payload = json.loads(login().model_dump_json())
    source = SourcePosition("chs.events.login", 0, 0)
    outcome = proc.process(
        BrokenStore(), EventKind.LOGIN, b"acme", json.dumps(payload).encode(), source
    )
    assert isinstance(outcome, Rejected)
    assert outcome.error.code is RejectCode.PROCESSING_ERROR
    assert "RuntimeError" in outcome.error.reason


def test_a_failed_payment_raises_a_critical_alert_with_the_event_as_trigger() -> None:
    feed = Feed(processor())
    for day in range(5):
        feed.send(EventKind.LOGIN, login(days=-day, user=f"u{day}"))
    failed = payment(status=PaymentStatus.FAILED)
    outcome = feed.send(EventKind.PAYMENT, failed)
    assert isinstance(outcome, Applied)
    assert [a.rule for a in outcome.alerts] == ["critical_event:failed_payment"]
    assert outcome.alerts[0].trigger == failed.event_id
    assert outcome.next_due is not None


def test_time_alone_raises_a_band_alert_on_a_tick() -> None:
    clock = ManualClock(NOW)
    feed = Feed(processor(clock))
    since = (T0 - timedelta(days=800)).date()
    # Enterprise: healthy from 85. Clean billing and support hold a silent account's score
    # near 78 for the 21 days before it goes stale.
    attributes = AccountAttributes(
        account_id="acme", updated_at=T0, customer_since=since, plan="enterprise"
    )
    feed.send(Control.ACCOUNTS, attributes)
    for day in range(40):  # past its onboarding
        feed.send(EventKind.LOGIN, login(days=-day, user=f"u{day % 4}"))
        feed.send(EventKind.FEATURE_USE, feature(days=-day, name=f"f{day % 6}", user="u1", n=3))
    state = feed.states[b"acme"]
    assert state.published is not None
    assert state.published.band == "healthy"
    alerts = []
    for _ in range(20):
        clock.advance(SECONDS_PER_DAY)
        outcome = feed.tick(clock.now())
        assert isinstance(outcome, Applied)
        alerts.extend(outcome.alerts)
    assert [a.rule for a in alerts if a.rule == "band_change"] == ["band_change"]
    crossing = next(a for a in alerts if a.rule == "band_change")
    assert crossing.trigger.startswith("tick:")
    assert crossing.old_band == "healthy"


class BrokenRescorer(Rescorer):
    def evaluate(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("scoring bug")


def test_a_failure_while_rescoring_keeps_the_input_applied(
    caplog: pytest.LogCaptureFixture,
) -> None:
    proc = Processor(BrokenRescorer(default_model()), default_rules(), ManualClock(NOW), 600)
    states: dict[bytes, AccountState] = {}
    payload = login().model_dump_json().encode()
    outcome = proc.process(states, EventKind.LOGIN, b"acme", payload, SourcePosition("t", 0, 0))
    assert isinstance(outcome, Applied)
    assert outcome.update is None
    assert states[b"acme"].events_applied == 1
    assert "Rescoring account acme failed" in caplog.text


def audited_processor(clock: ManualClock | EventClock, *shadows: ScoringModel) -> Processor:
    model = default_model()
    versions = [model.version, *(s.version for s in shadows)]
    auditor = Auditor(versions, LocalAudit(), 180, lambda s: None)
    return Processor(
        Rescorer(model, None, auditor, shadows), default_rules(), clock, max_future_seconds=600
    )


def test_a_churned_account_is_withdrawn_no_longer_scored_judged_then_forgotten() -> None:
    clock = ManualClock(NOW)
    feed = Feed(audited_processor(clock))
    feed.send(EventKind.LOGIN, login())
    churn = feed.send(Control.OUTCOMES, outcome())
    assert isinstance(churn, Applied)
    assert churn.withdrawn
    assert churn.update is None
    assert churn.alerts == []
    assert feed.states[b"acme"].churned_day == day_of(NOW)
    assert skip_reason(feed.send(EventKind.LOGIN, login())) is SkipReason.CHURNED
    renewal = feed.send(Control.OUTCOMES, outcome(kind=OutcomeKind.RENEWED))
    assert isinstance(renewal, Applied)
    assert not renewal.withdrawn
    assert churn.next_due is not None
    clock.current = churn.next_due
    judged = feed.tick(churn.next_due)
    assert isinstance(judged, Applied)
    assert not judged.forget
    assert judged.next_due == (day_of(NOW) + 180) * SECONDS_PER_DAY
    clock.current = judged.next_due
    gone = feed.tick(judged.next_due)
    assert isinstance(gone, Applied)
    assert gone.forget
    assert gone.next_due is None


def test_a_churn_read_before_the_history_it_closes_applies_from_its_own_time() -> None:
    clock = EventClock(wall=lambda: NOW + 2 * SECONDS_PER_DAY)
    feed = Feed(audited_processor(clock))
    feed.send(EventKind.LOGIN, login(days=-10))
    told = feed.send(Control.OUTCOMES, outcome(days=0))
    assert isinstance(told, Applied)
    assert not told.withdrawn
    assert clock.now(0) == at(-10).timestamp()  # an outcome does not move event time
    state = feed.states[b"acme"]
    assert (state.churn_at, state.churned_day) == (NOW, None)
    earlier = feed.send(EventKind.LOGIN, login(days=-5, user="u2"))
    assert isinstance(earlier, Applied)
    assert earlier.update is not None  # still its history: scored
    assert earlier.next_due is not None
    assert earlier.next_due <= NOW
    assert skip_reason(feed.send(EventKind.LOGIN, login(days=0.5))) is SkipReason.CHURNED
    assert feed.states[b"acme"].churned_day is None
    feed.send(EventKind.LOGIN, login(account="beta", days=0.25), key=b"beta")
    leaves = feed.tick(NOW)
    assert isinstance(leaves, Applied)
    assert leaves.withdrawn
    assert leaves.update is None
    assert feed.states[b"acme"].churned_day == day_of(NOW)


def test_an_outcome_of_no_known_kind_goes_to_the_dlq() -> None:
    feed = Feed(audited_processor(ManualClock(NOW)))
    body = outcome().model_dump(mode="json") | {"outcome": "cancelled"}
    rejected = feed.send(Control.OUTCOMES, json.dumps(body).encode())
    assert isinstance(rejected, Rejected)
    assert rejected.error.code is RejectCode.SCHEMA
    assert "outcome" in rejected.error.reason


def test_a_shadow_model_is_evaluated_beside_the_live_one_and_publishes_nothing() -> None:
    live = default_model()
    shadow = live.model_copy(update={"name": "candidate", "bands": live.bands})
    feed = Feed(audited_processor(ManualClock(NOW), shadow))
    applied = feed.send(EventKind.LOGIN, login())
    assert isinstance(applied, Applied)
    assert applied.update is not None
    assert applied.update.model_version == live.version
    assert set(feed.states[b"acme"].trails) == {live.version, shadow.version}
