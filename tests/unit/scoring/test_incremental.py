"""The evaluation reuses the measures nothing moved: after any sequence of inputs and clock
moves it must score exactly as a full evaluation of the same state does."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring import score as score_module
from scoring.config import parse_config
from scoring.events import (
    SURVEY_SCALES,
    AccountAttributes,
    Event,
    PaymentStatus,
    SurveyType,
    TicketAction,
    TicketPriority,
)
from scoring.measures import METRIC_MOVES, MetricContext, metric_value
from scoring.peers import LocalPeers, PeerDistribution
from scoring.score import Score, evaluate
from scoring.scoring_model import (
    WINDOWED_METRICS,
    Measure,
    Metric,
    ScoringModel,
    default_model,
)
from scoring.state import SECONDS_PER_DAY, AccountState, apply_attributes, day_of, fold
from tests.factories import T0, at, feature, login, payment, survey, ticket


def every_metric_model() -> ScoringModel:
    """One component per metric of the catalogue, so that every metric is reused."""
    base = default_model().model_dump(mode="json")
    components: dict[str, Any] = {}
    for n, metric in enumerate(Metric):
        spec: dict[str, Any] = {
            "name": f"m_{metric.value}",
            "label": metric.value,
            "metric": metric.value,
            "mapping": {"type": "linear", "low": 0, "high": 3 + n},
            "missing": "neutral" if n % 2 else "skip",
        }
        if metric in WINDOWED_METRICS:
            spec["window_days"] = 7 if n % 3 else 30
        if metric is Metric.USAGE_TREND:
            spec["baseline_days"] = 14
        components[f"c_{metric.value}"] = {"weight": 1 + n % 4, "measures": [spec]}
    base["components"] = components
    base["segments"] = []
    base["sticky_features"] = ["f1", "f2"]
    return parse_config(ScoringModel, base, "every-metric")


DEFAULT = default_model()
EVERY = every_metric_model()


def _peers(model: ScoringModel) -> PeerDistribution:
    """Peers for the default model's percentile measures, from a spread of accounts."""
    peers = LocalPeers(min_accounts=5)
    today = day_of(T0.timestamp())
    for i in range(40):
        state = AccountState(account_id=f"peer-{i}")
        for d in range(1 + i % 20):
            fold(state, login(f"peer-{i}", days=-d, user=f"u{d % 4}"))
        score = evaluate(state, model, T0.timestamp())
        assert score is not None
        peers.book.contribute(today, score.peer_group, score.peer_values)
    return peers.distribution(today)


PEERS = _peers(DEFAULT)

event_steps = st.tuples(
    st.just("event"),
    st.integers(0, 4),  # kind
    st.floats(-3.0, 0.0),  # days before the clock (late events land in past buckets)
    st.integers(0, 5),  # user / feature / ticket / invoice
    st.integers(0, 10),  # a choice among actions, statuses, scores
)
attribute_steps = st.tuples(
    st.just("attributes"), st.integers(0, 3), st.integers(0, 400), st.integers(0, 2)
)
clock_steps = st.tuples(st.just("clock"), st.floats(0.0, 24 * 12))
steps = st.lists(st.one_of(event_steps, event_steps, attribute_steps, clock_steps), max_size=40)


def _event(kind: int, now: float, when: float, which: int, choice: int) -> Event:
    days = (now - T0.timestamp()) / SECONDS_PER_DAY + when
    match kind:
        case 0:
            return login(days=days, user=f"u{which}")
        case 1:
            return feature(days=days, name=f"f{which}", user=f"u{which % 3}", n=1 + choice % 3)
        case 2:
            action = TicketAction.RESOLVED if choice % 2 else TicketAction.OPENED
            priority = list(TicketPriority)[choice % len(TicketPriority)]
            return ticket(days=days, ticket_id=f"t{which}", action=action, priority=priority)
        case 3:
            status = list(PaymentStatus)[choice % len(PaymentStatus)]
            return payment(days=days, invoice=f"i{which}", status=status)
    kind_ = list(SurveyType)[which % len(SurveyType)]
    low, high = SURVEY_SCALES[kind_]
    return survey(days=days, kind=kind_, score=low + choice % (high - low + 1))


def _full(state: AccountState, model: ScoringModel, now: float, peers: Any) -> Score | None:
    """A full evaluation: the same state, loaded afresh, keeps nothing of earlier ones."""
    fresh = AccountState.model_validate_json(state.model_dump_json())
    return evaluate(fresh, model, now, peers)


def _same(incremental: Score | None, full: Score | None) -> None:
    assert (incremental is None) == (full is None)
    if incremental is None or full is None:
        return
    assert incremental.value == full.value
    assert incremental.component_scores == full.component_scores
    assert incremental.measured == full.measured
    assert incremental.peer_values == full.peer_values
    assert (incremental.band, incremental.grade, incremental.stale) == (
        full.band,
        full.grade,
        full.stale,
    )


def _run(model: ScoringModel, peers: PeerDistribution | None, script: list[Any]) -> None:
    state = AccountState(account_id="acme")
    now = T0.timestamp()
    for step in script:
        match step:
            case ("event", kind, when, which, choice):
                fold(state, _event(kind, now, when, which, choice))
            case ("attributes", seats, since, plan):
                updated = at((now - T0.timestamp()) / SECONDS_PER_DAY)
                updated += timedelta(microseconds=len(state.recent_event_ids) + seats + 1)
                attributes = AccountAttributes(
                    account_id="acme",
                    updated_at=updated,
                    seats=seats * 5 or None,
                    customer_since=(T0 - timedelta(days=since)).date(),
                    plan=["enterprise", "pro", None][plan],
                )
                apply_attributes(state, attributes)
            case ("clock", hours):
                now += hours * 3600
        _same(evaluate(state, model, now, peers), _full(state, model, now, peers))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_reusing_measures_scores_as_a_full_evaluation_with_every_metric(script: list[Any]) -> None:
    _run(EVERY, None, script)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_reusing_measures_scores_as_a_full_evaluation_ranked_among_peers(
    script: list[Any],
) -> None:
    _run(DEFAULT, PEERS, script)


def test_an_event_takes_again_only_the_measures_its_kind_moves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = AccountState(account_id="acme")
    now = T0.timestamp()
    for d in range(5):
        fold(state, login(days=-d))
        fold(state, ticket(days=-d, ticket_id=f"t{d}"))
    assert evaluate(state, EVERY, now) is not None
    fold(state, login(days=-0.1, user="u9"))
    taken: list[Metric] = []
    real = metric_value

    def spy(ctx: MetricContext, measure: Measure) -> float | None:
        taken.append(measure.metric)
        return real(ctx, measure)

    monkeypatch.setattr(score_module, "metric_value", spy)
    evaluate(state, EVERY, now + 60)
    assert Metric.ACTIVE_DAYS in taken  # a login moves usage
    assert Metric.DAYS_SINCE_LAST_LOGIN in taken  # moves with the clock: always taken
    assert not set(taken) & {Metric.OPEN_TICKETS, Metric.TICKETS_OPENED, Metric.REFUNDS}
    taken.clear()
    evaluate(state, EVERY, now + SECONDS_PER_DAY)  # the next day: every window slid
    assert Metric.OPEN_TICKETS in taken
    assert METRIC_MOVES[Metric.OPEN_TICKETS].inputs == {"ticket"}
