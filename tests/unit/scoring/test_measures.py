"""Each metric of the catalogue against values worked out by hand."""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from scoring import state as state_module
from scoring.config import parse_config
from scoring.events import (
    AccountAttributes,
    Event,
    PaymentStatus,
    SurveyType,
    TicketAction,
    TicketPriority,
)
from scoring.measures import MetricContext, Windows, metric_value
from scoring.scoring_model import Measure, Metric, ScoringModel, default_model
from scoring.state import URGENT_PRIORITIES, AccountState, day_of, fold
from tests.factories import T0, feature, login, payment, survey, ticket

NOW = T0.timestamp()


def state_of(*events: Event, **fields: Any) -> AccountState:
    state = AccountState(account_id="acme", **fields)
    for event in events:
        fold(state, event)
    return state


def model_with(*measures: dict[str, Any], sticky: list[str] | None = None) -> ScoringModel:
    base = default_model().model_dump(mode="json")
    base["components"] = {
        "only": {
            "weight": 1,
            "measures": [
                {"label": m["name"], "mapping": {"type": "linear", "low": 0, "high": 1}, **m}
                for m in measures
            ],
        }
    }
    base["segments"] = []
    base["sticky_features"] = sticky or []
    return parse_config(ScoringModel, base, "test")


def value(
    state: AccountState,
    metric: str,
    window: int | None = None,
    sticky: list[str] | None = None,
    **extra: Any,
) -> float | None:
    spec: dict[str, Any] = {"name": "m", "metric": metric, **extra}
    if window is not None:
        spec["window_days"] = window
    model = model_with(spec, sticky=sticky)
    measure: Measure = model.components["only"].measures[0]
    return metric_value(MetricContext(state, model, NOW), measure)


BAD_EVENT_COUNTS = {
    Metric.TICKETS_OPENED,
    Metric.OPEN_TICKETS,
    Metric.OPEN_URGENT_TICKETS,
    Metric.PAYMENT_FAILURES,
    Metric.DAYS_OVERDUE,
    Metric.REFUNDS,
}


def test_no_data_is_none_for_every_metric_but_counts_of_bad_events_which_are_zero() -> None:
    empty = AccountState(account_id="acme")
    for metric in Metric:
        windowed = metric not in {
            Metric.DAYS_SINCE_LAST_LOGIN,
            Metric.OPEN_TICKETS,
            Metric.OPEN_URGENT_TICKETS,
            Metric.DAYS_OVERDUE,
            Metric.TENURE_DAYS,
        }
        extra: dict[str, Any] = {"baseline_days": 28} if metric is Metric.USAGE_TREND else {}
        found = value(empty, metric.value, 7 if windowed else None, **extra)
        assert found == (0 if metric in BAD_EVENT_COUNTS else None), metric


def test_logins_and_feature_uses_count_within_the_window() -> None:
    state = state_of(
        login(days=0), login(days=-6.5), login(days=-7.5), feature(days=-1, n=4), survey(days=-60)
    )
    assert value(state, "logins", 7) == 2
    assert value(state, "logins", 30) == 3
    assert value(state, "feature_uses", 7) == 4


def test_a_new_accounts_usage_counts_are_scaled_up_to_the_window() -> None:
    # 10 days of data (day -9 to today): 3 logins and 2 active days in them.
    state = state_of(login(days=0), login(days=0), login(days=-9))
    assert value(state, "logins", 30) == pytest.approx(3 * 30 / 10)
    assert value(state, "active_days", 30) == pytest.approx(2 * 30 / 10)
    assert value(state, "logins", 7) == 2  # a week-long window is taken as it is
    # Its first day counts as a week (MIN_SCALED_DAYS), and a window is never over-filled.
    first_day = state_of(login(days=0))
    assert value(first_day, "logins", 30) == pytest.approx(30 / 7)
    assert value(first_day, "active_days", 30) == pytest.approx(30 / 7)
    busy = state_of(*[login(days=-d) for d in range(6)], login(days=-6))
    assert value(busy, "active_days", 30) == pytest.approx(30.0)
    # Distinct counts and bad events are not scaled.
    assert (
        value(state_of(login(days=0, user="a"), login(days=-9, user="b")), "active_users", 30) == 2
    )
    assert value(state_of(ticket(days=0), login(days=-9)), "tickets_opened", 30) == 1


def test_an_event_after_now_does_not_count_yet() -> None:
    state = state_of(login(days=0), login(days=1.5))
    assert value(state, "logins", 7) == 1


def test_active_days_and_users() -> None:
    state = state_of(
        login(days=0, user="a"),
        login(days=0, user="b"),
        feature(days=-3, user="c"),
        login(days=-20, user="d"),
        survey(days=-60),
    )
    assert value(state, "active_days", 7) == 2
    assert value(state, "active_days", 30) == 3
    assert value(state, "active_users", 7) == 3
    assert value(state, "active_users", 30) == 4


def test_seat_utilisation_needs_seats() -> None:
    events = [login(days=0, user=u) for u in ("a", "b", "c")]
    assert value(state_of(*events), "seat_utilisation", 30) is None
    seats = AccountAttributes(account_id="acme", updated_at=T0, seats=12)
    assert value(state_of(*events, attributes=seats), "seat_utilisation", 30) == 25.0


def test_days_since_last_login_is_fractional() -> None:
    state = state_of(login(days=-2.5), feature(days=0))
    assert value(state, "days_since_last_login") == pytest.approx(2.5)


def test_usage_trend_is_recent_rate_as_percent_of_baseline_rate() -> None:
    # 28 baseline days with 2 events each = 56, i.e. 14 per 7 days; 7 in the last 7 days = 50%.
    baseline = [login(days=-7 - d - 0.5) for d in range(28) for _ in range(2)]
    recent = [login(days=-d - 0.1) for d in range(7)]
    state = state_of(*baseline, *recent)
    assert value(state, "usage_trend", 7, baseline_days=28) == pytest.approx(50.0)
    assert value(state_of(*recent), "usage_trend", 7, baseline_days=28) is None


def test_feature_breadth_depth_and_sticky() -> None:
    state = state_of(
        feature(days=0, name="reports", user="a", n=5),
        feature(days=-1, name="api", user="b", n=3),
        feature(days=-40, name="sso", user="a"),
        login(days=0, user="c"),
    )
    assert value(state, "feature_breadth", 30) == 2
    assert value(state, "feature_breadth", 60) == 3
    assert value(state, "feature_depth", 30) == pytest.approx(8 / 3)
    assert value(state, "sticky_features", 30, sticky=["reports", "sso"]) == 50.0
    assert value(state, "sticky_features", 30) is None  # no sticky features in the model


def test_ticket_metrics() -> None:
    state = state_of(
        ticket(days=-10, ticket_id="t1", priority=TicketPriority.URGENT),
        ticket(days=-9, ticket_id="t1", action=TicketAction.RESOLVED),
        ticket(days=-5, ticket_id="t2", priority=TicketPriority.HIGH),
        ticket(days=-4, ticket_id="t3", priority=TicketPriority.LOW),
        ticket(days=-2, ticket_id="t3", action=TicketAction.RESOLVED),
    )
    assert value(state, "tickets_opened", 30) == 3
    assert value(state, "open_tickets") == 1
    assert value(state, "open_urgent_tickets") == 1
    assert value(state, "time_to_resolve_hours", 30) == pytest.approx((24 + 48) / 2)
    assert value(state, "time_to_resolve_hours", 3) == pytest.approx(48)


def test_billing_metrics() -> None:
    state = state_of(
        payment(days=-20, invoice="i1", status=PaymentStatus.FAILED),
        payment(days=-12, invoice="i1", status=PaymentStatus.OVERDUE),
        payment(days=-3, invoice="i2", status=PaymentStatus.REFUNDED),
        payment(days=-1, invoice="i3", status=PaymentStatus.PAID),
    )
    assert value(state, "payment_failures", 90) == 2
    assert value(state, "payment_failures", 14) == 1
    assert value(state, "days_overdue") == 20
    assert value(state, "refunds", 90) == 1
    paid_up = state_of(payment(days=-1, invoice="i3", status=PaymentStatus.PAID))
    assert value(paid_up, "days_overdue") == 0


def test_survey_metrics() -> None:
    state = state_of(
        survey(days=-40, score=2),
        survey(days=-10, score=6),
        survey(days=-1, score=9),
        survey(days=-3, kind=SurveyType.CSAT, score=4),
        survey(days=-2, kind=SurveyType.CES, score=7),
    )
    assert value(state, "nps_latest", 30) == 9
    assert value(state, "nps_average", 30) == 7.5
    assert value(state, "nps_average", 90) == pytest.approx(17 / 3)
    assert value(state, "csat_latest", 30) == 4
    assert value(state, "csat_average", 30) == 4
    assert value(state, "ces_average", 30) == 7
    assert value(state_of(survey(days=-40, score=2)), "nps_latest", 30) is None


def test_tenure_from_customer_since_or_first_event() -> None:
    assert value(state_of(login(days=-12.25)), "tenure_days") == pytest.approx(12.25)
    since = AccountAttributes(account_id="acme", updated_at=T0, customer_since=date(2025, 3, 2))
    assert value(state_of(login(), attributes=since), "tenure_days") == 365


def sums_from_scratch(
    state: AccountState, windows: tuple[int, ...], today: int
) -> tuple[dict[int, dict[str, float]], dict[int, int]]:
    sums: dict[int, dict[str, float]] = {}
    active: dict[int, int] = {}
    for window in windows:
        inside = [b for d, b in state.days.items() if 0 <= today - d < window]
        totals: dict[str, float] = {}
        for bucket in inside:
            for name, amount in bucket.model_dump().items():
                if amount:
                    totals[name] = totals.get(name, 0) + amount
        sums[window] = totals
        active[window] = sum(1 for b in inside if b.logins or b.feature_uses)
    return sums, active


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["login", "feature", "resolve", "evaluate"]),
            st.floats(min_value=-120, max_value=3, allow_nan=False),
        ),
        min_size=1,
        max_size=40,
    )
)
# A day leaving the horizon (an event two days ahead of the evaluation) while it was summed.
@example([("login", -88.5), ("evaluate", 0.0), ("login", 2.5), ("evaluate", 0.0)])
def test_window_sums_kept_between_evaluations_match_a_full_pass(
    steps: list[tuple[str, float]],
) -> None:
    """Late events, new days and days leaving the horizon, between evaluations at any time:
    the sums the state keeps for the days before today must never go stale."""
    model = default_model()
    state = AccountState(account_id="acme")
    for kind, days in steps:
        if kind == "login":
            fold(state, login(days=days))
        elif kind == "feature":
            fold(state, feature(days=days, n=3))
        elif kind == "resolve":
            fold(state, ticket(days=days, action=TicketAction.RESOLVED))
        else:
            today = day_of(NOW + days * 86_400)
            windows = Windows(state, model.windows, today)
            expected_sums, expected_active = sums_from_scratch(state, model.windows, today)
            assert {w: {k: v for k, v in s.items() if v} for w, s in windows.sums.items()} == (
                expected_sums
            )
            assert windows.active_days == expected_active


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["login", "feature", "open", "resolve", "count"]),
            st.integers(min_value=0, max_value=7),
            st.floats(min_value=-40, max_value=0, allow_nan=False),
        ),
        min_size=1,
        max_size=50,
    )
)
def test_counts_kept_by_the_folds_match_the_maps(steps: list[tuple[str, int, float]]) -> None:
    """Users and features per last day, and urgent open tickets, whether first counted
    before or after the events, with keys evicted at the cap, late events among them."""
    state = AccountState(account_id="acme")
    priorities = list(TicketPriority)
    with (
        patch.object(state_module, "MAX_TRACKED_USERS", 5),
        patch.object(state_module, "MAX_TRACKED_FEATURES", 3),
        patch.object(state_module, "MAX_OPEN_TICKETS", 4),
    ):
        for kind, n, days in steps:
            if kind == "login":
                fold(state, login(days=days, user=f"u{n}"))
            elif kind == "feature":
                fold(state, feature(days=days, user=f"u{n}", name=f"f{n % 5}"))
            elif kind in ("open", "resolve"):
                action = TicketAction.OPENED if kind == "open" else TicketAction.RESOLVED
                priority = priorities[n % len(priorities)]
                fold(state, ticket(days=days, ticket_id=f"t{n}", action=action, priority=priority))
            else:
                assert state.user_days() == Counter(state.active_users.values())
                assert state.feature_days() == Counter(state.features.values())
                urgent = [t for t in state.open_tickets.values() if t.priority in URGENT_PRIORITIES]
                assert state.urgent_open_tickets() == len(urgent)
    assert state.user_days() == Counter(state.active_users.values())
    assert state.feature_days() == Counter(state.features.values())
