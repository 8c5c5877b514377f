from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from scoring.events import Event, PaymentStatus, SurveyType, TicketPriority
from scoring.model import DEFAULT_MODEL, Band, BandThresholds, Component, ScoringModel
from scoring.score import evaluate, rescore
from scoring.state import AccountState, fold
from tests.factories import T0, feature, login, payment, survey, ticket

NOW = T0.timestamp()


def state_of(*events: Event) -> AccountState:
    state = AccountState(account_id="acme")
    for event in events:
        fold(state, event)
    return state


def steady_usage(days: int = 35, per_day: int = 3) -> list[Event]:
    """A busy account: several users and features every day up to today."""
    return [
        feature(days=-d, name=f"f{(d + i) % 6}", user=f"u{(d + i) % 10}")
        for d in range(days)
        for i in range(per_day)
    ]


def test_no_data_gives_no_score() -> None:
    assert evaluate(AccountState(account_id="acme"), DEFAULT_MODEL, NOW) is None


def test_components_without_data_are_left_out_and_weights_shared() -> None:
    score = evaluate(state_of(*steady_usage()), DEFAULT_MODEL, NOW)
    assert score is not None
    assert set(score.components) == {Component.USAGE, Component.ADOPTION}
    weights = DEFAULT_MODEL.weights
    expected = (
        weights[Component.USAGE] * score.components[Component.USAGE]
        + weights[Component.ADOPTION] * score.components[Component.ADOPTION]
    ) / (weights[Component.USAGE] + weights[Component.ADOPTION])
    assert score.value == pytest.approx(expected, abs=0.05)


def test_a_busy_account_with_paid_invoices_and_happy_surveys_is_healthy() -> None:
    events = [*steady_usage(), payment(days=-5), survey(days=-3, score=9)]
    score = evaluate(state_of(*events), DEFAULT_MODEL, NOW)
    assert score is not None
    assert score.band is Band.HEALTHY
    assert score.value >= 90


def test_declining_usage_lowers_the_usage_component() -> None:
    before = [e for e in steady_usage() if e.occurred_at.timestamp() < NOW - 7 * 86_400]
    busy = evaluate(state_of(*steady_usage()), DEFAULT_MODEL, NOW)
    quiet = evaluate(state_of(*before), DEFAULT_MODEL, NOW)
    assert busy is not None
    assert quiet is not None
    assert quiet.components[Component.USAGE] < busy.components[Component.USAGE] - 30


def test_time_alone_moves_the_score_of_a_silent_account() -> None:
    state = state_of(*steady_usage())
    today = evaluate(state, DEFAULT_MODEL, NOW)
    month_later = evaluate(state, DEFAULT_MODEL, NOW + 30 * 86_400)
    assert today is not None
    assert month_later is not None
    assert month_later.value < today.value - 40


def test_failed_payment_and_unpaid_invoice_hit_billing() -> None:
    paid = evaluate(state_of(*steady_usage(), payment(invoice="i1")), DEFAULT_MODEL, NOW)
    failed = evaluate(
        state_of(*steady_usage(), payment(invoice="i1", status=PaymentStatus.FAILED)),
        DEFAULT_MODEL,
        NOW,
    )
    assert paid is not None
    assert failed is not None
    assert paid.components[Component.BILLING] == 100.0
    assert failed.components[Component.BILLING] == 100.0 - 35.0 - 10.0
    assert failed.value < paid.value


def test_open_urgent_tickets_weigh_more_than_resolved_ones() -> None:
    urgent = state_of(ticket(ticket_id="t1", priority=TicketPriority.URGENT, days=-40))
    low = state_of(ticket(ticket_id="t1", priority=TicketPriority.LOW, days=-40))
    urgent_score = evaluate(urgent, DEFAULT_MODEL, NOW)
    low_score = evaluate(low, DEFAULT_MODEL, NOW)
    assert urgent_score is not None
    assert low_score is not None
    assert urgent_score.components[Component.SUPPORT] == 70.0
    assert low_score.components[Component.SUPPORT] == 95.0


def test_sentiment_is_the_mean_normalized_answer_within_its_window() -> None:
    state = state_of(
        survey(kind=SurveyType.NPS, score=10, days=-1),
        survey(kind=SurveyType.CSAT, score=1, days=-2),
        survey(kind=SurveyType.NPS, score=0, days=-120),
    )
    score = evaluate(state, DEFAULT_MODEL, NOW)
    assert score is not None
    assert score.components == {Component.SENTIMENT: 50.0}


def test_bands_follow_thresholds() -> None:
    bands = BandThresholds(healthy=70, at_risk=40)
    assert bands.band_of(70) is Band.HEALTHY
    assert bands.band_of(69.9) is Band.AT_RISK
    assert bands.band_of(40) is Band.AT_RISK
    assert bands.band_of(39.9) is Band.CRITICAL


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValidationError, match="at_risk"):
        BandThresholds(healthy=30, at_risk=50)


def test_model_version_changes_with_content() -> None:
    tuned = ScoringModel(bands=BandThresholds(healthy=75, at_risk=40))
    assert DEFAULT_MODEL.version.startswith("default@")
    assert tuned.version != DEFAULT_MODEL.version
    assert ScoringModel().version == DEFAULT_MODEL.version


def test_rescore_reports_only_changes_and_records_the_last_score() -> None:
    computed_at = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)
    state = state_of(login())
    first = rescore(state, DEFAULT_MODEL, NOW, "e1", computed_at)
    assert first is not None
    assert first.previous_score is None
    assert first.model_version == DEFAULT_MODEL.version
    assert first.as_of == T0
    assert (state.last_score, state.last_band) == (first.score, first.band)
    assert rescore(state, DEFAULT_MODEL, NOW, "e2", computed_at) is None
    fold(state, payment(status=PaymentStatus.FAILED))
    second = rescore(state, DEFAULT_MODEL, NOW, "e3", computed_at)
    assert second is not None
    assert second.previous_score == first.score
    assert second.event_id == "e3"


def test_state_containers_do_not_grow_with_history() -> None:
    """The evaluated containers are bounded: a year of events leaves the same work as a month."""
    month = state_of(*steady_usage(days=30))
    year = state_of(*steady_usage(days=365))
    assert len(year.days) <= len(month.days) * 3
    assert len(year.features) == len(month.features)
