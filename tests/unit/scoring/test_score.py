"""Evaluation: missing-data rules, aggregation into components, weights, bands, segments,
staleness and overrides, against numbers worked out by hand."""

from __future__ import annotations

from typing import Any

import pytest

from scoring.config import parse_config
from scoring.events import AccountAttributes, Event, PaymentStatus
from scoring.score import RawValues, evaluate, score_value
from scoring.scoring_model import OVERRIDE_COMPONENT, ScoringModel, default_model
from scoring.state import SECONDS_PER_DAY, AccountState, ActiveOverride, fold
from tests.factories import T0, feature, login, payment, ticket

NOW = T0.timestamp()
DAY = SECONDS_PER_DAY


def state_of(*events: Event, **fields: Any) -> AccountState:
    state = AccountState(account_id="acme", **fields)
    for event in events:
        fold(state, event)
    return state


def linear(name: str, metric: str, high: float, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "label": name.replace("_", " "),
        "metric": metric,
        "mapping": {"type": "linear", "low": 0, "high": high, **extra.pop("mapping", {})},
        **extra,
    }


def small_model(**changes: Any) -> ScoringModel:
    """Two components: usage (logins in 7 days, 0..10) and support (open tickets, 0..4, lower
    is better), weights 3 and 1; bands good >= 60, bad; grades A >= 80, B >= 50, F."""
    data: dict[str, Any] = {
        "name": "small",
        "stale_after_days": 10,
        "components": {
            "usage": {"weight": 3, "measures": [linear("logins_7d", "logins", 10, window_days=7)]},
            "support": {
                "weight": 1,
                "measures": [
                    linear("open_tickets", "open_tickets", 4, mapping={"higher_is_better": False})
                ],
            },
        },
        "override": {"weight": 4},
        "bands": [{"label": "good", "min": 60}, {"label": "bad", "min": 0}],
        "grades": [{"label": "A", "min": 80}, {"label": "B", "min": 50}, {"label": "F", "min": 0}],
    }
    data.update(changes)
    return parse_config(ScoringModel, data, "small")


def logins(n: int, days: float = 0) -> list[Event]:
    return [login(days=days) for _ in range(n)]


def test_no_data_gives_no_score() -> None:
    assert evaluate(AccountState(account_id="acme"), small_model(), NOW) is None


def test_attributes_alone_give_no_score() -> None:
    since = AccountAttributes(account_id="acme", updated_at=T0, customer_since=T0.date())
    state = AccountState(account_id="acme", attributes=since)
    assert evaluate(state, default_model(), NOW) is None


def test_weighted_mean_of_components_with_contributions() -> None:
    # usage: 6 logins of 10 -> 60; support: 1 open ticket of 4, lower better -> 75.
    score = evaluate(state_of(*logins(6), ticket()), small_model(), NOW)
    assert score is not None
    assert score.components["usage"].score == 60.0
    assert score.components["support"].score == 75.0
    assert score.components["usage"].weight == 0.75
    assert score.components["usage"].contribution == 45.0
    assert score.components["support"].contribution == 18.8
    assert score.value == 63.8  # (3 * 60 + 1 * 75) / 4
    assert (score.band, score.grade) == ("good", "B")


def sparse_model() -> ScoringModel:
    """``small_model`` with support measured by mean CSAT: no answer, no data (an empty
    window of open tickets is zero, not missing)."""
    data = small_model().model_dump(mode="json")
    data["components"]["support"]["measures"] = [linear("csat", "csat_average", 5, window_days=30)]
    return parse_config(ScoringModel, data, "sparse")


def test_component_without_data_is_skipped_and_its_weight_shared() -> None:
    score = evaluate(
        state_of(*logins(6)),
        sparse_model(),
        NOW,
    )
    assert score is not None
    assert set(score.components) == {"usage"}
    assert score.components["usage"].weight == 1.0
    assert score.value == 60.0


def test_neutral_rule_counts_a_missing_measure_as_neutral() -> None:
    data = sparse_model().model_dump(mode="json")
    data["components"]["support"]["measures"][0].update(missing="neutral", neutral_score=40)
    neutral = parse_config(ScoringModel, data, "neutral")
    score = evaluate(state_of(*logins(6)), neutral, NOW)
    assert score is not None
    assert score.components["support"].score == 40.0
    assert score.measures["csat"].value is None
    assert score.value == 55.0  # (3 * 60 + 1 * 40) / 4
    assert score.band == "bad"


def test_measure_weights_and_min_aggregation_inside_a_component() -> None:
    data = small_model().model_dump(mode="json")
    data["components"]["usage"]["measures"].append(
        linear("active_days_7d", "active_days", 7, window_days=7, weight=3)
    )
    model = parse_config(ScoringModel, data, "m")
    state = state_of(*logins(10))  # logins 100, active days 1 of 7 -> 14.3
    score = evaluate(state, model, NOW)
    assert score is not None
    assert score.components["usage"].score == pytest.approx((100 + 3 * 100 / 7) / 4, abs=0.05)
    data["components"]["usage"]["aggregation"] = "min"
    lowest = evaluate(state, parse_config(ScoringModel, data, "m"), NOW)
    assert lowest is not None
    assert lowest.components["usage"].score == 14.3


def test_segment_changes_weights_and_bands() -> None:
    model = small_model(
        segments=[
            {
                "name": "enterprise",
                "when": {"plan": ["enterprise"]},
                "weights": {"support": 3},
                "bands": [{"label": "good", "min": 70}, {"label": "bad", "min": 0}],
            }
        ]
    )
    big = AccountAttributes(account_id="acme", updated_at=T0, plan="enterprise")
    score = evaluate(state_of(*logins(6), ticket(), attributes=big), model, NOW)
    assert score is not None
    assert score.segment == "enterprise"
    assert score.value == 67.5  # (3 * 60 + 3 * 75) / 6
    assert score.band == "bad"  # good needs 70 in this segment


def test_time_alone_lowers_the_score_of_a_silent_account() -> None:
    state = state_of(*logins(6))
    today = evaluate(state, small_model(), NOW)
    next_week = evaluate(state, small_model(), NOW + 7 * DAY)
    assert today is not None
    assert next_week is not None
    assert today.value == 70.0  # (3 * 60 + 1 * 100: no open ticket) / 4
    assert next_week.value == 25.0
    assert next_week.band == "bad"


def test_stale_account_is_flagged_and_held_at_its_value_when_it_went_stale() -> None:
    state = state_of(*logins(6), login(days=-5))
    fresh = evaluate(state, small_model(), NOW + 9 * DAY)
    stale = evaluate(state, small_model(), NOW + 40 * DAY)
    at_threshold = evaluate(state, small_model(), NOW + 10 * DAY)
    assert fresh is not None
    assert stale is not None
    assert at_threshold is not None
    assert not fresh.stale
    assert not at_threshold.stale
    assert stale.stale
    assert stale.value == at_threshold.value


def test_active_override_enters_as_its_own_component_until_it_expires() -> None:
    override = ActiveOverride(
        override_id="o1",
        author="ann",
        reason="exec sponsor left",
        score=10.0,
        set_at=NOW - DAY,
        expires_at=NOW + 2 * DAY,
    )
    state = state_of(*logins(6), override=override)
    score = evaluate(state, small_model(), NOW)
    assert score is not None
    assert score.components[OVERRIDE_COMPONENT].score == 10.0
    assert score.value == 40.0  # (3 * 60 + 1 * 100 + 4 * 10) / 8
    assert score.override == override
    expired = evaluate(state, small_model(), NOW + 3 * DAY)
    assert expired is not None
    assert OVERRIDE_COMPONENT not in expired.components
    assert expired.override is None


def test_override_is_ignored_by_a_model_without_an_override_weight() -> None:
    override = ActiveOverride(
        override_id="o1", author="ann", reason="r", score=0.0, set_at=NOW, expires_at=NOW + DAY
    )
    score = evaluate(state_of(*logins(6), override=override), small_model(override=None), NOW)
    assert score is not None
    assert score.value == 70.0


def test_default_model_on_a_healthy_and_a_troubled_account() -> None:
    busy = [
        feature(days=-d, name=f"f{(d + i) % 6}", user=f"u{(d + i) % 10}")
        for d in range(35)
        for i in range(3)
    ] + [login(days=-d - 0.1, user=f"u{d % 10}") for d in range(35)]
    healthy = evaluate(state_of(*busy, payment(days=-5)), default_model(), NOW)
    troubled = evaluate(
        state_of(*busy, payment(days=-20, status=PaymentStatus.FAILED)), default_model(), NOW
    )
    assert healthy is not None
    assert troubled is not None
    assert healthy.band == "healthy"
    assert healthy.components["billing"].score == 100.0
    # billing is a weighted mean: one failure in 30 days (30, x27) and in 90 days (55, x8),
    # 20 days overdue (35, x3), no refund (100, x1) -> 1455 / 39.
    assert troubled.components["billing"].score == 37.3
    assert troubled.value < healthy.value - 10


@pytest.mark.parametrize("days_later", [0.0, 40.0])  # fresh, and stale (held)
def test_the_value_alone_is_the_full_evaluations_and_shares_its_raw_measures(
    days_later: float,
) -> None:
    model = default_model()
    shadow = model.model_copy(update={"name": "candidate"})
    state = AccountState(account_id="acme")
    events: list[Event] = [login(days=-d, user=f"u{d % 3}") for d in range(20)]
    events += [payment(days=-2, status=PaymentStatus.FAILED), ticket(days=-1)]
    for event in events:
        fold(state, event)
    state.override = ActiveOverride(
        override_id="o1", author="ann", reason="r", score=30.0, set_at=NOW, expires_at=NOW + 1e6
    )
    at = NOW + days_later * SECONDS_PER_DAY
    raws: RawValues = {}
    full = evaluate(state, model, at, None, raws)
    assert full is not None
    assert raws  # what the live model measured, for the shadow
    assert score_value(state, shadow, at, None, raws) == full.value
    assert score_value(state, shadow, at, None, {}) == full.value
