from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from scoring.events import AccountAttributes, FeatureUseEvent, LoginEvent
from scoring.state import SECONDS_PER_DAY
from scoring.validation import InvalidInput, RejectCode, check_event_time, parse_message
from tests.factories import T0, login

GOOD = json.dumps(
    {"event_id": "e1", "account_id": "acme", "occurred_at": "2026-03-02T12:00:00Z", "user_id": "u"}
).encode()


def reject(model: type[BaseModel] | None, key: bytes | None, payload: bytes | None) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parse_message(model, key, payload)
    return caught.value


def test_a_good_message_becomes_its_model() -> None:
    event = parse_message(LoginEvent, b"acme", GOOD)
    assert isinstance(event, LoginEvent)
    assert event.user_id == "u"


@pytest.mark.parametrize("key", [None, b""])
def test_empty_or_missing_key(key: bytes | None) -> None:
    assert reject(LoginEvent, key, GOOD).code is RejectCode.EMPTY_KEY


def test_unknown_kind() -> None:
    assert reject(None, b"acme", GOOD).code is RejectCode.UNKNOWN_KIND


@pytest.mark.parametrize("payload", [b"not json", b"{", b"\xff\xfe\x00", b"", None])
def test_not_json(payload: bytes | None) -> None:
    error = reject(LoginEvent, b"acme", payload)
    assert error.code is RejectCode.NOT_JSON
    assert error.reason


def test_schema_violation_names_the_field() -> None:
    payload = json.dumps({"event_id": "e1", "account_id": "acme", "occurred_at": "yesterday"})
    error = reject(LoginEvent, b"acme", payload.encode())
    assert error.code is RejectCode.SCHEMA
    assert "occurred_at" in error.reason
    assert "user_id" in error.reason


def test_json_that_is_not_an_object_is_a_schema_error() -> None:
    assert reject(LoginEvent, b"acme", b"[1, 2]").code is RejectCode.SCHEMA


def test_key_must_match_account_id_for_every_model() -> None:
    assert reject(LoginEvent, b"other", GOOD).code is RejectCode.KEY_MISMATCH
    attributes = json.dumps({"account_id": "acme", "updated_at": "2026-03-02T12:00:00Z"})
    assert reject(AccountAttributes, b"other", attributes.encode()).code is RejectCode.KEY_MISMATCH


def test_reason_is_bounded_for_messages_with_many_errors() -> None:
    payload = {"event_id": 1, "account_id": 2, "occurred_at": 3, "count": "x", "kind": 4}
    error = reject(FeatureUseEvent, b"acme", json.dumps(payload).encode())
    assert error.reason.count(";") <= 5
    assert "more" in error.reason


NOW = T0.timestamp()


def time_error(days: float, now: float = NOW, wall: float = NOW) -> RejectCode | None:
    try:
        check_event_time(login(days=days), now, wall, max_future=600)
    except InvalidInput as error:
        return error.code
    return None


def test_events_within_the_window_and_margin_pass() -> None:
    assert time_error(0) is None
    assert time_error(-89) is None
    assert time_error(500 / SECONDS_PER_DAY) is None


def test_events_too_far_in_the_future_or_past_are_rejected() -> None:
    assert time_error(700 / SECONDS_PER_DAY) is RejectCode.IN_FUTURE
    assert time_error(-91) is RejectCode.TOO_OLD


def test_age_is_measured_on_the_scoring_clock_and_the_future_on_the_wall_clock() -> None:
    year_ago = NOW - 365 * SECONDS_PER_DAY
    # Replaying last year with the event clock: an event of last year is not too old...
    assert time_error(-365, now=year_ago) is None
    # ...and an event of tomorrow is in the future whatever the scoring clock says.
    assert time_error(1, now=year_ago) is RejectCode.IN_FUTURE
