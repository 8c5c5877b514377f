"""Alert rules, pure: an observation of an account's score + its memory -> alerts.

- band change: into a worse band (warning; critical for the worst band) or, optionally, a
  better one (info): the published band, which has the model's hysteresis (a band is left
  only past its threshold by ``band_margin_points``), held for a minimum time, with a
  cooldown per account and band;
- sharp drop: the score fell by N points or more from its high of the last days;
- critical events: an event matching a rule (a failed payment, an urgent ticket in a segment);
- stale: no data for the account any more.

A score wobbling around a threshold therefore yields one alert, not twenty. ``check`` updates
the memory (kept in the account's state) in place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from alerts.alert import Alert, alert_id
from alerts.config import AlertRules, CriticalEventRule, Severity
from scoring.events import (
    BaseEvent,
    FeatureUseEvent,
    LoginEvent,
    PaymentEvent,
    SurveyEvent,
    TicketEvent,
)
from scoring.scoring_model import Threshold, rank_for
from scoring.state import SECONDS_PER_DAY, AlertMemory, day_of

HOUR = 3600.0
MONTH_OF_DAYS = 31


@dataclass(frozen=True, slots=True)
class Words:
    """An observation's explanation in words: built only for an alert (``Observation.words``)."""

    reasons: Sequence[str] = ()
    """Why the score last moved."""
    drags: Sequence[str] = ()
    """What pulls the score down: band and drop alerts lead with it."""
    by_kind: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Event kind -> the drivers of the components events of that kind move: what a
    critical event did to the score."""


def _no_words() -> Words:
    return Words()


@dataclass(frozen=True)
class Observation:
    """One evaluation of one account, as the rules see it."""

    account_id: str
    score: float
    previous_score: float | None
    bands: list[Threshold]
    """The account's band thresholds (its segment's), best first."""
    band: str
    """The band published for this score (with the model's hysteresis)."""
    previous_band: str | None
    stale: bool
    segment: str | None
    owner: str | None
    as_of: float
    trigger: str
    model_version: str
    onboarding: bool = False
    """A new account (``scoring.score.onboarding``): no band or drop alert."""
    data_since: float | None = None
    """Event time of the account's first event: alerts wait for a warm-up."""
    received_at: float | None = None
    """Wall-clock time of the evaluation: alerts about the distant past are not sent."""
    words: Callable[[], Words] = field(default=_no_words)
    """The explanation, asked for only when an alert is raised (it costs an evaluation's
    worth of work)."""


def band_rank(obs: Observation) -> int:
    """The rank of the observation's published band (0 = best)."""
    labels = [band.label for band in obs.bands]
    return labels.index(obs.band) if obs.band in labels else rank_for(obs.bands, obs.score)


class _Raiser:
    """Builds alerts for one observation and applies cooldowns."""

    def __init__(self, memory: AlertMemory, obs: Observation, now: float) -> None:
        self.memory = memory
        self.obs = obs
        self.now = now
        self.alerts: list[Alert] = []

    def cooled_down(self, key: str, cooldown_hours: float, at: float) -> bool:
        last = self.memory.last_fired.get(key)
        return last is None or at - last >= cooldown_hours * HOUR

    def raise_(
        self,
        key: str,
        rule: str,
        severity: Severity,
        title: str,
        old: tuple[float | None, str | None],
        cooldown_hours: float,
        trigger: str | None = None,
        lead_with_drags: bool = False,
        kind: str | None = None,
        at: float | None = None,
    ) -> None:
        """``trigger``: the input that raised it, if not the observation's; with
        ``lead_with_drags``, what pulls the score down goes with why it last moved; with
        ``kind`` (a critical event's), what events of that kind did to the score is the why;
        ``at``: the time its cooldown counts from, if not the observation's (an event's, so
        two events settled together cool down as they would one at a time)."""
        at = self.now if at is None else at
        if not self.cooled_down(key, cooldown_hours, at):
            return
        self.memory.last_fired[key] = at
        obs = self.obs
        trigger = trigger or obs.trigger
        words = obs.words()
        if kind is None:
            why = list(words.reasons)
        else:
            why = list(words.by_kind.get(kind, ())) or [
                f"the score did not move with it ({_fmt(obs.previous_score)} -> {obs.score:.0f})"
            ]
        self.alerts.append(
            Alert(
                alert_id=alert_id(obs.account_id, key, trigger),
                account_id=obs.account_id,
                rule=rule,
                severity=severity,
                title=title,
                old_score=old[0],
                new_score=obs.score,
                old_band=old[1],
                new_band=obs.band,
                drivers=why,
                drags=list(words.drags) if lead_with_drags else [],
                owner=obs.owner,
                segment=obs.segment,
                occurred_at=datetime.fromtimestamp(obs.as_of, UTC),
                trigger=trigger,
                model_version=obs.model_version,
            )
        )


def _band_change(raiser: _Raiser, rules: AlertRules) -> bool:
    """Returns whether a band alert was raised."""
    rule = rules.band_change
    memory, obs = raiser.memory, raiser.obs
    target = band_rank(obs)
    if memory.band_rank is None:
        # The first score sets the scene: alerting on it would page for every new account.
        memory.band_rank = target
        return False
    if target == memory.band_rank:
        memory.pending_rank = memory.pending_since = None
        return False
    if memory.pending_rank != target:
        memory.pending_rank, memory.pending_since = target, raiser.now
    assert memory.pending_since is not None
    if raiser.now - memory.pending_since < rule.min_minutes_in_band * 60:
        return False
    old_rank, memory.band_rank = memory.band_rank, target
    memory.pending_rank = memory.pending_since = None
    if not rule.enabled:
        return False
    old_band = obs.bands[min(old_rank, len(obs.bands) - 1)].label
    old = (obs.previous_score, old_band)
    new_band = obs.bands[target].label
    moved = f"was {old_band}; {_moved(old[0], obs.score)}"
    if target > old_rank:
        worst = target == len(obs.bands) - 1
        severity = Severity.CRITICAL if worst else Severity.WARNING
        title = f"{obs.account_id} is now {new_band} ({moved})"
        raiser.raise_(
            f"band_change:{new_band}",
            "band_change",
            severity,
            title,
            old,
            rule.cooldown_hours,
            lead_with_drags=True,
        )
        memory.alerted_rank = max(memory.alerted_rank or 0, target)
        return True
    # A recovery is news only to a CSM who was told of the fall (not after a cold start).
    told = memory.alerted_rank is not None and target < memory.alerted_rank
    memory.alerted_rank = None if target == 0 or memory.alerted_rank is None else target
    if rule.recovery and told:
        title = f"{obs.account_id} recovered to {new_band} ({moved})"
        raiser.raise_(
            f"recovery:{new_band}", "recovery", Severity.INFO, title, old, rule.cooldown_hours
        )
        return True
    return False


def _sharp_drop(raiser: _Raiser, rules: AlertRules, announce: bool) -> None:
    """Track daily highs; raise on a fall from the window's high. With ``announce`` False
    (a band alert already tells of this fall) the drop only starts the rule's cooldown."""
    rule = rules.sharp_drop
    memory, obs = raiser.memory, raiser.obs
    today = day_of(raiser.now)
    highs = memory.daily_highs
    if today not in highs:
        for stale in [d for d in highs if d <= today - MONTH_OF_DAYS]:
            del highs[stale]
    if obs.previous_score is not None:
        highs[today] = max(highs.get(today, obs.previous_score), obs.previous_score)
    window = [high for day, high in highs.items() if day > today - rule.window_days]
    highs[today] = max(highs.get(today, obs.score), obs.score)
    if not rule.enabled or not window:
        return
    high = max(window)
    if high - obs.score >= rule.points and not announce:
        if raiser.cooled_down("sharp_drop", rule.cooldown_hours, raiser.now):
            memory.last_fired["sharp_drop"] = raiser.now
    elif high - obs.score >= rule.points:
        title = (
            f"{obs.account_id} fell {high - obs.score:.0f} points in {rule.window_days} days "
            f"({high:.0f} -> {obs.score:.0f})"
        )
        raiser.raise_(
            "sharp_drop",
            "sharp_drop",
            rule.severity,
            title,
            (high, None),
            rule.cooldown_hours,
            lead_with_drags=True,
        )


def matches(rule: CriticalEventRule, event: BaseEvent, segment: str | None) -> bool:
    if getattr(event, "kind", None) is not rule.kind:
        return False
    if rule.segments and segment not in rule.segments:
        return False
    return all(str(getattr(event, field, None)) in values for field, values in rule.match.items())


def in_words(event: BaseEvent) -> str:
    """What happened, with the event's ids and figures (a critical-event alert's title)."""
    match event:
        case PaymentEvent():
            money = f"{event.currency} {event.amount:,.2f}"
            return f"invoice {event.invoice_id} for {money} {event.status.value}"
        case TicketEvent():
            return f"ticket {event.ticket_id} {event.action.value}, {event.priority.value} priority"
        case SurveyEvent():
            return f"{event.survey.value.upper()} answer {event.score}"
        case FeatureUseEvent():
            return f"{event.feature} used by {event.user_id}"
        case LoginEvent():
            return f"login by {event.user_id}"
    return f"event {event.event_id}"


def _critical_events(
    raiser: _Raiser, rules: AlertRules, events: Sequence[tuple[BaseEvent, float]]
) -> None:
    obs = raiser.obs
    for event, at in events:
        for rule in rules.critical_events:
            if matches(rule, event, obs.segment):
                title = f"{obs.account_id}: {rule.name.replace('_', ' ')}: {in_words(event)}"
                raiser.raise_(
                    f"critical_event:{rule.name}",
                    f"critical_event:{rule.name}",
                    rule.severity,
                    title,
                    (obs.previous_score, obs.previous_band),
                    rule.cooldown_hours,
                    trigger=event.event_id,
                    kind=str(rule.kind),
                    at=at,
                )


def _stale(raiser: _Raiser, rules: AlertRules) -> None:
    memory, obs = raiser.memory, raiser.obs
    if not obs.stale:
        memory.stale_alerted = False
        return
    if memory.stale_alerted or not rules.stale.enabled:
        return
    memory.stale_alerted = True
    title = f"{obs.account_id}: no data for the account any more; its score is on hold"
    old = (obs.previous_score, obs.previous_band)
    raiser.raise_("stale", "stale", rules.stale.severity, title, old, 0)


def _fmt(score: float | None) -> str:
    return "-" if score is None else f"{score:.0f}"


def _moved(old: float | None, new: float) -> str:
    """``76 -> 66``; with a decimal where whole points would read as no move."""
    if old is not None and f"{old:.0f}" == f"{new:.0f}":
        return f"{old:.1f} -> {new:.1f}"
    return f"{_fmt(old)} -> {new:.0f}"


def check(
    memory: AlertMemory,
    obs: Observation,
    rules: AlertRules,
    now: float,
    events: Sequence[tuple[BaseEvent, float]] = (),
) -> list[Alert]:
    """The alerts ``obs`` raises; ``memory`` is updated in place. ``events``: the product
    events the observation follows, each with the time it was folded at (critical-event rules
    look at each; their cooldowns count from those times).

    The memory always follows the score; alerts are held back while the account warms up
    or is new (its first days of data say little; ``Observation.onboarding``), at the
    evaluation that ends its onboarding (its first judged score sets the scene, as a first
    score does), and when the evaluation is about a time long past (a replay or a backfill
    tells of history, it does not page anyone; a critical event also by its own time).
    Critical events alert whatever the account's age.
    """
    raiser = _Raiser(memory, obs, now)
    warmup = rules.warmup_days * SECONDS_PER_DAY
    warm = obs.data_since is None or now - obs.data_since >= warmup
    judged = warm and not obs.onboarding and not memory.onboarding
    max_lag = rules.max_lag_hours * HOUR

    def current(at: float) -> bool:
        return obs.received_at is None or obs.received_at - at <= max_lag

    if not judged:
        memory.band_rank = band_rank(obs)
        memory.pending_rank = memory.pending_since = None
        if memory.onboarding and not obs.onboarding:
            memory.daily_highs.clear()  # highs of its onboarding are not a fall's start
    memory.onboarding = obs.onboarding
    _stale(raiser, rules)
    crossed = _band_change(raiser, rules)
    _sharp_drop(raiser, rules, announce=not crossed)  # one message for one change
    _critical_events(raiser, rules, events)
    # A critical event is also judged by its own time: settled with a later input, an event
    # long past is still history.
    past = {event.event_id for event, at in events if not current(at)}

    def shown(alert: Alert) -> bool:
        if alert.rule.startswith("critical_event"):
            return alert.trigger not in past and current(obs.as_of)
        return judged and current(obs.as_of)

    return [alert for alert in raiser.alerts if shown(alert)]


def pending_until(memory: AlertMemory, rules: AlertRules) -> float | None:
    """When a pending band change is confirmed (the scheduler re-evaluates then)."""
    if memory.pending_since is None:
        return None
    return memory.pending_since + rules.band_change.min_minutes_in_band * 60
