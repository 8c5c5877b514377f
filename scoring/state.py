"""Per-account rolling state and the fold that applies one event to it.

``AccountState`` is a compact value whose size is bounded whatever the account's history:
day buckets for the last ``HORIZON_DAYS`` days, small bounded maps where a measure needs distinct
values, and an idempotency fence. ``fold`` costs O(1) per event: every loop in it runs over a
bounded container, never over the account's history.

Time is always a parameter (POSIX seconds); nothing here reads a clock.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from pydantic import BaseModel, Field

from scoring.events import (
    Event,
    EventKind,
    FeatureUseEvent,
    LoginEvent,
    PaymentEvent,
    PaymentStatus,
    SurveyEvent,
    TicketAction,
    TicketEvent,
    TicketPriority,
)
from scoring.model import Band

SECONDS_PER_DAY = 86_400
HORIZON_DAYS = 90
"""Day buckets older than this (relative to the newest event seen) are evicted."""

MAX_TRACKED_USERS = 500
MAX_TRACKED_FEATURES = 200
MAX_OPEN_TICKETS = 200
MAX_UNPAID_INVOICES = 100
RECENT_EVENT_IDS = 64
"""How many recent event ids are remembered to drop producer-side duplicates."""


def day_of(ts: float) -> int:
    """The UTC day number (days since the epoch) of a POSIX timestamp."""
    return int(ts // SECONDS_PER_DAY)


def user_key(user_id: str) -> str:
    """A short stable digest: counting distinct users needs no user id in the state."""
    return hashlib.blake2b(user_id.encode(), digest_size=8).hexdigest()


class SourcePosition(NamedTuple):
    """Where an event was read from; the fence uses it to skip redeliveries."""

    topic: str
    partition: int
    offset: int


class DayBucket(BaseModel):
    """Counts for one UTC day."""

    logins: int = 0
    feature_uses: int = 0
    tickets_opened: int = 0
    payment_failures: int = 0
    survey_sum: float = 0.0
    """Sum of survey answers on the 0-100 scale (see ``SurveyEvent.normalized``)."""
    survey_count: int = 0

    @property
    def usage_events(self) -> int:
        return self.logins + self.feature_uses


class AccountState(BaseModel):
    """Everything the score needs about one account, bounded in size."""

    account_id: str
    days: dict[int, DayBucket] = Field(default_factory=dict)
    """Day number -> counts, for at most ``HORIZON_DAYS`` days up to ``newest_day``."""
    newest_day: int | None = None
    active_users: dict[str, int] = Field(default_factory=dict)
    """Hashed user id -> last active day; least recently active first (insertion order)."""
    features: dict[str, int] = Field(default_factory=dict)
    """Feature -> last day used; least recently used first."""
    open_tickets: dict[str, TicketPriority] = Field(default_factory=dict)
    unpaid_invoices: dict[str, int] = Field(default_factory=dict)
    """Invoice id -> day it became failed or overdue."""
    last_seen: dict[EventKind, float] = Field(default_factory=dict)
    """Kind -> newest event time of that kind (POSIX seconds)."""
    watermark: float | None = None
    """Newest event time seen for the account: the account's clock for scoring."""
    applied_offsets: dict[str, int] = Field(default_factory=dict)
    """``topic/partition`` -> highest source offset applied (the redelivery fence)."""
    recent_event_ids: list[str] = Field(default_factory=list)
    events_applied: int = 0
    last_score: float | None = None
    last_band: Band | None = None


def fold(state: AccountState, event: Event, source: SourcePosition | None = None) -> bool:
    """Apply ``event`` to ``state`` in place; return False if it was already applied.

    Idempotent over at-least-once delivery: an event at or below the highest offset applied
    for its topic-partition, or whose ``event_id`` is among the recent ones, changes nothing.
    """
    fence_key = "" if source is None else f"{source.topic}/{source.partition}"
    if source is not None and state.applied_offsets.get(fence_key, -1) >= source.offset:
        return False
    if event.event_id in state.recent_event_ids:
        return False

    ts = event.occurred_ts
    _advance_clock(state, ts)
    bucket = _bucket_for(state, day_of(ts))
    _apply(state, event, bucket, day_of(ts))

    previous = state.last_seen.get(event.kind)
    if previous is None or ts > previous:
        state.last_seen[event.kind] = ts
    if source is not None:
        state.applied_offsets[fence_key] = source.offset
    state.recent_event_ids.append(event.event_id)
    if len(state.recent_event_ids) > RECENT_EVENT_IDS:
        del state.recent_event_ids[0]
    state.events_applied += 1
    return True


def _advance_clock(state: AccountState, ts: float) -> None:
    if state.watermark is None or ts > state.watermark:
        state.watermark = ts
    day = day_of(ts)
    if state.newest_day is None or day > state.newest_day:
        state.newest_day = day
        # Runs once per new day per account and over at most HORIZON_DAYS keys: amortised O(1).
        oldest_kept = day - HORIZON_DAYS + 1
        for stale in [d for d in state.days if d < oldest_kept]:
            del state.days[stale]


def _bucket_for(state: AccountState, day: int) -> DayBucket | None:
    """The bucket of ``day``, or None when the day is already beyond the horizon."""
    assert state.newest_day is not None
    if day <= state.newest_day - HORIZON_DAYS:
        return None
    bucket = state.days.get(day)
    if bucket is None:
        bucket = state.days[day] = DayBucket()
    return bucket


def _touch_bounded(recency: dict[str, int], key: str, day: int, cap: int) -> None:
    """Record ``key`` as seen on ``day``, keeping ``recency`` ordered least recent first."""
    previous = recency.pop(key, None)
    recency[key] = day if previous is None else max(previous, day)
    if len(recency) > cap:
        del recency[next(iter(recency))]


def _apply(state: AccountState, event: Event, bucket: DayBucket | None, day: int) -> None:
    match event:
        case LoginEvent():
            if bucket is not None:
                bucket.logins += 1
            _touch_bounded(state.active_users, user_key(event.user_id), day, MAX_TRACKED_USERS)
        case FeatureUseEvent():
            if bucket is not None:
                bucket.feature_uses += event.count
            _touch_bounded(state.active_users, user_key(event.user_id), day, MAX_TRACKED_USERS)
            _touch_bounded(state.features, event.feature, day, MAX_TRACKED_FEATURES)
        case TicketEvent():
            _apply_ticket(state, event, bucket)
        case PaymentEvent():
            _apply_payment(state, event, bucket, day)
        case SurveyEvent():
            if bucket is not None:
                bucket.survey_sum += event.normalized
                bucket.survey_count += 1


def _apply_ticket(state: AccountState, event: TicketEvent, bucket: DayBucket | None) -> None:
    state.open_tickets.pop(event.ticket_id, None)
    if event.action is TicketAction.RESOLVED:
        return
    if bucket is not None:
        bucket.tickets_opened += 1
    state.open_tickets[event.ticket_id] = event.priority
    if len(state.open_tickets) > MAX_OPEN_TICKETS:
        del state.open_tickets[next(iter(state.open_tickets))]


def _apply_payment(
    state: AccountState, event: PaymentEvent, bucket: DayBucket | None, day: int
) -> None:
    if event.status in (PaymentStatus.PAID, PaymentStatus.REFUNDED):
        state.unpaid_invoices.pop(event.invoice_id, None)
        return
    if event.status is PaymentStatus.FAILED and bucket is not None:
        bucket.payment_failures += 1
    state.unpaid_invoices.setdefault(event.invoice_id, day)
    if len(state.unpaid_invoices) > MAX_UNPAID_INVOICES:
        del state.unpaid_invoices[next(iter(state.unpaid_invoices))]
