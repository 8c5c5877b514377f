"""Thousands of random messages through the validation path: nothing escapes, nothing crashes.

Every message ends as exactly one outcome: rejected with a known reason, applied (and then it
was a valid event of its topic's kind, keyed by its account), or skipped as a repeat.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts.config import default_rules
from scoring.events import EVENT_MODELS, EventKind
from scoring.scoring_model import default_model
from scoring.state import AccountState, SourcePosition
from scoring.update import Rescorer
from scoring.validation import RejectCode
from streams.pipeline.account_step import (
    INPUT_MODELS,
    Applied,
    Control,
    Processor,
    Rejected,
    Skipped,
)
from tests.clock import ManualClock
from tests.factories import T0

ROLES = [*EventKind, *Control]
FIELD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        [
            "2026-03-02T11:00:00Z",
            "2026-03-02T11:00:00",
            "yesterday",
            "login",
            "paid",
            "failed",
            "urgent",
            "opened",
            "nps",
            "csat",
            "ces",
            "EUR",
            "eur",
            "499.00",
            "NaN",
            "acme",
            "set",
        ]
    ),
)
FIELDS = [
    "event_id",
    "account_id",
    "occurred_at",
    "user_id",
    "feature",
    "count",
    "ticket_id",
    "action",
    "priority",
    "invoice_id",
    "status",
    "amount",
    "currency",
    "survey",
    "score",
    "comment",
    "kind",
    "updated_at",
    "author",
    "reason",
    "expires_at",
    "due_at",
    "seats",
]
BODIES = st.dictionaries(st.sampled_from(FIELDS), FIELD_VALUES, max_size=12)


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, allow_nan=True).encode()


PAYLOADS = st.one_of(
    st.binary(max_size=300),
    BODIES.map(encode),
    BODIES.map(
        lambda b: encode(
            {**b, "account_id": "acme", "event_id": "e1", "occurred_at": "2026-03-02T11:00:00Z"}
        )
    ),
)
KEYS = st.one_of(st.none(), st.just(b""), st.just(b"acme"), st.binary(max_size=8))


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([*ROLES, None]), KEYS, st.one_of(st.none(), PAYLOADS))
def test_random_messages_never_crash_and_never_slip_through(
    role: EventKind | Control | None, key: bytes | None, payload: bytes | None
) -> None:
    processor = Processor(
        Rescorer(default_model()), default_rules(), ManualClock(T0.timestamp()), 600, 4096
    )
    states: dict[bytes, AccountState] = {}
    outcome = processor.process(states, role, key, payload, SourcePosition("t", 0, 1))
    assert isinstance(outcome, Rejected | Applied | Skipped)
    if isinstance(outcome, Rejected):
        assert outcome.error.code in set(RejectCode) - {RejectCode.PROCESSING_ERROR}
        assert outcome.error.reason
        assert states == {}
    elif isinstance(outcome, Applied) and payload is None:
        # A tombstone on the accounts topic, keyed by a valid account id: an erasure.
        assert role is Control.ACCOUNTS
        assert outcome.erased
        assert key == outcome.state.account_id.encode()
        assert states == {}
    elif isinstance(outcome, Applied):
        assert role is not None
        assert key is not None
        assert payload is not None
        model = INPUT_MODELS[role]
        parsed = model.model_validate_json(payload)
        assert key == str(parsed.model_dump()["account_id"]).encode()
        assert key in states


def test_a_payload_over_the_limit_is_rejected_unread() -> None:
    processor = Processor(
        Rescorer(default_model()), default_rules(), ManualClock(T0.timestamp()), 600, 1024
    )
    big = encode(
        {
            "event_id": "e",
            "account_id": "acme",
            "occurred_at": "2026-03-02T11:00:00Z",
            "user_id": "u" * 2000,
        }
    )
    outcome = processor.process({}, EventKind.LOGIN, b"acme", big, SourcePosition("t", 0, 1))
    assert isinstance(outcome, Rejected)
    assert outcome.error.code is RejectCode.TOO_LARGE
    assert "1024" in outcome.error.reason


def test_nan_and_infinity_are_rejected_in_every_numeric_field() -> None:
    base = {"event_id": "e", "account_id": "acme", "occurred_at": "2026-03-02T11:00:00Z"}
    cases = {
        EventKind.FEATURE_USE: {"user_id": "u", "feature": "f", "count": float("nan")},
        EventKind.PAYMENT: {
            "invoice_id": "i",
            "status": "paid",
            "amount": float("inf"),
            "currency": "EUR",
        },
        EventKind.SURVEY: {"survey": "nps", "score": float("nan")},
    }
    processor = Processor(
        Rescorer(default_model()), default_rules(), ManualClock(T0.timestamp()), 600
    )
    for kind, fields in cases.items():
        assert kind in EVENT_MODELS
        payload = encode({**base, **fields})
        outcome = processor.process({}, kind, b"acme", payload, SourcePosition("t", 0, 1))
        assert isinstance(outcome, Rejected), kind
        assert outcome.error.code is RejectCode.SCHEMA
