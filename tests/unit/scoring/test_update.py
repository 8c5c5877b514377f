"""Rescorer: updates only on change, explained drivers, trend from the daily history."""

from __future__ import annotations

from datetime import UTC, datetime

from scoring.events import CsmOverride, Event, OverrideAction
from scoring.scoring_model import OVERRIDE_COMPONENT
from scoring.state import SECONDS_PER_DAY, AccountState, apply_override, day_of, fold
from scoring.update import Rescorer, Trigger
from tests.factories import T0, at, login, rescore, ticket
from tests.unit.scoring.test_score import small_model

NOW = T0.timestamp()
DAY = SECONDS_PER_DAY
COMPUTED = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)


def applied(state: AccountState, *events: Event) -> AccountState:
    for event in events:
        fold(state, event)
    return state


def test_first_update_is_explained_as_first_and_records_the_score() -> None:
    rescorer = Rescorer(small_model())
    state = applied(AccountState(account_id="acme"), *[login() for _ in range(6)])
    update = rescore(rescorer, state, NOW, Trigger.EVENT, "e1", COMPUTED)
    assert update is not None
    assert (update.score, update.band, update.grade) == (70.0, "good", "B")
    assert update.previous_score is None
    assert update.summary == ("first score; new account: 1 of 14 days of data")
    assert update.onboarding is not None
    assert update.onboarding.days_of_data == 1
    assert update.model_version == small_model().version
    assert update.as_of == T0
    assert update.trigger is Trigger.EVENT
    assert state.published is not None
    assert state.published.measures == {"logins_7d": 6.0, "open_tickets": 0.0}
    assert state.history == {day_of(NOW): 70.0}


def test_no_update_when_nothing_moved() -> None:
    rescorer = Rescorer(small_model())
    state = applied(AccountState(account_id="acme"), *[login() for _ in range(12)])
    assert rescore(rescorer, state, NOW, Trigger.EVENT, "e1", COMPUTED) is not None
    fold(state, login())  # 13 logins: still 100
    assert rescore(rescorer, state, NOW, Trigger.EVENT, "e2", COMPUTED) is None


def test_drivers_name_the_component_and_measures_in_words_and_numbers() -> None:
    rescorer = Rescorer(small_model())
    state = applied(AccountState(account_id="acme"), *[login() for _ in range(8)])
    rescore(rescorer, state, NOW, Trigger.EVENT, "e1", COMPUTED)
    fold(state, ticket(ticket_id="t1"))
    fold(state, ticket(ticket_id="t2"))
    update = rescore(rescorer, state, NOW, Trigger.EVENT, "e2", COMPUTED)
    assert update is not None
    # usage 80 (weight 3) + support 100 -> 50 (weight 1): 85 -> 72.5, all of it support's.
    assert update.score == 72.5
    assert update.previous_score == 85.0
    assert [d.component for d in update.drivers] == ["support"]
    assert update.drivers[0].delta == -12.5
    assert update.summary == "support -12: open tickets 0 -> 2"


def test_time_passing_is_explained_by_the_measures_that_aged() -> None:
    rescorer = Rescorer(small_model())
    state = applied(AccountState(account_id="acme"), *[login() for _ in range(6)])
    rescore(rescorer, state, NOW, Trigger.EVENT, "e1", COMPUTED)
    update = rescore(rescorer, state, NOW + 8 * DAY, Trigger.TIMER, None, COMPUTED)
    assert update is not None
    assert (update.score, update.band, update.previous_band) == (25.0, "bad", "good")
    assert update.summary == "usage -45: logins 7d 6 -> 0"
    assert update.trigger is Trigger.TIMER
    assert update.event_id is None


def test_staleness_is_announced_once() -> None:
    rescorer = Rescorer(small_model())  # stale after 10 days
    state = applied(AccountState(account_id="acme"), *[login() for _ in range(6)])
    rescore(rescorer, state, NOW, Trigger.EVENT, "e1", COMPUTED)
    rescore(rescorer, state, NOW + 9 * DAY, Trigger.TIMER, None, COMPUTED)
    update = rescore(rescorer, state, NOW + 11 * DAY, Trigger.TIMER, None, COMPUTED)
    assert update is not None
    assert update.stale
    assert update.summary.startswith("stale: no data for over 10 days")
    # A new day has its update (one per account and day), which does not tell it again.
    daily = rescore(rescorer, state, NOW + 30 * DAY, Trigger.TIMER, None, COMPUTED)
    assert daily is not None
    assert daily.score == update.score
    assert "stale" not in daily.summary
    assert rescore(rescorer, state, NOW + 30 * DAY + 60, Trigger.TIMER, None, COMPUTED) is None


def test_trend_compares_with_closing_scores_7_and_30_days_back() -> None:
    rescorer = Rescorer(small_model())
    state = AccountState(account_id="acme")
    state.history = {day_of(NOW) - 30: 90.0, day_of(NOW) - 8: 70.0}
    applied(state, *[login() for _ in range(6)])
    update = rescore(rescorer, state, NOW, Trigger.EVENT, "e1", COMPUTED)
    assert update is not None
    assert update.change_7d == 0.0  # against day -8, the latest closing at or before -7
    assert update.change_30d == -20.0


def override_by(author: str, score: float, expires_in_days: float) -> CsmOverride:
    return CsmOverride(
        event_id="o1",
        account_id="acme",
        occurred_at=T0,
        action=OverrideAction.SET,
        author=author,
        reason="champion left",
        score=score,
        expires_at=at(days=expires_in_days),
    )


def test_override_set_and_expiry_are_drivers() -> None:
    rescorer = Rescorer(small_model())
    state = applied(AccountState(account_id="acme"), *[login() for _ in range(6)])
    rescore(rescorer, state, NOW, Trigger.EVENT, "e1", COMPUTED)
    apply_override(state, override_by("ann", 10, expires_in_days=2), NOW)
    update = rescore(rescorer, state, NOW, Trigger.OVERRIDE, "o1", COMPUTED)
    assert update is not None
    assert update.override is not None
    assert update.override.author == "ann"
    assert OVERRIDE_COMPONENT in update.components
    assert "CSM override 10 by ann (champion left)" in update.summary
    ended = rescore(rescorer, state, NOW + 3 * DAY, Trigger.TIMER, None, COMPUTED)
    assert ended is not None
    assert ended.override is None
    assert "CSM override ended" in ended.summary


def test_drags_say_what_pulls_the_score_down_worst_first_with_raw_values() -> None:
    rescorer = Rescorer(small_model())
    state = applied(AccountState(account_id="acme"), *[login() for _ in range(8)])
    fold(state, ticket(ticket_id="t1"))
    fold(state, ticket(ticket_id="t2"))
    fold(state, ticket(ticket_id="t3"))
    update = rescore(rescorer, state, NOW, Trigger.EVENT, "e1", COMPUTED)
    assert update is not None
    # usage 80 (share 3/4) costs 15 points; support 25 (3 of 4 open tickets, share 1/4) 18.75.
    assert update.score == 66.2
    assert [(d.component, d.measure, d.points) for d in update.drags] == [
        ("support", "open_tickets", 18.8),
        ("usage", "logins_7d", 15.0),
    ]
    assert [d.text for d in update.drags] == [
        "support -19: open tickets 3",
        "usage -15: logins 7d 8",
    ]
    # Together they are everything the score lacks to 100.
    assert round(sum(d.points for d in update.drags), 0) == round(100 - update.score, 0)


def test_a_perfect_score_has_no_drags_and_an_override_can_be_one() -> None:
    rescorer = Rescorer(small_model())
    state = applied(AccountState(account_id="acme"), *[login() for _ in range(12)])
    update = rescore(rescorer, state, NOW, Trigger.EVENT, "e1", COMPUTED)
    assert update is not None
    assert update.score == 100.0
    assert update.drags == []
    apply_override(state, override_by("ana", 20, expires_in_days=30), NOW)
    update = rescore(rescorer, state, NOW, Trigger.OVERRIDE, "o1", COMPUTED)
    assert update is not None
    assert update.drags[0].component == OVERRIDE_COMPONENT
    assert update.drags[0].measure is None
    assert update.drags[0].text.startswith(f"{OVERRIDE_COMPONENT} -")
    assert "CSM override 20 by ana (champion left)" in update.drags[0].text
