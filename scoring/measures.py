"""Raw metric values of an account at a point in time, from its state.

One pass over the (at most 90) day buckets sums every field for every window the model uses;
each metric is then a few arithmetic operations. ``None`` means "no data" and is what a
measure's missing-data rule applies to.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from scoring.events import EventKind, SurveyType
from scoring.scoring_model import Measure, Metric, ScoringModel
from scoring.state import ATTRIBUTES, SECONDS_PER_DAY, AccountState, day_of


class Windows:
    """Per-window sums of the day-bucket fields, and active days, as of ``today``.

    The sums over the days before ``today`` are kept in the state (``StateCaches.past_windows``) and
    computed again only when the day changes or a late event changes one of those days:
    otherwise an evaluation adds today's bucket to them, whatever the account's history.
    """

    __slots__ = ("active_days", "sums")

    def __init__(self, state: AccountState, windows: tuple[int, ...], today: int) -> None:
        past = state.caches.past_windows
        if past is None or past[0] != today or past[1].windows != windows:
            past = (today, _PastSums(state, windows, today))
            state.caches.past_windows = past
        sums: _PastSums = past[1]
        self.sums = {window: dict(totals) for window, totals in sums.sums.items()}
        self.active_days = dict(sums.active_days)
        bucket = state.days.get(today)
        if bucket is None:
            return
        values = bucket.__dict__
        # Only the fields ever set on a bucket can be non-zero: usually two or three of them.
        fields = [(name, values[name]) for name in bucket.model_fields_set]
        active = bool(bucket.logins or bucket.feature_uses)
        for window, totals in self.sums.items():  # today is within every window
            for name, value in fields:
                totals[name] = totals.get(name, 0) + value
            if active:
                self.active_days[window] += 1

    def total(self, window: int, field: str) -> float:
        return self.sums[window].get(field, 0)


class _PastSums:
    """Sums of the buckets of the days before ``today``, per window: each bucket is added once,
    to the narrowest window holding it; wider windows are running totals of the narrower."""

    __slots__ = ("active_days", "sums", "windows")

    def __init__(self, state: AccountState, windows: tuple[int, ...], today: int) -> None:
        self.windows = windows
        narrowest: list[dict[str, float]] = [{} for _ in windows]
        active = [0] * len(windows)
        widest = windows[-1] if windows else 0
        for day, bucket in state.days.items():
            age = today - day
            if age <= 0 or age >= widest:
                continue  # today (added by Windows), after it, or outside every window
            index = bisect_right(windows, age)
            sums = narrowest[index]
            values = bucket.__dict__
            for name in bucket.model_fields_set:
                sums[name] = sums.get(name, 0) + values[name]
            if bucket.logins or bucket.feature_uses:
                active[index] += 1
        self.sums: dict[int, dict[str, float]] = {}
        self.active_days: dict[int, int] = {}
        running: dict[str, float] = {}
        days = 0
        for index, window in enumerate(windows):
            for name, value in narrowest[index].items():
                running[name] = running.get(name, 0) + value
            days += active[index]
            self.sums[window] = dict(running)
            self.active_days[window] = days


class MetricContext:
    """What the metric functions read: the state, the window sums, the model and the time."""

    __slots__ = ("_distinct", "_windows", "model", "now", "state", "today")

    def __init__(self, state: AccountState, model: ScoringModel, now: float) -> None:
        self.state = state
        self.model = model
        self.now = now
        self.today = day_of(now)
        self._windows: Windows | None = None
        self._distinct: dict[tuple[int, int], int] = {}

    @property
    def windows(self) -> Windows:
        """Built on first use: an evaluation that takes again only the measures the clock
        moves needs none."""
        if self._windows is None:
            self._windows = Windows(self.state, self.model.windows, self.today)
        return self._windows

    def has(self, *kinds: EventKind) -> bool:
        seen = self.state.last_seen
        for kind in kinds:  # noqa: SIM110 - a loop, not any(): about 15 calls per evaluation
            if kind in seen:
                return True
        return False

    def distinct_since(self, last_days: Counter[int], window: int) -> int:
        """Keys seen within ``window`` days, from their count per last day seen
        (``AccountState.user_days``); several measures ask for the same count, so it is
        computed once per evaluation."""
        cache_key = (id(last_days), window)
        count = self._distinct.get(cache_key)
        if count is None:
            since, today = self.today - window, self.today
            count = sum(n for day, n in last_days.items() if since < day <= today)
            self._distinct[cache_key] = count
        return count


_USAGE = (EventKind.LOGIN, EventKind.FEATURE_USE)

MIN_SCALED_DAYS = 7
"""A usage count over a window longer than the account's data is scaled up to the window as
if the account had this many days of data at least: its first day counts as a week."""
SCALED_METRICS = frozenset(
    {Metric.LOGINS, Metric.FEATURE_USES, Metric.ACTIVE_DAYS, Metric.LOGINS_PER_SEAT}
)
"""Usage that accumulates with time: a new account has not had the whole window to fill.
Distinct counts (users, features) and counts of bad events are taken as they are."""


def data_days(state: AccountState, now: float) -> int | None:
    """Days of data the account has at ``now``, counting the day of its first event."""
    first = state.first_seen
    return None if first is None else max(1, day_of(now) - day_of(first) + 1)


def scaled_window(measure: Measure) -> int | None:
    """The window of a usage count that an account with fewer days of data has not filled
    (its value is scaled up, ``MIN_SCALED_DAYS``); None for any other measure."""
    window = measure.window_days
    if measure.metric not in SCALED_METRICS or window is None or window <= MIN_SCALED_DAYS:
        return None
    return window


def scaled_from(state: AccountState, measure: Measure, now: float) -> int | None:
    """The days of data ``measure``'s value is scaled up from, when the account has fewer
    days of data than the measure's window; None when it is not."""
    window = scaled_window(measure)
    if window is None:
        return None
    days = data_days(state, now)
    return days if days is not None and days < window else None


def _scale(ctx: MetricContext, m: Measure) -> float:
    days = scaled_from(ctx.state, m, ctx.now)
    assert m.window_days is not None
    return 1.0 if days is None else m.window_days / max(days, MIN_SCALED_DAYS)


def _windowed(ctx: MetricContext, measure: Measure, field: str, *kinds: EventKind) -> float | None:
    if not ctx.has(*kinds):
        return None
    assert measure.window_days is not None
    return ctx.windows.total(measure.window_days, field)


def _usage_count(ctx: MetricContext, m: Measure, field: str) -> float | None:
    total = _windowed(ctx, m, field, *_USAGE)
    return None if total is None else total * _scale(ctx, m)


def _active_days(ctx: MetricContext, m: Measure) -> float | None:
    if not ctx.has(*_USAGE):
        return None
    assert m.window_days is not None
    active = ctx.windows.active_days[m.window_days] * _scale(ctx, m)
    return float(min(active, m.window_days))


def _active_users(ctx: MetricContext, m: Measure) -> float | None:
    if not ctx.has(*_USAGE):
        return None
    assert m.window_days is not None
    return float(ctx.distinct_since(ctx.state.user_days(), m.window_days))


def _seat_utilisation(ctx: MetricContext, m: Measure) -> float | None:
    attributes = ctx.state.attributes
    users = _active_users(ctx, m)
    if users is None or attributes is None or not attributes.seats:
        return None
    return 100.0 * users / attributes.seats


def _logins_per_seat(ctx: MetricContext, m: Measure) -> float | None:
    attributes = ctx.state.attributes
    logins = _usage_count(ctx, m, "logins")
    if logins is None or attributes is None or not attributes.seats:
        return None
    return logins / attributes.seats


def _days_since_last_login(ctx: MetricContext, m: Measure) -> float | None:
    last = ctx.state.last_seen.get(EventKind.LOGIN)
    return None if last is None else max(0.0, (ctx.now - last) / SECONDS_PER_DAY)


def _usage_trend(ctx: MetricContext, m: Measure) -> float | None:
    """Usage of the recent window as % of the rate over the baseline just before it."""
    if not ctx.has(*_USAGE):
        return None
    assert m.window_days is not None
    assert m.baseline_days is not None
    windows = ctx.windows
    recent = windows.total(m.window_days, "logins") + windows.total(m.window_days, "feature_uses")
    span = m.window_days + m.baseline_days
    whole = windows.total(span, "logins") + windows.total(span, "feature_uses")
    baseline = whole - recent
    if baseline <= 0:
        return None
    return 100.0 * recent / (baseline * m.window_days / m.baseline_days)


def _feature_breadth(ctx: MetricContext, m: Measure) -> float | None:
    if not ctx.has(EventKind.FEATURE_USE):
        return None
    assert m.window_days is not None
    return float(ctx.distinct_since(ctx.state.feature_days(), m.window_days))


def _feature_depth(ctx: MetricContext, m: Measure) -> float | None:
    users = _active_users(ctx, m)
    if users is None or not ctx.has(EventKind.FEATURE_USE):
        return None
    assert m.window_days is not None
    return ctx.windows.total(m.window_days, "feature_uses") / users if users else 0.0


def _uses_per_login(ctx: MetricContext, m: Measure) -> float | None:
    logins = _windowed(ctx, m, "logins", *_USAGE)
    if not logins:
        return None
    assert m.window_days is not None
    return ctx.windows.total(m.window_days, "feature_uses") / logins


def _sticky_features(ctx: MetricContext, m: Measure) -> float | None:
    sticky = ctx.model.sticky_features
    if not sticky or not ctx.has(EventKind.FEATURE_USE):
        return None
    assert m.window_days is not None
    since = ctx.today - m.window_days
    used = sum(1 for f in sticky if since < ctx.state.features.get(f, since) <= ctx.today)
    return 100.0 * used / len(sticky)


def _count(ctx: MetricContext, m: Measure, field: str) -> float:
    """A count of bad events (tickets, failed payments, refunds): an empty window is zero,
    also for an account that never had one, so the first such event always counts against
    the account (it cannot bring a component into the score above the rest)."""
    assert m.window_days is not None
    return ctx.windows.total(m.window_days, field)


def _open_tickets(ctx: MetricContext, m: Measure) -> float | None:
    return float(len(ctx.state.open_tickets))


def _open_urgent_tickets(ctx: MetricContext, m: Measure) -> float | None:
    return float(ctx.state.urgent_open_tickets())


def _time_to_resolve(ctx: MetricContext, m: Measure) -> float | None:
    resolved = _windowed(ctx, m, "tickets_resolved", EventKind.TICKET)
    if not resolved:
        return None
    assert m.window_days is not None
    return ctx.windows.total(m.window_days, "resolve_hours") / resolved


def _days_overdue(ctx: MetricContext, m: Measure) -> float | None:
    if not ctx.state.unpaid_invoices:
        return 0.0
    return float(max(0, ctx.today - min(ctx.state.unpaid_invoices.values())))


def _survey_latest(survey: SurveyType) -> Callable[[MetricContext, Measure], float | None]:
    def latest(ctx: MetricContext, m: Measure) -> float | None:
        answer = ctx.state.latest_surveys.get(survey)
        assert m.window_days is not None
        if answer is None or ctx.now - answer.at >= m.window_days * SECONDS_PER_DAY:
            return None
        return float(answer.score)

    return latest


def _survey_average(survey: SurveyType) -> Callable[[MetricContext, Measure], float | None]:
    prefix = survey.value

    def average(ctx: MetricContext, m: Measure) -> float | None:
        assert m.window_days is not None
        count = ctx.windows.total(m.window_days, f"{prefix}_count")
        return ctx.windows.total(m.window_days, f"{prefix}_sum") / count if count else None

    return average


def _tenure_days(ctx: MetricContext, m: Measure) -> float | None:
    return tenure_days(ctx.state, ctx.now)


def tenure_days(state: AccountState, now: float) -> float | None:
    """Days as a customer: from ``customer_since`` if the CRM gives it, else since the first
    event."""
    attributes = state.attributes
    if attributes is not None and attributes.customer_since is not None:
        since = attributes.customer_since.toordinal() - 719_163  # 1970-01-01 as day 0
        return float(max(0, day_of(now) - since))
    first = state.first_seen
    return None if first is None else max(0.0, (now - first) / SECONDS_PER_DAY)


METRICS: dict[Metric, Callable[[MetricContext, Measure], float | None]] = {
    Metric.LOGINS: lambda ctx, m: _usage_count(ctx, m, "logins"),
    Metric.FEATURE_USES: lambda ctx, m: _usage_count(ctx, m, "feature_uses"),
    Metric.ACTIVE_DAYS: _active_days,
    Metric.ACTIVE_USERS: _active_users,
    Metric.SEAT_UTILISATION: _seat_utilisation,
    Metric.LOGINS_PER_SEAT: _logins_per_seat,
    Metric.DAYS_SINCE_LAST_LOGIN: _days_since_last_login,
    Metric.USAGE_TREND: _usage_trend,
    Metric.FEATURE_BREADTH: _feature_breadth,
    Metric.FEATURE_DEPTH: _feature_depth,
    Metric.USES_PER_LOGIN: _uses_per_login,
    Metric.STICKY_FEATURES: _sticky_features,
    Metric.TICKETS_OPENED: lambda ctx, m: _count(ctx, m, "tickets_opened"),
    Metric.OPEN_TICKETS: _open_tickets,
    Metric.OPEN_URGENT_TICKETS: _open_urgent_tickets,
    Metric.TIME_TO_RESOLVE_HOURS: _time_to_resolve,
    Metric.PAYMENT_FAILURES: lambda ctx, m: _count(ctx, m, "payment_failures"),
    Metric.DAYS_OVERDUE: _days_overdue,
    Metric.REFUNDS: lambda ctx, m: _count(ctx, m, "refunds"),
    Metric.NPS_LATEST: _survey_latest(SurveyType.NPS),
    Metric.NPS_AVERAGE: _survey_average(SurveyType.NPS),
    Metric.CSAT_LATEST: _survey_latest(SurveyType.CSAT),
    Metric.CSAT_AVERAGE: _survey_average(SurveyType.CSAT),
    Metric.CES_LATEST: _survey_latest(SurveyType.CES),
    Metric.CES_AVERAGE: _survey_average(SurveyType.CES),
    Metric.TENURE_DAYS: _tenure_days,
}


def metric_value(ctx: MetricContext, measure: Measure) -> float | None:
    return METRICS[measure.metric](ctx, measure)


@dataclass(frozen=True, slots=True)
class Moves:
    """What can move a metric's value: the inputs (event kinds whose fold changes what it
    reads, ``ATTRIBUTES``), the day changing (its windows slide), or the clock at any moment
    (a time since something, a window's edge passing an answer): such a metric is taken
    again at every evaluation, the others only once one of their inputs or the day moved."""

    inputs: frozenset[str]
    clock: bool = False


_USAGE_MOVES = Moves(frozenset(_USAGE))
_SEATS_MOVES = Moves(frozenset({*_USAGE, ATTRIBUTES}))
_FEATURE_MOVES = Moves(frozenset({EventKind.FEATURE_USE}))
_TICKET_MOVES = Moves(frozenset({EventKind.TICKET}))
_PAYMENT_MOVES = Moves(frozenset({EventKind.PAYMENT}))
_SURVEY_MOVES = Moves(frozenset({EventKind.SURVEY}))

METRIC_MOVES: dict[Metric, Moves] = {
    Metric.LOGINS: _USAGE_MOVES,
    Metric.FEATURE_USES: _USAGE_MOVES,
    Metric.ACTIVE_DAYS: _USAGE_MOVES,
    Metric.ACTIVE_USERS: _USAGE_MOVES,
    Metric.SEAT_UTILISATION: _SEATS_MOVES,
    Metric.LOGINS_PER_SEAT: _SEATS_MOVES,
    Metric.DAYS_SINCE_LAST_LOGIN: Moves(frozenset({EventKind.LOGIN}), clock=True),
    Metric.USAGE_TREND: _USAGE_MOVES,
    Metric.FEATURE_BREADTH: _FEATURE_MOVES,
    Metric.FEATURE_DEPTH: _USAGE_MOVES,
    Metric.USES_PER_LOGIN: _USAGE_MOVES,
    Metric.STICKY_FEATURES: _FEATURE_MOVES,
    Metric.TICKETS_OPENED: _TICKET_MOVES,
    Metric.OPEN_TICKETS: _TICKET_MOVES,
    Metric.OPEN_URGENT_TICKETS: _TICKET_MOVES,
    Metric.TIME_TO_RESOLVE_HOURS: _TICKET_MOVES,
    Metric.PAYMENT_FAILURES: _PAYMENT_MOVES,
    Metric.DAYS_OVERDUE: _PAYMENT_MOVES,
    Metric.REFUNDS: _PAYMENT_MOVES,
    Metric.NPS_LATEST: Moves(_SURVEY_MOVES.inputs, clock=True),
    Metric.NPS_AVERAGE: _SURVEY_MOVES,
    Metric.CSAT_LATEST: Moves(_SURVEY_MOVES.inputs, clock=True),
    Metric.CSAT_AVERAGE: _SURVEY_MOVES,
    Metric.CES_LATEST: Moves(_SURVEY_MOVES.inputs, clock=True),
    Metric.CES_AVERAGE: _SURVEY_MOVES,
    Metric.TENURE_DAYS: Moves(frozenset({ATTRIBUTES, *EventKind}), clock=True),
}
