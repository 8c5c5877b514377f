"""Turn one raw Kafka message (key bytes, value bytes) into a model, or say why not.

Pure: the stream layer hands in the bytes, the model its topic carries and the current time,
and routes an ``InvalidInput`` to the dead-letter topic with its ``code`` and ``reason``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from scoring.events import BaseEvent
from scoring.state import HORIZON_DAYS, SECONDS_PER_DAY


class RejectCode(StrEnum):
    """Why a message was rejected; a small fixed set, usable as a metric label."""

    EMPTY_KEY = "empty_key"
    UNKNOWN_KIND = "unknown_kind"
    NOT_JSON = "not_json"
    SCHEMA = "schema"
    KEY_MISMATCH = "key_mismatch"
    TOO_LARGE = "too_large"
    TOO_OLD = "too_old"
    IN_FUTURE = "in_future"
    OVERRIDE_CONFLICT = "override_conflict"
    PARENT_CYCLE = "parent_cycle"
    HIERARCHY_TOO_DEEP = "hierarchy_too_deep"
    TOO_MANY_CHILDREN = "too_many_children"
    PROCESSING_ERROR = "processing_error"
    """A valid input the worker failed to apply (a bug): kept in the DLQ for replay."""


class InvalidInput(Exception):
    def __init__(self, code: RejectCode, reason: str) -> None:
        super().__init__(f"{code.value}: {reason}")
        self.code = code
        self.reason = reason


M = TypeVar("M", bound=BaseModel)

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


def parse_message(
    model: type[M] | None,
    key: bytes | None,
    payload: bytes | None,
    max_bytes: int | None = None,
) -> M:
    """Validate one message as ``model``; raise ``InvalidInput`` with a clear reason if bad.

    ``model`` is what the source topic carries (None for a topic we do not know). The key
    must be the body's ``account_id``; a payload over ``max_bytes`` is not even parsed.
    """
    if max_bytes is not None and payload is not None and len(payload) > max_bytes:
        raise InvalidInput(
            RejectCode.TOO_LARGE, f"payload of {len(payload)} bytes is over {max_bytes} bytes"
        )
    if model is None:
        raise InvalidInput(RejectCode.UNKNOWN_KIND, "the source topic carries no known kind")
    if not key:
        raise InvalidInput(RejectCode.EMPTY_KEY, "message key is empty; key by account_id")
    try:
        parsed = model.model_validate_json(payload or b"")
    except ValidationError as error:
        raise InvalidInput(*_describe(error)) from None
    account_id: str = getattr(parsed, "account_id", "")
    if key != account_id.encode():
        raise InvalidInput(
            RejectCode.KEY_MISMATCH, "message key differs from the body's account_id"
        )
    return parsed


def check_event_time(event: BaseEvent, now: float, wall_now: float, max_future: float) -> None:
    """Reject events older than the state horizon (relative to ``now``, the scoring clock)
    or more than ``max_future`` seconds ahead of the wall clock."""
    ts = event.occurred_ts
    if ts > wall_now + max_future:
        raise InvalidInput(
            RejectCode.IN_FUTURE,
            f"occurred_at is {ts - wall_now:.0f}s in the future (limit {max_future:.0f}s)",
        )
    if ts < now - HORIZON_DAYS * SECONDS_PER_DAY:
        raise InvalidInput(
            RejectCode.TOO_OLD, f"occurred_at is older than the {HORIZON_DAYS}-day window"
        )


class NoTimeZone(ValueError):
    """An ISO 8601 time without a zone: which instant it means is a guess."""


def parse_instant(text: str) -> datetime:
    """A point in time given as ISO 8601 (RFC 3339 included) with a zone, or as POSIX seconds
    (as people type them into a query or a CSV export). ValueError if it is neither;
    NoTimeZone for ISO without a zone."""
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except (ValueError, OverflowError, OSError):
        pass
    # Python reads upper-case separators only, and no leap second (RFC 3339 allows both).
    moment = datetime.fromisoformat(re.sub(r":60(?=[.Z+-]|$)", ":59", text.upper()))
    if moment.tzinfo is None:
        raise NoTimeZone(text)
    return moment
