from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.events import (
    AccountAttributes,
    CsmOverride,
    Event,
    OverrideAction,
    PaymentStatus,
    SurveyType,
    TicketAction,
    TicketPriority,
)
from scoring.state import (
    HORIZON_DAYS,
    ID_DIGEST_CHARS,
    MAX_TRACKED_USERS,
    RECENT_EVENT_IDS,
    AccountState,
    OverrideConflict,
    SourcePosition,
    apply_attributes,
    apply_override,
    day_of,
    fold,
    record_closing_score,
    user_key,
)
from tests.factories import T0, at, feature, login, payment, survey, ticket


def new_state() -> AccountState:
    return AccountState(account_id="acme")


def test_login_counts_in_its_day_and_marks_the_user_active() -> None:
    state = new_state()
    assert fold(state, login(days=0, user="alice"))
    bucket = state.days[day_of(T0.timestamp())]
    assert bucket.logins == 1
    assert state.active_users == {user_key("alice"): day_of(T0.timestamp())}
    assert state.watermark == T0.timestamp()
    assert state.events_applied == 1


def test_user_ids_are_not_stored_in_clear() -> None:
    state = new_state()
    fold(state, login(user="alice@example.com"))
    assert "alice@example.com" not in state.model_dump_json()


def test_feature_use_adds_its_count_and_remembers_the_feature() -> None:
    state = new_state()
    fold(state, feature(name="reports", n=4))
    fold(state, feature(name="api", n=1))
    assert state.days[day_of(T0.timestamp())].feature_uses == 5
    assert set(state.features) == {"reports", "api"}


def test_buckets_older_than_the_horizon_are_evicted() -> None:
    state = new_state()
    fold(state, login(days=-HORIZON_DAYS - 5))
    fold(state, login(days=-10))
    assert len(state.days) == 2
    fold(state, login(days=0))
    assert min(state.days) > day_of(T0.timestamp()) - HORIZON_DAYS
    assert len(state.days) == 2


def test_late_event_beyond_the_horizon_touches_no_bucket() -> None:
    state = new_state()
    fold(state, login(days=0))
    assert fold(state, login(days=-HORIZON_DAYS - 1))
    assert len(state.days) == 1
    assert state.watermark == T0.timestamp()


def test_redelivered_offset_is_skipped() -> None:
    state = new_state()
    event = login()
    source = SourcePosition("chs.events.login", 3, 41)
    assert fold(state, event, source)
    before = state.model_dump()
    assert not fold(state, login(), SourcePosition("chs.events.login", 3, 40))
    assert not fold(state, login(), source)
    assert state.model_dump() == before
    assert fold(state, login(), SourcePosition("chs.events.login", 4, 0))


def test_producer_duplicate_with_same_event_id_is_skipped() -> None:
    state = new_state()
    event = login()
    assert fold(state, event, SourcePosition("chs.events.login", 0, 1))
    assert not fold(state, event, SourcePosition("chs.events.login", 0, 2))
    assert state.days[day_of(T0.timestamp())].logins == 1


def test_recent_event_ids_are_bounded() -> None:
    state = new_state()
    for _ in range(RECENT_EVENT_IDS * 3):
        fold(state, login())
    assert len(state.recent_event_ids) == RECENT_EVENT_IDS * ID_DIGEST_CHARS


def test_an_id_is_remembered_for_the_next_63_events_and_in_the_older_form() -> None:
    state = new_state()
    first = login()
    assert fold(state, first)
    for _ in range(RECENT_EVENT_IDS - 1):
        fold(state, login())
    assert not fold(state, first)  # still among the last 64
    fold(state, login())
    assert fold(state, first)  # 65 ids ago: forgotten
    older = json.loads(state.model_dump_json())
    older["recent_event_ids"] = ["a", "b", first.event_id]  # stored as the ids themselves
    loaded = AccountState.model_validate(older)
    assert len(loaded.recent_event_ids) == 3 * ID_DIGEST_CHARS
    assert not fold(loaded, first)


def test_distinct_users_are_bounded_keeping_the_most_recent() -> None:
    state = new_state()
    for i in range(MAX_TRACKED_USERS + 50):
        fold(state, login(user=f"user-{i}", days=-1))
    fold(state, login(user="user-0"))
    assert len(state.active_users) == MAX_TRACKED_USERS
    assert user_key("user-0") in state.active_users  # seen again: most recent
    assert user_key("user-1") not in state.active_users  # least recent: evicted


def test_tickets_open_resolve_and_reopen() -> None:
    state = new_state()
    fold(state, ticket(ticket_id="t1", priority=TicketPriority.URGENT))
    fold(state, ticket(ticket_id="t2"))
    fold(state, ticket(ticket_id="t1", action=TicketAction.RESOLVED))
    assert list(state.open_tickets) == ["t2"]
    assert state.open_tickets["t2"].priority is TicketPriority.NORMAL
    fold(state, ticket(ticket_id="t1", action=TicketAction.REOPENED, priority=TicketPriority.HIGH))
    assert state.open_tickets["t1"].priority is TicketPriority.HIGH
    assert state.days[day_of(T0.timestamp())].tickets_opened == 3


def test_failed_invoice_stays_unpaid_until_paid() -> None:
    state = new_state()
    fold(state, payment(invoice="i1", status=PaymentStatus.FAILED, days=-3))
    fold(state, payment(invoice="i1", status=PaymentStatus.OVERDUE, days=-1))
    assert state.unpaid_invoices == {"i1": day_of(T0.timestamp()) - 3}
    assert sum(b.payment_failures for b in state.days.values()) == 2  # failed, then overdue
    fold(state, payment(invoice="i1", status=PaymentStatus.PAID))
    assert state.unpaid_invoices == {}


def test_surveys_accumulate_per_type_and_keep_the_latest_answer() -> None:
    state = new_state()
    fold(state, survey(score=10, days=-1))
    fold(state, survey(score=5))
    fold(state, survey(score=2, days=-2))
    fold(state, survey(kind=SurveyType.CES, score=6))
    bucket = state.days[day_of(T0.timestamp())]
    assert (bucket.nps_sum, bucket.nps_count, bucket.ces_sum, bucket.ces_count) == (5, 1, 6, 1)
    assert state.latest_surveys[SurveyType.NPS].score == 5


def test_refunds_count_and_close_the_invoice() -> None:
    state = new_state()
    fold(state, payment(invoice="i1", status=PaymentStatus.OVERDUE, days=-2))
    fold(state, payment(invoice="i1", status=PaymentStatus.REFUNDED))
    assert state.unpaid_invoices == {}
    assert sum(b.refunds for b in state.days.values()) == 1


def test_newer_attributes_replace_older_ones_and_late_snapshots_are_ignored() -> None:
    state = new_state()
    new = AccountAttributes(account_id="acme", updated_at=at(0), plan="enterprise")
    old = AccountAttributes(account_id="acme", updated_at=at(-1), plan="team")
    assert apply_attributes(state, new, SourcePosition("chs.accounts", 0, 0))
    assert not apply_attributes(state, old, SourcePosition("chs.accounts", 0, 1))
    assert not apply_attributes(state, new, SourcePosition("chs.accounts", 0, 1))
    assert state.attributes == new


def override(
    action: OverrideAction = OverrideAction.SET, replaces: str | None = None, **f: Any
) -> CsmOverride:
    return CsmOverride(
        event_id=f.pop("event_id", "o1"),
        account_id="acme",
        occurred_at=T0,
        action=action,
        author=f.pop("author", "ann"),
        reason="champion left",
        score=None if action is OverrideAction.CLEAR else 20,
        expires_at=None if action is OverrideAction.CLEAR else at(7),
        replaces=replaces,
    )


def test_an_active_override_is_never_silently_overwritten() -> None:
    now = T0.timestamp()
    state = new_state()
    assert apply_override(state, override(), now)
    assert state.override is not None
    with pytest.raises(OverrideConflict, match="replaces='o1'"):
        apply_override(state, override(event_id="o2", author="bob"), now)
    assert state.override.author == "ann"
    assert apply_override(state, override(event_id="o3", author="bob", replaces="o1"), now)
    assert state.override.author == "bob"
    assert not apply_override(state, override(event_id="o3", author="bob", replaces="o1"), now)


def test_an_expired_override_may_be_replaced_and_clear_ends_one() -> None:
    now = T0.timestamp()
    state = new_state()
    apply_override(state, override(), now)
    assert apply_override(state, override(event_id="o2"), now + 8 * 86_400)
    assert apply_override(state, override(OverrideAction.CLEAR, event_id="o4"), now)
    assert state.override is None


def test_closing_scores_keep_one_value_per_day_for_the_horizon() -> None:
    state = new_state()
    start = T0.timestamp()
    for day in range(120):
        record_closing_score(state, float(day), start + day * 86_400)
        record_closing_score(state, float(day) + 0.5, start + day * 86_400 + 3600)
    assert len(state.history) == HORIZON_DAYS
    assert state.history[day_of(start) + 119] == 119.5


def test_state_size_is_bounded_whatever_the_history() -> None:
    state = new_state()
    for day in range(400):
        for i in range(10):
            fold(state, feature(days=day - 400, name=f"f{i % 7}", user=f"u{day}-{i}"))
    encoded = len(state.model_dump_json(exclude_defaults=True))
    assert len(state.days) <= HORIZON_DAYS
    assert encoded < 40_000


def test_state_round_trips_through_json() -> None:
    state = new_state()
    for event in (login(), feature(), ticket(), payment(status=PaymentStatus.FAILED), survey()):
        fold(state, event, SourcePosition("t", 0, state.events_applied))
    restored = AccountState.model_validate_json(state.model_dump_json(exclude_defaults=True))
    assert restored == state


def test_day_buckets_are_stored_as_rows_and_the_older_objects_still_load() -> None:
    state = new_state()
    for event in (
        login(days=-2),
        ticket(days=-1.5),
        ticket(days=-1, action=TicketAction.RESOLVED),
        survey(days=-1, score=9),
    ):
        fold(state, event, SourcePosition("t", 0, state.events_applied))
    stored = json.loads(state.model_dump_json(exclude_defaults=True))
    first, second = (stored["days"][str(day)] for day in sorted(state.days))
    assert first == [1]  # a login: the other counts are zeros, left out
    assert second[3:5] == [1, 12.0]  # a ticket resolved after 12 hours
    assert AccountState.model_validate(stored) == state
    # As the previous version wrote the table: each bucket an object with its field names.
    stored["days"] = {
        str(day): bucket.model_dump(exclude_defaults=True) for day, bucket in state.days.items()
    }
    assert AccountState.model_validate_json(json.dumps(stored)) == state


EVENT_BUILDERS = st.sampled_from(
    [
        lambda d: login(days=d, user=f"u{int(d) % 3}"),
        lambda d: feature(days=d, name=f"f{int(d) % 4}"),
        lambda d: ticket(days=d, ticket_id=f"t{int(d) % 2}"),
        lambda d: ticket(days=d, ticket_id=f"t{int(d) % 2}", action=TicketAction.RESOLVED),
        lambda d: payment(days=d, status=PaymentStatus.FAILED),
        lambda d: survey(days=d, score=int(d) % 11),
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(EVENT_BUILDERS, st.floats(min_value=-120, max_value=0)), min_size=1, max_size=40
    )
)
def test_replaying_a_prefix_changes_nothing(recipe: list[tuple[object, float]]) -> None:
    """At-least-once delivery: a crash replays some already-applied prefix of the stream."""
    events: list[Event] = [build(days) for build, days in recipe]  # type: ignore[operator]
    once, twice = new_state(), new_state()
    for offset, event in enumerate(events):
        fold(once, event, SourcePosition("t", 0, offset))
    replay_from = len(events) // 2
    for offset, event in enumerate(events):
        fold(twice, event, SourcePosition("t", 0, offset))
    for offset, event in enumerate(events[replay_from:], start=replay_from):
        assert not fold(twice, event, SourcePosition("t", 0, offset))
    assert twice == once
