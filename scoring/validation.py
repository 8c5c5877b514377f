"""Turn one raw Kafka message (key bytes, value bytes) into an event, or say why not.

Pure: the stream layer hands in the bytes and the kind its topic carries, and routes an
``InvalidEvent`` to the dead-letter topic with its ``code`` and ``reason``.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import ValidationError

from scoring.events import EVENT_MODELS, Event, EventKind


class RejectCode(StrEnum):
    """Why a message was rejected; a small fixed set, usable as a metric label."""

    EMPTY_KEY = "empty_key"
    UNKNOWN_KIND = "unknown_kind"
    NOT_JSON = "not_json"
    SCHEMA = "schema"
    KEY_MISMATCH = "key_mismatch"
    PROCESSING_ERROR = "processing_error"
    """A valid event the worker failed to apply (a bug): kept in the DLQ for replay."""


class InvalidEvent(Exception):
    def __init__(self, code: RejectCode, reason: str) -> None:
        super().__init__(f"{code.value}: {reason}")
        self.code = code
        self.reason = reason


_MAX_REASON_ERRORS = 5


def _describe(error: ValidationError) -> tuple[RejectCode, str]:
    errors = error.errors(include_url=False, include_input=False)
    if any(e["type"] == "json_invalid" for e in errors):
        return RejectCode.NOT_JSON, "; ".join(e["msg"] for e in errors)
    parts = []
    for e in errors[:_MAX_REASON_ERRORS]:
        where = ".".join(str(p) for p in e["loc"]) or "(body)"
        parts.append(f"{where}: {e['msg']}")
    if len(errors) > _MAX_REASON_ERRORS:
        parts.append(f"... and {len(errors) - _MAX_REASON_ERRORS} more")
    return RejectCode.SCHEMA, "; ".join(parts)


def parse_event(kind: EventKind | None, key: bytes | None, payload: bytes) -> Event:
    """Validate one message; raise ``InvalidEvent`` with a clear reason when it is bad.

    ``kind`` is the kind the source topic carries (None for a topic we do not know).
    """
    if kind is None:
        raise InvalidEvent(RejectCode.UNKNOWN_KIND, "the source topic carries no known kind")
    if not key:
        raise InvalidEvent(RejectCode.EMPTY_KEY, "message key is empty; key by account_id")
    try:
        event = EVENT_MODELS[kind].model_validate_json(payload)
    except ValidationError as error:
        raise InvalidEvent(*_describe(error)) from None
    if key != event.account_id.encode():
        raise InvalidEvent(
            RejectCode.KEY_MISMATCH, "message key differs from the body's account_id"
        )
    return event
