"""Explanations a CSM can check: for a bad event on any state, no driver shows a component
rising because of it and the score does not rise because of it alone; drivers add up to the
change; drags name each cause once; a new account's words."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring.events import (
    AccountAttributes,
    Event,
    PaymentStatus,
    SurveyEvent,
    SurveyType,
    TicketAction,
    TicketPriority,
)
from scoring.explain import Explainer, component_effects
from scoring.scoring_model import default_model
from scoring.state import SECONDS_PER_DAY, AccountState, apply_attributes, fold
from scoring.update import Rescorer, Trigger
from tests.factories import T0, feature, login, payment, rescore, survey, ticket

NOW = T0.timestamp()
MODEL = default_model()


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    """Up to 60 days of any mix of inputs, the last within the stale limit."""
    events: list[Event] = []
    for n in range(draw(st.integers(1, 40))):
        days = -draw(st.floats(0.0, 60.0))
        kind = draw(st.sampled_from(["login", "feature", "ticket", "payment", "nps", "csat"]))
        user = f"u{draw(st.integers(0, 5))}"
        if kind == "login":
            events.append(login(days=days, user=user))
        elif kind == "feature":
            name = f"f{draw(st.integers(0, 8))}"
            events.append(feature(days=days, user=user, name=name, n=draw(st.integers(1, 9))))
        elif kind == "ticket":
            events.append(
                ticket(
                    days=days,
                    ticket_id=f"old{draw(st.integers(0, 4))}",
                    action=draw(st.sampled_from(list(TicketAction))),
                    priority=draw(st.sampled_from(list(TicketPriority))),
                )
            )
        elif kind == "payment":
            status = draw(st.sampled_from(list(PaymentStatus)))
            events.append(payment(days=days, invoice=f"old{n}", status=status))
        else:
            survey_type = SurveyType.NPS if kind == "nps" else SurveyType.CSAT
            top = 10 if kind == "nps" else 5
            low = 0 if kind == "nps" else 1
            events.append(survey(days=days, kind=survey_type, score=draw(st.integers(low, top))))
    events.append(login(days=-draw(st.floats(0.0, 15.0))))
    return events


def bad_event(kind: str, history: list[Event], worst: bool) -> Event:
    """A bad event; an answer is a detractor's (0-6) or a low CSAT (1-2), no better than any
    answer of the account before it (``worst``: the worst there is)."""
    match kind:
        case "failed_payment":
            return payment(invoice="new", status=PaymentStatus.FAILED)
        case "urgent_ticket":
            return ticket(ticket_id="new", priority=TicketPriority.URGENT)
    survey_type, best = (SurveyType.NPS, 6) if kind == "detractor" else (SurveyType.CSAT, 2)
    answers = [e.score for e in history if isinstance(e, SurveyEvent) and e.survey is survey_type]
    low = 0 if survey_type is SurveyType.NPS else 1
    return survey(kind=survey_type, score=low if worst else min([best, *answers]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=histories(),
    kind=st.sampled_from(["failed_payment", "urgent_ticket", "detractor", "low_csat"]),
    worst=st.booleans(),
    attributes=st.fixed_dictionaries(
        {"seats": st.none() | st.integers(1, 50), "tenure": st.none() | st.integers(0, 900)}
    ),
)
def test_a_bad_event_never_raises_the_score_nor_shows_a_component_rising(
    history: list[Event], kind: str, worst: bool, attributes: dict[str, Any]
) -> None:
    state = AccountState(account_id="acme")
    since = None if attributes["tenure"] is None else date(2026, 3, 1)
    if since is not None:
        since -= timedelta(days=attributes["tenure"])
    apply_attributes(
        state,
        AccountAttributes(
            account_id="acme", updated_at=T0, seats=attributes["seats"], customer_since=since
        ),
    )
    for event in history:
        fold(state, event)
    rescorer = Rescorer(MODEL)
    first = rescore(rescorer, state, NOW, Trigger.EVENT, "e0", T0)
    assert first is not None
    fold(state, bad_event(kind, history, worst))
    evaluation = rescorer.evaluate(state, NOW)
    assert evaluation is not None
    assert evaluation.score.value <= first.score, kind
    drivers = rescorer.explain(state, evaluation).drivers
    assert all(driver.delta <= 0 for driver in drivers), [d.text for d in drivers]


def test_drivers_add_up_to_the_change_when_measures_start_counting() -> None:
    state = AccountState(account_id="acme")
    for day in range(40):
        fold(state, login(days=-day))
    rescorer = Rescorer(MODEL)
    before = rescore(rescorer, state, NOW, Trigger.EVENT, "e0", T0)
    assert before is not None
    assert state.published is not None
    published = state.published
    fold(state, feature(n=5))  # adoption's feature measures start counting
    evaluation = rescorer.evaluate(state, NOW)
    assert evaluation is not None
    effects = component_effects(published, evaluation.score)
    assert abs(sum(effects.values()) - (evaluation.score.value - before.score)) < 0.3
    [driver] = [d for d in rescorer.explain(state, evaluation).drivers if d.component == "adoption"]
    assert "distinct features used in 30 days: 1 (newly counted)" in driver.text


def test_drags_name_failed_payments_once_and_tenure_as_youth() -> None:
    state = AccountState(account_id="acme")
    apply_attributes(
        state,
        AccountAttributes(
            account_id="acme", updated_at=T0, customer_since=T0.date() - timedelta(86)
        ),
    )
    for day in range(40):
        fold(state, login(days=-day))
    for n in range(4):
        fold(state, payment(days=-n, invoice=f"i{n}", status=PaymentStatus.FAILED))
    score = Rescorer(MODEL).evaluate(state, NOW)
    assert score is not None
    drags = Explainer(MODEL).drags(score.score)
    billing = [d for d in drags if d.component == "billing"]
    assert len(billing) == 1
    assert billing[0].text.startswith("billing -")
    assert "failed payments in 30 days 4 (90 days: 4)" in billing[0].text
    texts = " | ".join(d.text for d in drags)
    assert "relationship" not in texts or "new customer: 86 days, full trust at 180" in texts
    assert "absolute scale" not in texts
    assert "share of the score" not in texts


def test_a_new_account_is_never_critical_for_want_of_data() -> None:
    state = AccountState(account_id="acme")
    fold(state, login())
    fold(state, feature(n=3))
    fold(state, survey(score=10))
    update = rescore(Rescorer(MODEL), state, NOW, Trigger.EVENT, "e0", T0)
    assert update is not None
    assert update.onboarding is not None
    assert update.onboarding.judged_from_day == MODEL.onboarding.days
    # Its youth counts as the day it is judged from (14), not as its first day.
    tenure = next(m for m in MODEL.components["relationship"].measures)
    assert update.components["relationship"].score == round(tenure.mapping.score(14.0), 1)
    assert update.band != "critical", update.summary
    drags = " | ".join(d.text for d in update.drags)
    assert "new customer: 0 days (counted as 14 until judged)" in drags
    # A month later with the same habits it is judged, youth included.
    for day in range(1, 32):
        fold(state, login(days=day))
    later = Rescorer(MODEL).evaluate(state, NOW + 31 * SECONDS_PER_DAY)
    assert later is not None
    assert later.score.onboarding is None
    assert later.score.component_scores["relationship"] > update.components["relationship"].score


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(["login", "feature", "paid", "ticket", "nps", "csat"]),
    plan=st.sampled_from([None, "enterprise"]),
    stage=st.sampled_from([None, "onboarding"]),
    seats=st.none() | st.integers(1, 500),
    with_attributes=st.booleans(),
)
def test_a_brand_new_accounts_first_score_is_never_critical_for_want_of_data(
    kind: str, plan: str | None, stage: str | None, seats: int | None, with_attributes: bool
) -> None:
    """One ordinary first event (no failed payment, urgent ticket or poor answer), in any
    segment, with or without its attributes yet: never the worst band."""
    firsts: dict[str, Event] = {
        "login": login(),
        "feature": feature(),
        "paid": payment(),
        "ticket": ticket(),
        "nps": survey(kind=SurveyType.NPS, score=8),
        "csat": survey(kind=SurveyType.CSAT, score=4),
    }
    first = firsts[kind]
    state = AccountState(account_id="acme")
    if with_attributes:
        apply_attributes(
            state,
            AccountAttributes(
                account_id="acme",
                updated_at=T0,
                plan=plan,
                lifecycle_stage=stage,
                seats=seats,
                customer_since=T0.date(),
            ),
        )
    fold(state, first)
    update = rescore(Rescorer(MODEL), state, NOW, Trigger.EVENT, "e0", T0)
    assert update is not None
    assert update.onboarding is not None
    assert update.band != update.bands[-1].label, (update.score, update.segment, update.drags)


def test_trouble_in_a_new_accounts_data_can_make_it_critical_at_once() -> None:
    state = AccountState(account_id="acme")
    fold(state, payment(invoice="i1", status=PaymentStatus.FAILED))
    fold(state, payment(invoice="i2", status=PaymentStatus.FAILED))
    update = rescore(Rescorer(MODEL), state, NOW, Trigger.EVENT, "e0", T0)
    assert update is not None
    assert update.onboarding is not None
    assert update.score < MODEL.bands[-2].min
    assert update.band == "critical"
