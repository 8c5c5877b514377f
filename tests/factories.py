"""Builders of valid events for tests: every field has a sensible default."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count

from scoring.events import (
    Event,
    FeatureUseEvent,
    LoginEvent,
    OutcomeEvent,
    OutcomeKind,
    PaymentEvent,
    PaymentStatus,
    SurveyEvent,
    SurveyType,
    TicketAction,
    TicketEvent,
    TicketPriority,
)
from scoring.scoring_model import default_model
from scoring.state import AccountState, fold
from scoring.update import Rescorer, ScoreUpdate, Trigger

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
"""A Monday noon, the reference time of the unit tests."""

_ids = count(1)


def at(days: float = 0.0) -> datetime:
    """``T0`` shifted by ``days`` (negative is the past)."""
    return T0 + timedelta(days=days)


def _event_id() -> str:
    return f"ev-{next(_ids)}"


def login(account: str = "acme", days: float = 0.0, user: str = "u1") -> LoginEvent:
    return LoginEvent(event_id=_event_id(), account_id=account, occurred_at=at(days), user_id=user)


def feature(
    account: str = "acme", days: float = 0.0, name: str = "reports", user: str = "u1", n: int = 1
) -> FeatureUseEvent:
    return FeatureUseEvent(
        event_id=_event_id(),
        account_id=account,
        occurred_at=at(days),
        user_id=user,
        feature=name,
        count=n,
    )


def ticket(
    account: str = "acme",
    days: float = 0.0,
    ticket_id: str = "t1",
    action: TicketAction = TicketAction.OPENED,
    priority: TicketPriority = TicketPriority.NORMAL,
) -> TicketEvent:
    return TicketEvent(
        event_id=_event_id(),
        account_id=account,
        occurred_at=at(days),
        ticket_id=ticket_id,
        action=action,
        priority=priority,
    )


def payment(
    account: str = "acme",
    days: float = 0.0,
    invoice: str = "inv1",
    status: PaymentStatus = PaymentStatus.PAID,
) -> PaymentEvent:
    return PaymentEvent(
        event_id=_event_id(),
        account_id=account,
        occurred_at=at(days),
        invoice_id=invoice,
        status=status,
        amount=Decimal("100.00"),
        currency="EUR",
    )


def survey(
    account: str = "acme", days: float = 0.0, kind: SurveyType = SurveyType.NPS, score: int = 9
) -> SurveyEvent:
    return SurveyEvent(
        event_id=_event_id(), account_id=account, occurred_at=at(days), survey=kind, score=score
    )


def active_history(account: str, first_day: int, last_day: int) -> list[Event]:
    """A healthy account from ``first_day`` to ``last_day`` (days relative to T0): a login and
    three feature uses a day by three users, an invoice paid, a promoter's NPS answer."""
    events: list[Event] = []
    for d in range(first_day, last_day + 1):
        events.append(login(account, days=d, user=f"u{d % 3}"))
        events.append(feature(account, days=d + 0.01, name=f"f{d % 6}", user=f"u{d % 3}", n=3))
    events.append(payment(account, days=last_day - 3))
    events.append(survey(account, days=last_day - 1, score=9))
    return events


def outcome(
    account: str = "acme", days: float = 0.0, kind: OutcomeKind = OutcomeKind.CHURNED
) -> OutcomeEvent:
    return OutcomeEvent(
        event_id=_event_id(), account_id=account, occurred_at=at(days), outcome=kind
    )


def rescore(
    rescorer: Rescorer,
    state: AccountState,
    now: float,
    trigger: Trigger,
    event_id: str | None,
    computed_at: datetime,
) -> ScoreUpdate | None:
    """Evaluate, and publish what matters, with no alert in between."""
    evaluation = rescorer.evaluate(state, now)
    if evaluation is None:
        return None
    return rescorer.publish(state, evaluation, now, trigger, event_id, computed_at)


COMPUTED = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)
"""When the updates of ``scored`` were computed."""


def scored() -> ScoreUpdate:
    state = AccountState(account_id="acme")
    for day in range(10):
        fold(state, login(days=-day, user=f"u{day}"))
    fold(state, payment())
    update = rescore(
        Rescorer(default_model()), state, T0.timestamp(), Trigger.EVENT, "e1", COMPUTED
    )
    assert update is not None
    return update
