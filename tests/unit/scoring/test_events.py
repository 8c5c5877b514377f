from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel, ValidationError

from scoring.events import (
    ANY_EVENT_ADAPTER,
    EVENT_MODELS,
    AccountAttributes,
    CsmOverride,
    EventKind,
    FeatureUseEvent,
    LoginEvent,
    OverrideAction,
    PaymentEvent,
    SurveyEvent,
    TicketEvent,
)

BASE: dict[str, Any] = {
    "event_id": "e1",
    "account_id": "acme",
    "occurred_at": "2026-03-02T12:00:00+01:00",
}


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: dict[str, Any]) -> M:
    """Events arrive as JSON bytes; validate them the way the worker does."""
    return model.model_validate_json(json.dumps(data))


VALID: dict[EventKind, dict[str, Any]] = {
    EventKind.LOGIN: {"user_id": "u1"},
    EventKind.FEATURE_USE: {"user_id": "u1", "feature": "reports", "count": 3},
    EventKind.TICKET: {"ticket_id": "t1", "action": "opened", "priority": "urgent"},
    EventKind.PAYMENT: {
        "invoice_id": "i1",
        "status": "failed",
        "amount": "499.90",
        "currency": "EUR",
    },
    EventKind.SURVEY: {"survey": "nps", "score": 9, "comment": "great"},
}


@pytest.mark.parametrize("kind", list(EventKind))
def test_each_kind_parses_from_json_bytes(kind: EventKind) -> None:
    event = parse(EVENT_MODELS[kind], {**BASE, **VALID[kind]})
    assert event.kind is kind
    assert event.account_id == "acme"
    assert event.occurred_at.utcoffset() is not None


def test_event_time_keeps_its_zone_and_converts_to_posix_seconds() -> None:
    event = parse(LoginEvent, {**BASE, "user_id": "u1"})
    assert event.occurred_ts == 1772449200.0  # 2026-03-02T11:00:00Z


def test_occurred_at_without_time_zone_is_rejected() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        parse(LoginEvent, {**BASE, "occurred_at": "2026-03-02T12:00:00", "user_id": "u"})


def test_occurred_at_must_be_a_string_not_a_number() -> None:
    with pytest.raises(ValidationError, match="occurred_at"):
        parse(LoginEvent, {**BASE, "occurred_at": 1772449200, "user_id": "u"})


def test_feature_use_count_defaults_to_one_and_must_be_positive() -> None:
    event = parse(FeatureUseEvent, {**BASE, "user_id": "u1", "feature": "f"})
    assert event.count == 1
    with pytest.raises(ValidationError, match="count"):
        parse(FeatureUseEvent, {**BASE, "user_id": "u1", "feature": "f", "count": 0})


@pytest.mark.parametrize(
    ("field", "value"),
    [("action", "closed"), ("priority", "blocker")],
)
def test_ticket_enums_are_enforced(field: str, value: str) -> None:
    data = {**BASE, **VALID[EventKind.TICKET], field: value}
    with pytest.raises(ValidationError, match=field):
        parse(TicketEvent, data)


def test_payment_amount_is_decimal_and_currency_is_iso_4217() -> None:
    event = parse(PaymentEvent, {**BASE, **VALID[EventKind.PAYMENT]})
    assert event.amount == Decimal("499.90")
    for bad in ("eur", "EURO", "E1R"):
        with pytest.raises(ValidationError, match="currency"):
            parse(PaymentEvent, {**BASE, **VALID[EventKind.PAYMENT], "currency": bad})
    with pytest.raises(ValidationError, match="amount"):
        parse(PaymentEvent, {**BASE, **VALID[EventKind.PAYMENT], "amount": "NaN"})


@pytest.mark.parametrize(
    ("survey", "good", "bad"),
    [("nps", [0, 10], [-1, 11]), ("csat", [1, 5], [0, 6]), ("ces", [1, 7], [0, 8])],
)
def test_survey_scores_must_fit_their_scale(survey: str, good: list[int], bad: list[int]) -> None:
    for score in good:
        parse(SurveyEvent, {**BASE, "survey": survey, "score": score})
    for score in bad:
        with pytest.raises(ValidationError, match="between"):
            parse(SurveyEvent, {**BASE, "survey": survey, "score": score})


def test_unknown_fields_are_ignored_but_a_wrong_kind_is_not() -> None:
    event = parse(LoginEvent, {**BASE, "user_id": "u1", "browser": "firefox"})
    assert not hasattr(event, "browser")
    with pytest.raises(ValidationError, match="kind"):
        parse(LoginEvent, {**BASE, "user_id": "u1", "kind": "payment"})


@pytest.mark.parametrize("field", ["event_id", "account_id", "occurred_at"])
def test_common_fields_are_required(field: str) -> None:
    data = {**BASE, "user_id": "u1"}
    del data[field]
    with pytest.raises(ValidationError, match=field):
        parse(LoginEvent, data)


def test_empty_ids_are_rejected() -> None:
    with pytest.raises(ValidationError, match="account_id"):
        parse(LoginEvent, {**BASE, "account_id": "", "user_id": "u1"})


def test_mixed_stream_reader_dispatches_on_kind() -> None:
    event = ANY_EVENT_ADAPTER.validate_json(
        json.dumps({**BASE, "kind": "survey", "survey": "ces", "score": 4})
    )
    assert isinstance(event, SurveyEvent)


ATTRS: dict[str, Any] = {"account_id": "acme", "updated_at": "2026-03-02T12:00:00Z"}


def test_account_attributes_are_all_optional_but_id_and_time() -> None:
    bare = parse(AccountAttributes, ATTRS)
    assert bare.seats is None
    full = parse(
        AccountAttributes,
        {
            **ATTRS,
            "segment": "mid-market",
            "plan": "enterprise",
            "lifecycle_stage": "adopted",
            "seats": 40,
            "mrr": "1999.00",
            "currency": "EUR",
            "renewal_date": "2027-01-31",
            "csm_owner": "ann@example.com",
            "customer_since": "2024-05-01",
        },
    )
    assert full.mrr == Decimal("1999.00")
    assert full.renewal_date is not None
    with pytest.raises(ValidationError, match="seats"):
        parse(AccountAttributes, {**ATTRS, "seats": -1})


OVERRIDE: dict[str, Any] = {
    **BASE,
    "action": "set",
    "author": "ann",
    "reason": "champion left",
    "score": 20,
    "expires_at": "2026-03-16T12:00:00Z",
}


def test_override_set_needs_score_and_a_later_expiry() -> None:
    override = parse(CsmOverride, OVERRIDE)
    assert override.action is OverrideAction.SET
    with pytest.raises(ValidationError, match="needs a score"):
        parse(CsmOverride, {**OVERRIDE, "score": None})
    with pytest.raises(ValidationError, match="after occurred_at"):
        parse(CsmOverride, {**OVERRIDE, "expires_at": "2026-03-01T12:00:00Z"})
    with pytest.raises(ValidationError, match="reason"):
        parse(CsmOverride, {**OVERRIDE, "reason": ""})
    cleared = parse(CsmOverride, {**BASE, "action": "clear", "author": "ann", "reason": "renewed"})
    assert cleared.score is None
