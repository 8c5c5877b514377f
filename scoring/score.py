"""Evaluate an account's state into a 0-100 health score, and the ScoreUpdate wire model.

Each component is a 0-100 number computed from the rolling windows of ``AccountState``. A
component with no data is left out and its weight shared among the others: an account that
never answered a survey is not scored as if it hated the product.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict

from scoring.events import EventKind
from scoring.model import Band, Component, ScoringModel
from scoring.state import AccountState, day_of


class Score(BaseModel):
    """The result of one evaluation."""

    model_config = ConfigDict(frozen=True)

    value: float
    band: Band
    components: dict[Component, float]
    """Only the components that had data; their weights were renormalised to sum to 1."""


class ScoreUpdate(BaseModel):
    """Published on the scores topic, keyed by account, whenever an account's score changes."""

    model_config = ConfigDict(frozen=True)

    account_id: str
    score: float
    band: Band
    previous_score: float | None
    previous_band: Band | None
    components: dict[Component, float]
    model_version: str
    as_of: AwareDatetime
    """Event time the score is computed for (the account's newest event)."""
    computed_at: AwareDatetime
    """Wall-clock time the worker computed it."""
    event_id: str
    """The event that caused this update."""


def _clamp(value: float) -> float:
    return 0.0 if value < 0.0 else 100.0 if value > 100.0 else value


class _Windows:
    """Sums over the day buckets for the windows the model asks for, in one pass."""

    __slots__ = (
        "active_days",
        "baseline_usage",
        "failures",
        "recent_usage",
        "survey_count",
        "survey_sum",
        "tickets_opened",
    )

    def __init__(self, state: AccountState, model: ScoringModel, today: int) -> None:
        usage = model.usage
        self.active_days = 0
        self.recent_usage = 0
        self.baseline_usage = 0
        self.tickets_opened = 0
        self.failures = 0
        self.survey_sum = 0.0
        self.survey_count = 0
        recent_start = today - usage.trend_recent_days
        baseline_start = recent_start - usage.trend_baseline_days
        for day, bucket in state.days.items():
            age = today - day
            if age < 0:
                continue  # an event stamped after the evaluation time does not count yet
            events = bucket.usage_events
            if age < usage.window_days and events:
                self.active_days += 1
            if day > recent_start:
                self.recent_usage += events
            elif day > baseline_start:
                self.baseline_usage += events
            if age < model.support.window_days:
                self.tickets_opened += bucket.tickets_opened
            if age < model.billing.window_days:
                self.failures += bucket.payment_failures
            if age < model.sentiment.window_days:
                self.survey_sum += bucket.survey_sum
                self.survey_count += bucket.survey_count


def _usage(state: AccountState, model: ScoringModel, w: _Windows) -> float | None:
    if EventKind.LOGIN not in state.last_seen and EventKind.FEATURE_USE not in state.last_seen:
        return None
    usage = model.usage
    activity = _clamp(100.0 * w.active_days / usage.target_active_days)
    if w.baseline_usage == 0:
        return activity
    expected_recent = w.baseline_usage * usage.trend_recent_days / usage.trend_baseline_days
    trend = _clamp(100.0 * w.recent_usage / expected_recent)
    return usage.activity_weight * activity + (1.0 - usage.activity_weight) * trend


def _adoption(state: AccountState, model: ScoringModel, today: int) -> float | None:
    if not state.features and not state.active_users:
        return None
    adoption = model.adoption
    since = today - adoption.window_days
    features = sum(1 for day in state.features.values() if since < day <= today)
    users = sum(1 for day in state.active_users.values() if since < day <= today)
    feature_score = _clamp(100.0 * features / adoption.target_features)
    user_score = _clamp(100.0 * math.log1p(users) / math.log1p(adoption.target_users))
    return (feature_score + user_score) / 2.0


def _support(state: AccountState, model: ScoringModel, w: _Windows) -> float | None:
    if EventKind.TICKET not in state.last_seen:
        return None
    support = model.support
    penalty = sum(support.penalty_per_open.get(p.value, 0.0) for p in state.open_tickets.values())
    penalty += support.penalty_per_opened_in_window * w.tickets_opened
    return _clamp(100.0 - penalty)


def _billing(state: AccountState, model: ScoringModel, w: _Windows) -> float | None:
    if EventKind.PAYMENT not in state.last_seen:
        return None
    billing = model.billing
    penalty = billing.penalty_per_unpaid_invoice * len(state.unpaid_invoices)
    penalty += billing.penalty_per_failure_in_window * w.failures
    return _clamp(100.0 - penalty)


def _sentiment(w: _Windows) -> float | None:
    if w.survey_count == 0:
        return None
    return w.survey_sum / w.survey_count


def evaluate(state: AccountState, model: ScoringModel, now: float) -> Score | None:
    """Score ``state`` as of ``now`` (POSIX seconds); None when no component has data."""
    today = day_of(now)
    windows = _Windows(state, model, today)
    raw: dict[Component, float | None] = {
        Component.USAGE: _usage(state, model, windows),
        Component.ADOPTION: _adoption(state, model, today),
        Component.SUPPORT: _support(state, model, windows),
        Component.BILLING: _billing(state, model, windows),
        Component.SENTIMENT: _sentiment(windows),
    }
    components = {
        name: round(value, 1)
        for name, value in raw.items()
        if value is not None and name in model.weights
    }
    total_weight = sum(model.weights[name] for name in components)
    if total_weight == 0:
        return None
    value = sum(model.weights[name] * score for name, score in components.items()) / total_weight
    value = round(_clamp(value), 1)
    return Score(value=value, band=model.bands.band_of(value), components=components)


def rescore(
    state: AccountState, model: ScoringModel, now: float, event_id: str, computed_at: datetime
) -> ScoreUpdate | None:
    """Evaluate ``state`` at ``now``; if the score or band moved, record it and return the update.

    ``computed_at`` is only stamped on the update: it never changes the score.
    """
    score = evaluate(state, model, now)
    if score is None or (score.value == state.last_score and score.band == state.last_band):
        return None
    update = ScoreUpdate(
        account_id=state.account_id,
        score=score.value,
        band=score.band,
        previous_score=state.last_score,
        previous_band=state.last_band,
        components=score.components,
        model_version=model.version,
        as_of=datetime.fromtimestamp(now, UTC),
        computed_at=computed_at,
        event_id=event_id,
    )
    state.last_score = score.value
    state.last_band = score.band
    return update
