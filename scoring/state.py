"""Per-account rolling state and the folds that apply one input to it.

``AccountState`` is a compact value whose size is bounded whatever the account's history:
day buckets for the last ``HORIZON_DAYS`` days, small bounded maps where a measure needs distinct
values, the account's attributes and CSM override, what its last ScoreUpdate said, a daily
history of closing scores, and an idempotency fence. Every fold costs O(1): each loop in it
runs over a bounded container, never over the account's history.

Time is always a parameter (POSIX seconds); nothing here reads a clock.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import BaseModel, Field, PrivateAttr, field_serializer, field_validator

from scoring.events import (
    AccountAttributes,
    CsmOverride,
    Event,
    EventKind,
    FeatureUseEvent,
    LoginEvent,
    OutcomeEvent,
    OutcomeKind,
    OverrideAction,
    PaymentEvent,
    PaymentStatus,
    SurveyEvent,
    SurveyType,
    TicketAction,
    TicketEvent,
    TicketPriority,
)

SECONDS_PER_DAY = 86_400
HORIZON_DAYS = 90
"""Day buckets older than this (relative to the newest event seen) are evicted."""
URGENT_PRIORITIES = (TicketPriority.HIGH, TicketPriority.URGENT)

MAX_TRACKED_USERS = 500
MAX_TRACKED_FEATURES = 200
MAX_OPEN_TICKETS = 200
MAX_UNPAID_INVOICES = 100
RECENT_EVENT_IDS = 64
"""How many recent event ids are remembered to drop producer-side duplicates."""
ID_DIGEST_CHARS = 8
"""An event id is remembered as 8 characters: the base64 of a 48-bit digest. Ids are often
longer (a UUID is 36), and the list is written with every change of the state; the chance
that a new event's digest matches one of the 64 kept is about 2e-13."""
ATTRIBUTES = "attributes"
"""What an attributes snapshot moves, beside the event kinds (``StateCaches.moved``)."""


def day_of(ts: float) -> int:
    """The UTC day number (days since the epoch) of a POSIX timestamp."""
    return int(ts // SECONDS_PER_DAY)


def user_key(user_id: str) -> str:
    """A short stable digest: counting distinct users needs no user id in the state."""
    return hashlib.blake2b(user_id.encode(), digest_size=8).hexdigest()


class SourcePosition(NamedTuple):
    """Where an input was read from; the fence uses it to skip redeliveries."""

    topic: str
    partition: int
    offset: int


class DayBucket(BaseModel):
    """Counts for one UTC day."""

    logins: int = 0
    feature_uses: int = 0
    tickets_opened: int = 0
    tickets_resolved: int = 0
    resolve_hours: float = 0.0
    """Sum of open-to-resolved hours of the tickets resolved that day."""
    payment_failures: int = 0
    refunds: int = 0
    nps_sum: int = 0
    nps_count: int = 0
    csat_sum: int = 0
    csat_count: int = 0
    ces_sum: int = 0
    ces_count: int = 0


DAY_FIELDS = tuple(DayBucket.model_fields)

DayRow = list[int | float]
"""A day bucket as stored: its counts in ``DAY_FIELDS`` order, trailing zeros left out."""


def day_row(bucket: DayBucket) -> DayRow:
    row: DayRow = list(bucket.__dict__.values())
    while row and not row[-1]:
        row.pop()
    return row


def day_bucket(stored: object) -> object:
    """A stored bucket as ``DayBucket`` validates it: a row, or a mapping (the older form)."""
    return dict(zip(DAY_FIELDS, stored, strict=False)) if isinstance(stored, list) else stored


class OpenTicket(BaseModel):
    priority: TicketPriority
    opened_at: float


class SurveyAnswer(BaseModel):
    score: int
    at: float


class ActiveOverride(BaseModel):
    override_id: str
    author: str
    reason: str
    score: float
    set_at: float
    expires_at: float


class Published(BaseModel):
    """What the account's last ScoreUpdate said: change detection and drivers start here."""

    score: float
    band: str
    stale: bool = False
    segment: str | None = None
    contributions: dict[str, float] = Field(default_factory=dict)
    """Read from states published before ``component_scores`` and ``shares`` were kept
    (share x score: no longer written)."""
    measures: dict[str, float] = Field(default_factory=dict)
    """Raw value of each measure that had data."""
    component_scores: dict[str, float] = Field(default_factory=dict)
    shares: dict[str, float] = Field(default_factory=dict)
    """Each component's share of the score."""
    measure_scores: dict[str, float] = Field(default_factory=dict)
    peer_medians: dict[str, float] = Field(default_factory=dict)
    """Peer-relative measures ranked among peers: the peers' median raw value."""
    onboarding: bool = False
    override_id: str | None = None
    at: float = 0.0
    reasons: list[str] = Field(default_factory=list)
    """The notes and drivers of the last change in words, for alerts raised later."""


class ChildEntry(BaseModel):
    """A child's latest report to its parent (``scoring.rollup.ChildReport``)."""

    score: float | None = None
    """None while the child has no score yet."""
    band: str | None = None
    stale: bool = False
    mrr: float | None = None
    at: float = 0.0
    """The child's evaluation time of the report: an older report is ignored."""


class AlertMemory(BaseModel):
    """What the alert rules remember about an account (``alerts.rules``)."""

    band_rank: int | None = None
    """The band alerting believes in (0 = best), moved only past the hysteresis margin."""
    pending_rank: int | None = None
    """A band the score has entered but not held for the minimum time yet..."""
    pending_since: float | None = None
    """...and since when."""
    last_fired: dict[str, float] = Field(default_factory=dict)
    """Rule key -> time it last fired, for cooldowns."""
    daily_highs: dict[int, float] = Field(default_factory=dict)
    """Day -> highest score that day, for sharp-drop detection (a month at most)."""
    stale_alerted: bool = False
    alerted_rank: int | None = None
    """The worst band a band alert has told of and the account has not recovered from."""
    onboarding: bool = False
    """The account was new at its last evaluation."""


class OutcomeMark(BaseModel):
    """An outcome the account had (``OutcomeEvent``), for the audit's counts."""

    outcome: OutcomeKind
    day: int


class LeadResult(BaseModel):
    """How a churner's score ``lead`` days before its churn ranked among the accounts alive
    that day that had not churned (``scoring.audit``): its share of the AUC and the lift."""

    score: float
    above: float
    """Share of those accounts that scored higher, ties counted half (its AUC)."""
    bottom: float
    """How much of it fell in their lowest-scored decile (0-1)."""
    survivors: int
    """How many accounts it was compared with."""


class StateCaches:
    """Derived from an account's state to spare the folds and the evaluation work; rebuilt
    on first use after a load, never stored."""

    __slots__ = (
        "feature_days",
        "late_folds",
        "measured",
        "moved",
        "past_windows",
        "urgent_open",
        "user_days",
    )

    def __init__(self) -> None:
        self.user_days: Counter[int] | None = None
        self.feature_days: Counter[int] | None = None
        """Last day -> how many users (features) have it as their last: counting those seen in
        a window then costs the distinct days, not the (up to 500) keys. Built on first use
        (``AccountState.user_days``), then kept by the folds."""
        self.urgent_open: int | None = None
        """Open tickets of high or urgent priority; counted again after a ticket event."""
        self.past_windows: tuple[int, Any] | None = None
        """(day, sums of the day buckets before it) kept by the evaluation
        (``scoring.measures``), which then adds only that day's bucket. Dropped when a bucket
        before that day changes or leaves the horizon."""
        self.measured: Any = None
        """The last evaluation's measures that only inputs or the day can move
        (``scoring.score``), reused by the next. Dropped when a bucket leaves the horizon."""
        self.late_folds = 0
        """Events folded into a day before the newest: what, beside the days moving, changes
        the closed days (``streams/worker/state_records.py`` writes them again only then)."""
        self.moved: set[str] = set()
        """The inputs (event kinds, ``ATTRIBUTES``) folded since ``measured`` was taken: the
        measures the next evaluation must take again."""

    def __eq__(self, other: object) -> bool:
        # Derived data: two states are equal whatever their caches hold (pydantic compares
        # private attributes too).
        return other is None or isinstance(other, StateCaches)

    __hash__ = None  # type: ignore[assignment]


class AccountState(BaseModel):
    """Everything the score needs about one account, bounded in size."""

    account_id: str
    partition: int | None = None
    """The partition the account's inputs arrive on (the timer schedules per partition)."""
    days: dict[int, DayBucket] = Field(default_factory=dict)
    """Day number -> counts, for at most ``HORIZON_DAYS`` days up to ``newest_day``."""
    newest_day: int | None = None
    active_users: dict[str, int] = Field(default_factory=dict)
    """Hashed user id -> last active day; least recently active first (insertion order)."""
    features: dict[str, int] = Field(default_factory=dict)
    """Feature -> last day used; least recently used first."""
    open_tickets: dict[str, OpenTicket] = Field(default_factory=dict)
    unpaid_invoices: dict[str, int] = Field(default_factory=dict)
    """Invoice id -> day it became failed or overdue."""
    latest_surveys: dict[SurveyType, SurveyAnswer] = Field(default_factory=dict)
    last_seen: dict[EventKind, float] = Field(default_factory=dict)
    """Kind -> newest event time of that kind (POSIX seconds)."""
    first_seen: float | None = None
    watermark: float | None = None
    """Newest event time seen for the account: staleness is measured from it."""
    attributes: AccountAttributes | None = None
    override: ActiveOverride | None = None
    applied_offsets: dict[str, int] = Field(default_factory=dict)
    """``topic/partition`` -> highest source offset applied (the redelivery fence)."""
    recent_event_ids: str = ""
    """Digests of the last ``RECENT_EVENT_IDS`` event ids (``id_digest``), oldest first, run
    together. A list of the ids themselves (the older form) loads as their digests."""
    events_applied: int = 0
    published: Published | None = None
    history: dict[int, float] = Field(default_factory=dict)
    """Day number -> closing score of that day, for the last ``HORIZON_DAYS`` days."""
    alerts: AlertMemory = Field(default_factory=AlertMemory)
    peer_day: int | None = None
    """The day its values last went into the peer sketches (``scoring.peers``): once a day."""
    churn_at: float | None = None
    """When a ``churned`` outcome says it left (event time, the earliest of them): its inputs
    from before then are its history whatever order they arrive in; later ones are skipped."""
    churned_day: int | None = None
    """The day of ``churn_at``, once the account's time has reached it (``take_churn``): from
    then on it is no longer scored nor alerted on."""
    outcomes: list[OutcomeMark] = Field(default_factory=list)
    """Its outcomes within the audit window, oldest first (the audit keeps it bounded)."""
    trails: dict[str, list[float]] = Field(default_factory=dict)
    """Model version (the live model's and each shadow's) -> closing score of each day up to
    ``trail_end``, oldest first: the audit's history (``scoring.audit``)."""
    trail_end: int | None = None
    audit_day: int | None = None
    """The last day whose closing scores are in its partition's audit book; None while they
    are in none (before its first complete day, and once it churned)."""
    audit: dict[str, dict[int, LeadResult]] = Field(default_factory=dict)
    """A churner's results once its churn is settled: model version -> lead days -> result."""
    children: dict[str, ChildEntry] = Field(default_factory=dict)
    """A parent's children (account id -> its latest report): what its roll-up is of."""
    reported_parent: str | None = None
    """The parent this account last reported to: told when the account leaves it."""
    # One private attribute, made on first use: pydantic (2.13) spends microseconds per
    # private attribute on every instance it builds, which was most of the cost of reading a
    # state back after a restart.
    _caches: StateCaches | None = PrivateAttr(default=None)

    @property
    def caches(self) -> StateCaches:
        """What the folds and the evaluation keep beside the state (never stored)."""
        caches = self._caches
        if caches is None:
            caches = self._caches = StateCaches()
        return caches

    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any:
            # pydantic's own lookup of a private attribute first asks it for ``__get__``,
            # which costs a raised AttributeError on every read of the caches above (about
            # 6 % of the scoring path); none of them is a descriptor.
            try:
                return self.__pydantic_private__[name]
            except (KeyError, TypeError):
                return super().__getattr__(name)

    @field_serializer("days", when_used="json")
    def _days_as_rows(self, days: dict[int, DayBucket]) -> dict[int, DayRow]:
        """Rows, not objects, in the table: 90 days of a busy account took about 6 KB as
        objects with their field names, and about 1.5 KB as rows."""
        return {day: day_row(bucket) for day, bucket in days.items()}

    @field_validator("recent_event_ids", mode="before")
    @classmethod
    def _ids_as_digests(cls, ids: object) -> object:
        if isinstance(ids, list):
            return "".join(id_digest(str(i)) for i in ids[-RECENT_EVENT_IDS:])
        return ids

    @field_validator("days", mode="before")
    @classmethod
    def _days_from_rows(cls, days: object) -> object:
        if isinstance(days, dict):
            return {day: day_bucket(stored) for day, stored in days.items()}
        return days

    def user_days(self) -> Counter[int]:
        if self.caches.user_days is None:
            self.caches.user_days = Counter(self.active_users.values())
        return self.caches.user_days

    def feature_days(self) -> Counter[int]:
        if self.caches.feature_days is None:
            self.caches.feature_days = Counter(self.features.values())
        return self.caches.feature_days

    def urgent_open_tickets(self) -> int:
        if self.caches.urgent_open is None:
            tickets = self.open_tickets.values()
            self.caches.urgent_open = sum(1 for t in tickets if t.priority in URGENT_PRIORITIES)
        return self.caches.urgent_open


def id_digest(event_id: str) -> str:
    digest = hashlib.blake2b(event_id.encode(), digest_size=6).digest()
    return base64.b64encode(digest).decode()


def _seen(recent: str, digest: str) -> bool:
    """Whether ``digest`` is one of the digests run together in ``recent``."""
    at = recent.find(digest)
    while at != -1:
        if at % ID_DIGEST_CHARS == 0:
            return True
        at = recent.find(digest, at + 1)
    return False


def admits(state: AccountState, source: SourcePosition | None, input_id: str | None) -> bool:
    """False for an input already applied: a redelivered offset or a repeated id."""
    if source is not None:
        applied = state.applied_offsets.get(f"{source.topic}/{source.partition}", -1)
        if applied >= source.offset:
            return False
    return input_id is None or not _seen(state.recent_event_ids, id_digest(input_id))


def record(state: AccountState, source: SourcePosition | None, input_id: str | None) -> None:
    """Remember that an input was applied (see ``admits``)."""
    if source is not None:
        state.applied_offsets[f"{source.topic}/{source.partition}"] = source.offset
        state.partition = source.partition
    if input_id is not None:
        kept = state.recent_event_ids[-(RECENT_EVENT_IDS - 1) * ID_DIGEST_CHARS :]
        state.recent_event_ids = kept + id_digest(input_id)


def fold(state: AccountState, event: Event, source: SourcePosition | None = None) -> bool:
    """Apply ``event`` to ``state`` in place; return False if it was already applied.

    Idempotent over at-least-once delivery: an event at or below the highest offset applied
    for its topic-partition, or whose ``event_id`` is among the recent ones, changes nothing.
    Late events land in the bucket of the day they occurred (if still within the horizon).
    """
    if not admits(state, source, event.event_id):
        return False
    ts = event.occurred_ts
    _advance_clock(state, ts)
    day = day_of(ts)
    past = state.caches.past_windows
    if past is not None and day < past[0]:
        state.caches.past_windows = None  # a late event changed a day the sums hold
    _apply(state, event, _bucket_for(state, day), day, ts)
    if state.newest_day is not None and day < state.newest_day:
        state.caches.late_folds += 1
    _moved(state, event.kind)
    previous = state.last_seen.get(event.kind)
    if previous is None or ts > previous:
        state.last_seen[event.kind] = ts
    if state.first_seen is None or ts < state.first_seen:
        state.first_seen = ts
    record(state, source, event.event_id)
    state.events_applied += 1
    return True


def apply_attributes(
    state: AccountState, attributes: AccountAttributes, source: SourcePosition | None = None
) -> bool:
    """Replace the account's attributes with a newer snapshot; False if stale or seen."""
    if not admits(state, source, None):
        return False
    record(state, source, None)
    current = state.attributes
    if current is not None and current.updated_at >= attributes.updated_at:
        return False
    state.attributes = attributes
    _moved(state, ATTRIBUTES)
    return True


class OverrideConflict(Exception):
    """A 'set' override while another is active, without naming it in ``replaces``."""


def apply_override(
    state: AccountState, override: CsmOverride, now: float, source: SourcePosition | None = None
) -> bool:
    """Set or clear the CSM override; False if already applied.

    Raises ``OverrideConflict`` rather than silently overwrite an active override.
    """
    if not admits(state, source, override.event_id):
        return False
    active = state.override if state.override and state.override.expires_at > now else None
    if override.action is OverrideAction.SET:
        if active is not None and override.replaces != active.override_id:
            raise OverrideConflict(
                f"an override by {active.author} ({active.override_id}) is active; "
                f"set replaces={active.override_id!r} to replace it"
            )
        assert override.score is not None
        assert override.expires_at is not None
        state.override = ActiveOverride(
            override_id=override.event_id,
            author=override.author,
            reason=override.reason,
            score=override.score,
            set_at=override.occurred_at.timestamp(),
            expires_at=override.expires_at.timestamp(),
        )
    else:
        state.override = None
    record(state, source, override.event_id)
    return True


def apply_outcome(
    state: AccountState, event: OutcomeEvent, source: SourcePosition | None = None
) -> bool:
    """Record an outcome; a churn is noted for its time (``take_churn`` applies it once the
    account's time reaches it). False if already applied."""
    if not admits(state, source, event.event_id):
        return False
    at = event.occurred_ts
    state.outcomes.append(OutcomeMark(outcome=event.outcome, day=day_of(at)))
    if event.outcome is OutcomeKind.CHURNED and state.churned_day is None:
        state.churn_at = at if state.churn_at is None else min(state.churn_at, at)
    record(state, source, event.event_id)
    return True


def after_churn(state: AccountState, at: float) -> bool:
    """Whether something at ``at`` (event time) happened once the account had left."""
    return state.churn_at is not None and at >= state.churn_at


def take_churn(state: AccountState, now: float) -> bool:
    """The account leaves once its time ``now`` reaches its churn; True when it does now."""
    if state.churned_day is not None or not after_churn(state, now):
        return False
    assert state.churn_at is not None
    state.churned_day = day_of(state.churn_at)
    return True


def record_closing_score(state: AccountState, score: float, now: float) -> None:
    """Keep ``score`` as the closing score of ``now``'s day; drop days past the horizon."""
    today = day_of(now)
    if today not in state.history and state.history:
        oldest_kept = today - HORIZON_DAYS + 1
        for stale in [d for d in state.history if d < oldest_kept]:
            del state.history[stale]
    state.history[today] = score


def _moved(state: AccountState, what: str) -> None:
    """Tell the evaluation's reused measures (if any) that ``what`` moved."""
    caches = state.caches
    if caches.measured is not None:
        caches.moved.add(what)


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
            state.caches.past_windows = state.caches.measured = None


def _bucket_for(state: AccountState, day: int) -> DayBucket | None:
    """The bucket of ``day``, or None when the day is already beyond the horizon."""
    assert state.newest_day is not None
    if day <= state.newest_day - HORIZON_DAYS:
        return None
    bucket = state.days.get(day)
    if bucket is None:
        bucket = state.days[day] = DayBucket()
    return bucket


def _touch_bounded(
    recency: dict[str, int], days: Counter[int] | None, key: str, day: int, cap: int
) -> None:
    """Record ``key`` as seen on ``day``, keeping ``recency`` ordered least recent first, and
    ``days`` (its count of keys per last day, when built) in step."""
    previous = recency.pop(key, None)
    last = recency[key] = day if previous is None else max(previous, day)
    if days is not None:
        if previous is not None:
            _uncount(days, previous)
        days[last] += 1
    if len(recency) > cap:
        evicted = recency.pop(next(iter(recency)))
        if days is not None:
            _uncount(days, evicted)


def _uncount(days: Counter[int], day: int) -> None:
    days[day] -= 1
    if not days[day]:
        del days[day]


def _touch_user(state: AccountState, user_id: str, day: int) -> None:
    users, days = state.active_users, state.caches.user_days
    _touch_bounded(users, days, user_key(user_id), day, MAX_TRACKED_USERS)


def _apply(
    state: AccountState, event: Event, bucket: DayBucket | None, day: int, ts: float
) -> None:
    match event:
        case LoginEvent():
            if bucket is not None:
                bucket.logins += 1
            _touch_user(state, event.user_id, day)
        case FeatureUseEvent():
            if bucket is not None:
                bucket.feature_uses += event.count
            _touch_user(state, event.user_id, day)
            _touch_bounded(
                state.features, state.caches.feature_days, event.feature, day, MAX_TRACKED_FEATURES
            )
        case TicketEvent():
            _apply_ticket(state, event, bucket, ts)
        case PaymentEvent():
            _apply_payment(state, event, bucket, day)
        case SurveyEvent():
            _apply_survey(state, event, bucket, ts)


def _apply_ticket(
    state: AccountState, event: TicketEvent, bucket: DayBucket | None, ts: float
) -> None:
    state.caches.urgent_open = None
    opened = state.open_tickets.pop(event.ticket_id, None)
    if event.action is TicketAction.RESOLVED:
        if opened is not None and bucket is not None:
            bucket.tickets_resolved += 1
            bucket.resolve_hours += max(0.0, ts - opened.opened_at) / 3600.0
        return
    if bucket is not None:
        bucket.tickets_opened += 1
    state.open_tickets[event.ticket_id] = OpenTicket(priority=event.priority, opened_at=ts)
    if len(state.open_tickets) > MAX_OPEN_TICKETS:
        del state.open_tickets[next(iter(state.open_tickets))]


def _apply_payment(
    state: AccountState, event: PaymentEvent, bucket: DayBucket | None, day: int
) -> None:
    if event.status is PaymentStatus.REFUNDED and bucket is not None:
        bucket.refunds += 1
    if event.status in (PaymentStatus.PAID, PaymentStatus.REFUNDED):
        state.unpaid_invoices.pop(event.invoice_id, None)
        return
    if bucket is not None:
        bucket.payment_failures += 1
    state.unpaid_invoices.setdefault(event.invoice_id, day)
    if len(state.unpaid_invoices) > MAX_UNPAID_INVOICES:
        del state.unpaid_invoices[next(iter(state.unpaid_invoices))]


def _apply_survey(
    state: AccountState, event: SurveyEvent, bucket: DayBucket | None, ts: float
) -> None:
    if bucket is not None:
        match event.survey:
            case SurveyType.NPS:
                bucket.nps_sum += event.score
                bucket.nps_count += 1
            case SurveyType.CSAT:
                bucket.csat_sum += event.score
                bucket.csat_count += 1
            case SurveyType.CES:
                bucket.ces_sum += event.score
                bucket.ces_count += 1
    latest = state.latest_surveys.get(event.survey)
    if latest is None or ts >= latest.at:
        state.latest_surveys[event.survey] = SurveyAnswer(score=event.score, at=ts)
