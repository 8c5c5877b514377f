from __future__ import annotations

from datetime import UTC, datetime

from scoring.events import EventKind
from scoring.model import DEFAULT_MODEL
from scoring.state import AccountState, SourcePosition
from scoring.validation import RejectCode
from streams.processing import Applied, Duplicate, Rejected, process_message
from tests.factories import login

NOW = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)


def run(
    states: dict[bytes, AccountState], key: bytes | None, payload: bytes, offset: int
) -> object:
    source = SourcePosition("chs.events.login", 0, offset)
    return process_message(states, DEFAULT_MODEL, EventKind.LOGIN, key, payload, source, NOW)


def test_good_message_is_folded_scored_and_stored() -> None:
    states: dict[bytes, AccountState] = {}
    event = login(account="acme")
    outcome = run(states, b"acme", event.model_dump_json().encode(), 0)
    assert isinstance(outcome, Applied)
    assert outcome.update is not None
    assert outcome.update.account_id == "acme"
    assert outcome.update.event_id == event.event_id
    assert outcome.update.computed_at == NOW
    assert states[b"acme"].last_score == outcome.update.score


def test_bad_message_is_rejected_and_touches_no_state() -> None:
    states: dict[bytes, AccountState] = {}
    outcome = run(states, b"acme", b"{oops", 0)
    assert isinstance(outcome, Rejected)
    assert outcome.error.code is RejectCode.NOT_JSON
    assert states == {}


def test_redelivery_is_a_duplicate_and_publishes_nothing() -> None:
    states: dict[bytes, AccountState] = {}
    payload = login(account="acme").model_dump_json().encode()
    run(states, b"acme", payload, 5)
    assert isinstance(run(states, b"acme", payload, 5), Duplicate)
    assert states[b"acme"].events_applied == 1


def test_event_that_does_not_move_the_score_publishes_no_update() -> None:
    states: dict[bytes, AccountState] = {}
    run(states, b"acme", login(account="acme").model_dump_json().encode(), 0)
    outcome = run(states, b"acme", login(account="acme").model_dump_json().encode(), 1)
    assert isinstance(outcome, Applied)
    assert outcome.update is None
    assert states[b"acme"].events_applied == 2


class BrokenStore(dict[bytes, AccountState]):
    def get(self, key: bytes, default: object = None) -> AccountState:
        raise RuntimeError("store bug")


def test_a_failure_while_applying_sends_the_event_to_the_dlq() -> None:
    payload = login(account="acme").model_dump_json().encode()
    outcome = run(BrokenStore(), b"acme", payload, 0)
    assert isinstance(outcome, Rejected)
    assert outcome.error.code is RejectCode.PROCESSING_ERROR
    assert "RuntimeError" in outcome.error.reason
