from __future__ import annotations

import json

import pytest

from scoring.events import EventKind, LoginEvent
from scoring.validation import InvalidEvent, RejectCode, parse_event

GOOD = json.dumps(
    {"event_id": "e1", "account_id": "acme", "occurred_at": "2026-03-02T12:00:00Z", "user_id": "u"}
).encode()


def reject(kind: EventKind | None, key: bytes | None, payload: bytes) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(kind, key, payload)
    return caught.value


def test_a_good_message_becomes_an_event() -> None:
    event = parse_event(EventKind.LOGIN, b"acme", GOOD)
    assert isinstance(event, LoginEvent)
    assert event.user_id == "u"


@pytest.mark.parametrize("key", [None, b""])
def test_empty_or_missing_key(key: bytes | None) -> None:
    error = reject(EventKind.LOGIN, key, GOOD)
    assert error.code is RejectCode.EMPTY_KEY


def test_unknown_kind() -> None:
    assert reject(None, b"acme", GOOD).code is RejectCode.UNKNOWN_KIND


@pytest.mark.parametrize("payload", [b"not json", b"{", b"\xff\xfe\x00", b""])
def test_not_json(payload: bytes) -> None:
    error = reject(EventKind.LOGIN, b"acme", payload)
    assert error.code is RejectCode.NOT_JSON
    assert error.reason


def test_schema_violation_names_the_field() -> None:
    payload = json.dumps({"event_id": "e1", "account_id": "acme", "occurred_at": "yesterday"})
    error = reject(EventKind.LOGIN, b"acme", payload.encode())
    assert error.code is RejectCode.SCHEMA
    assert "occurred_at" in error.reason
    assert "user_id" in error.reason


def test_json_that_is_not_an_object_is_a_schema_error() -> None:
    assert reject(EventKind.LOGIN, b"acme", b"[1, 2]").code is RejectCode.SCHEMA


def test_key_must_match_account_id() -> None:
    error = reject(EventKind.LOGIN, b"other", GOOD)
    assert error.code is RejectCode.KEY_MISMATCH


def test_reason_is_bounded_for_messages_with_many_errors() -> None:
    payload = json.dumps(
        {"event_id": 1, "account_id": 2, "occurred_at": 3, "count": "x", "kind": 4}
    )
    error = reject(EventKind.FEATURE_USE, b"acme", payload.encode())
    assert error.reason.count(";") <= 5
    assert "more" in error.reason
