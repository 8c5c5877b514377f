"""One message in, one outcome out: validate, fold into the account's state, rescore.

Kept free of Faust so it can be tested with a plain dict standing in for the table; the
agent in ``streams.app`` does the I/O that the outcome asks for.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import datetime

from scoring.events import EventKind
from scoring.model import ScoringModel
from scoring.score import ScoreUpdate, rescore
from scoring.state import AccountState, SourcePosition, fold
from scoring.validation import InvalidEvent, RejectCode, parse_event

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rejected:
    """The message goes to the dead-letter topic."""

    error: InvalidEvent


@dataclass(frozen=True, slots=True)
class Applied:
    """The event was folded in; ``update`` is set when the score or band moved."""

    kind: EventKind
    update: ScoreUpdate | None


@dataclass(frozen=True, slots=True)
class Duplicate:
    """Already applied (a redelivery or a producer duplicate): nothing changed."""

    kind: EventKind


Outcome = Rejected | Applied | Duplicate


def process_message(
    states: MutableMapping[bytes, AccountState],
    model: ScoringModel,
    kind: EventKind | None,
    key: bytes | None,
    payload: bytes,
    source: SourcePosition,
    computed_at: datetime,
) -> Outcome:
    """Apply one raw message to ``states``; the state is reassigned so a table logs it."""
    try:
        event = parse_event(kind, key, payload)
    except InvalidEvent as error:
        return Rejected(error)
    assert key is not None  # parse_event rejects empty keys
    try:
        state = states.get(key)
        if state is None:
            state = AccountState(account_id=event.account_id)
        if not fold(state, event, source):
            return Duplicate(event.kind)
        assert state.watermark is not None  # fold sets it
        update = rescore(state, model, state.watermark, event.event_id, computed_at)
        states[key] = state
    except Exception as error:
        # A bug must not stop the scoring of every other account, nor lose the event: it goes
        # to the dead-letter topic, and the traceback to the log.
        log.exception("Applying event %s failed", event.event_id)
        reason = f"applying the event failed: {type(error).__name__}"
        return Rejected(InvalidEvent(RejectCode.PROCESSING_ERROR, reason))
    return Applied(event.kind, update)
