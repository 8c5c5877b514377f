"""Evaluate an account's state into a 0-100 health score with its band and grade.

measures -> components -> overall, as the model says (``scoring.scoring_model``). A component whose
measures all lack data is left out and its weight shared among the others. An account with no
data at all for longer than ``stale_after_days`` is *stale*: its score is held at the value it
had when it went stale, so a data outage does not read as a customer walking away.

An evaluation reuses the previous one's measures that nothing has moved since (its inputs,
the day, the peers; ``scoring.measures.METRIC_MOVES``) and takes the others again; inside it
works on plain objects, and the wire models (``MeasureScore``, ``ComponentScore``) are built
only when a score is published.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict

from scoring.events import SurveyType
from scoring.measures import (
    METRIC_MOVES,
    MIN_SCALED_DAYS,
    MetricContext,
    data_days,
    metric_value,
    scaled_window,
    tenure_days,
)
from scoring.peers import PeerBook, PeerDistribution, peer_group
from scoring.scoring_model import (
    OVERRIDE_COMPONENT,
    ComponentModel,
    Measure,
    Metric,
    MissingRule,
    PercentileMapping,
    RollupMethod,
    ScoringModel,
    Threshold,
    label_for,
)
from scoring.state import SECONDS_PER_DAY, AccountState, ActiveOverride, day_of


class MeasureScore(BaseModel):
    """A measure as a ScoreUpdate shows it (rounded)."""

    model_config = ConfigDict(frozen=True)

    value: float | None
    """The raw metric value; None when it had no data (and the missing rule made it neutral)."""
    score: float
    percentile: float | None = None
    """Peer-relative measures: the account's rank among its peers (0-100); None when the
    peers were too few and the absolute fallback scored it."""
    peers_median: float | None = None
    """Peer-relative measures: the peers' median raw value (None as for ``percentile``)."""
    scaled_from_days: int | None = None
    """Set when the account has fewer days of data than the measure's window: the usage of
    those days, scaled up to the window (``scoring.measures.scaled_from``)."""


class Onboarding(BaseModel):
    """A new account: fewer days of data than the model's ``onboarding.days``. Its youth
    does not count against it yet (the tenure measures are left out) and it raises no band
    or drop alert."""

    model_config = ConfigDict(frozen=True)

    days_of_data: int
    judged_from_day: int
    """The day of data from which it is judged like any other account."""


class ComponentScore(BaseModel):
    """A component as a ScoreUpdate shows it (rounded)."""

    model_config = ConfigDict(frozen=True)

    score: float
    weight: float
    """This component's share of the overall score (the shares of present components sum to 1)."""
    contribution: float
    """Points it adds to the overall score: ``weight * score``."""


class RollupInfo(BaseModel):
    """A parent's score as a roll-up of its children's (``scoring.rollup``): its components
    are its members, ``child:<account id>`` (and ``own`` for its own score), each with its
    weight and the points it contributes."""

    model_config = ConfigDict(frozen=True)

    method: RollupMethod
    children: int
    """Children it has (scored or not)."""
    scored_children: int
    """Children with a score: those in the roll-up."""
    own_score: bool
    """Whether the parent's own score (from its own events) is one of the members."""


@dataclass(frozen=True, slots=True)
class Measured:
    """One measure of one evaluation, exact: its raw value (None: no data, and its missing
    rule made it neutral) and score; a peer-relative measure ranked among peers has its rank
    and the peers' median."""

    value: float | None
    score: float
    percentile: float | None = None
    peers_median: float | None = None
    scaled_from_days: int | None = None

    def wire(self) -> MeasureScore:
        return MeasureScore(
            value=None if self.value is None else round(self.value, 2),
            score=round(self.score, 1),
            percentile=None if self.percentile is None else round(self.percentile, 1),
            peers_median=None if self.peers_median is None else round(self.peers_median, 2),
            scaled_from_days=self.scaled_from_days,
        )


@dataclass(eq=False)
class Score:
    """The result of one evaluation (plain: built for every evaluation, published or not)."""

    value: float
    band: str
    grade: str
    segment: str | None
    stale: bool
    component_scores: dict[str, float]
    """Each present component's exact score (the override's among them)."""
    shares: dict[str, float]
    """Each present component's share of the overall score (they sum to 1)."""
    measured: dict[str, Measured]
    override: ActiveOverride | None
    peer_group: str
    """The peers it ranks among (``scoring.peers.peer_group``)."""
    peer_values: dict[str, float] = field(default_factory=dict)
    """Raw values of its peer-relative measures, unrounded: what it adds to the sketches."""
    rollup: RollupInfo | None = None
    """Set when the score is a parent's roll-up of its children."""
    onboarding: Onboarding | None = None
    """Set while the account is new (``onboarding``)."""

    @cached_property
    def components(self) -> dict[str, ComponentScore]:
        """The components as published (rounded)."""
        return {
            name: ComponentScore(
                score=round(score, 1),
                weight=round(self.shares[name], 4),
                contribution=round(self.shares[name] * score, 1),
            )
            for name, score in self.component_scores.items()
        }

    @cached_property
    def measures(self) -> dict[str, MeasureScore]:
        """The measures as published (rounded)."""
        return {name: measured.wire() for name, measured in self.measured.items()}


def is_stale(state: AccountState, model: ScoringModel, now: float) -> bool:
    if state.watermark is None:
        return False
    return now - state.watermark > model.stale_after_days * SECONDS_PER_DAY


def active_override(state: AccountState, model: ScoringModel, now: float) -> ActiveOverride | None:
    """The CSM override that counts at ``now``: set, not expired, and the model weighs it."""
    override = state.override
    if model.override is None or override is None or override.expires_at <= now:
        return None
    return override


RawValues = dict[tuple[Metric, int | None, int | None], float | None]
"""Raw metric values of one evaluation by (metric, window, baseline): models evaluated at the
same time on the same state (a shadow beside the live model) share them."""


def evaluate(
    state: AccountState,
    model: ScoringModel,
    now: float,
    peers: PeerDistribution | None = None,
    raws: RawValues | None = None,
) -> Score | None:
    """Score ``state`` as of ``now`` (POSIX seconds), peer-relative measures against
    ``peers`` (their absolute fallback without); ``raws``, when given, collects the raw
    values it took (a shadow model reuses them).

    None before the account's first product event (attributes or an override alone say
    nothing about its health) and when no component has data.
    """
    if state.watermark is None:
        return None
    profile = model.profile_for(state.attributes)
    stale, as_of = _staleness(state, model, now)
    group = peer_group(profile.segment, tenure_days(state, as_of), model.peers.tenure_bands_days)
    reuse = _reusable(state, model, day_of(as_of), peers, group)
    measured: dict[str, Measured] = {}
    new = onboarding(state, model, as_of)
    component_scores = _component_scores(
        state, model, as_of, group, peers, {} if raws is None else raws, measured, reuse, new
    )
    override = active_override(state, model, now)
    if override is not None:
        component_scores[OVERRIDE_COMPONENT] = override.score
    if not component_scores:
        return None
    weights = profile.weights
    total_weight = sum(weights[name] for name in component_scores)
    value = _overall(component_scores, weights)
    relative = model.peer_measures
    return Score(
        value=value,
        band=band_of_new(state, profile.bands, label_for(profile.bands, value), new),
        grade=label_for(model.grades, value),
        segment=profile.segment,
        stale=stale,
        component_scores=component_scores,
        shares={name: weights[name] / total_weight for name in component_scores},
        measured=measured,
        override=override,
        peer_group=group,
        peer_values={
            m.name: found.value
            for m in relative
            if (found := measured.get(m.name)) is not None and found.value is not None
        },
        onboarding=new,
    )


DETRACTOR_NPS = 6
LOW_CSAT = 2


def in_trouble(state: AccountState) -> bool:
    """Whether the account's data shows trouble of its own: a failed payment, an urgent
    ticket open, a detractor's NPS answer or a low CSAT."""
    if state.urgent_open_tickets() or any(b.payment_failures for b in state.days.values()):
        return True
    surveys = state.latest_surveys
    nps, csat = surveys.get(SurveyType.NPS), surveys.get(SurveyType.CSAT)
    return (nps is not None and nps.score <= DETRACTOR_NPS) or (
        csat is not None and csat.score <= LOW_CSAT
    )


def band_of_new(
    state: AccountState, bands: list[Threshold], band: str, new: Onboarding | None
) -> str:
    """``band``, except that an account in its first week of data is not put in the worst
    band for want of history: without trouble in its data it goes no lower than the band
    above (never into the best band: with two bands, nothing changes). After a week, a
    new account that went quiet is judged as it stands."""
    if (
        new is None
        or new.days_of_data >= MIN_SCALED_DAYS
        or len(bands) < 3
        or band != bands[-1].label
        or in_trouble(state)
    ):
        return band
    return bands[-2].label


def onboarding(state: AccountState, model: ScoringModel, now: float) -> Onboarding | None:
    """Whether the account is new at ``now``: fewer days of data than the model's
    ``onboarding.days`` (an event count is not asked for: a new account that stays silent is
    the riskiest kind, and is judged on time)."""
    days = data_days(state, now)
    judged_from = model.onboarding.days
    if days is None or days >= judged_from:
        return None
    return Onboarding(days_of_data=days, judged_from_day=judged_from)


def score_value(
    state: AccountState,
    model: ScoringModel,
    now: float,
    peers: PeerDistribution | None,
    raws: RawValues,
) -> float | None:
    """``evaluate``'s score value alone, nothing kept for the next: what a shadow model needs
    (its cost is mostly the mappings, ``raws`` holding what the live model measured)."""
    if state.watermark is None:
        return None
    profile = model.profile_for(state.attributes)
    _, as_of = _staleness(state, model, now)
    group = peer_group(profile.segment, tenure_days(state, as_of), model.peers.tenure_bands_days)
    new = onboarding(state, model, as_of)
    component_scores = _component_scores(state, model, as_of, group, peers, raws, {}, None, new)
    override = active_override(state, model, now)
    if override is not None:
        component_scores[OVERRIDE_COMPONENT] = override.score
    return _overall(component_scores, profile.weights) if component_scores else None


def _staleness(state: AccountState, model: ScoringModel, now: float) -> tuple[bool, float]:
    """Whether the account is stale, and the time its measures are taken at (held when it
    went stale)."""
    if not is_stale(state, model, now):
        return False, now
    assert state.watermark is not None
    return True, state.watermark + model.stale_after_days * SECONDS_PER_DAY


def _overall(component_scores: dict[str, float], weights: dict[str, float]) -> float:
    total_weight = sum(weights[name] for name in component_scores)
    return round(sum(weights[n] * s for n, s in component_scores.items()) / total_weight, 1)


class _Reuse:
    """Measures of an account's last evaluation that only their inputs or the day can move,
    for the model, day, peers, peer group and first event they were taken with (kept in the
    state; a late event before the first moves a new account's scaled counts and youth)."""

    __slots__ = ("components", "day", "first_seen", "group", "measured", "model", "peers")

    def __init__(
        self,
        model: ScoringModel,
        day: int,
        peers: PeerDistribution | None,
        group: str,
        first_seen: float | None,
    ) -> None:
        self.model = model
        self.day = day
        self.peers = peers
        self.group = group
        self.first_seen = first_seen
        self.measured: dict[str, Measured | None] = {}
        """Measure name -> its result (None: no data and skipped)."""
        self.components: dict[str, _KeptComponent] = {}
        """Components none of whose measures moves with the clock, while all their measures
        are kept: their score and measures, taken as they are."""

    def __deepcopy__(self, memo: dict[int, object]) -> _Reuse:
        """A copied state reuses against the same model and peers (shared, not copied)."""
        copied = _Reuse(self.model, self.day, self.peers, self.group, self.first_seen)
        copied.measured = dict(self.measured)
        copied.components = dict(self.components)
        return copied


_KeptComponent = tuple[float | None, tuple[tuple[str, Any, Measured], ...]]
"""A component's score (None: no measure had data) and its measures (name, raw value key,
result)."""


def _reusable(
    state: AccountState,
    model: ScoringModel,
    day: int,
    peers: PeerDistribution | None,
    group: str,
) -> _Reuse:
    """What this evaluation may reuse of the last: none of it when the model, the day, the
    peers, the group or the first event changed, else all but the measures the inputs folded
    since move."""
    caches = state.caches
    reuse: _Reuse | None = caches.measured
    moved = caches.moved
    if (
        reuse is None
        or reuse.model is not model
        or reuse.day != day
        or reuse.peers is not peers
        or reuse.group != group
        or reuse.first_seen != state.first_seen
    ):
        reuse = caches.measured = _Reuse(model, day, peers, group, state.first_seen)
    elif moved:
        kept, components = reuse.measured, reuse.components
        moved_by = _moved_by(model)
        for what in moved:
            for measure_name, component in moved_by.get(what, ()):
                kept.pop(measure_name, None)
                components.pop(component, None)
    moved.clear()
    return reuse


def _moved_by(model: ScoringModel) -> dict[str, tuple[tuple[str, str], ...]]:
    """Input -> the (measure, component) pairs it moves, for ``model`` (computed once)."""
    found = _MOVED_BY.get(model.version)
    if found is None:
        pairs: dict[str, list[tuple[str, str]]] = {}
        for component_name, component in model.components.items():
            for measure in component.measures:
                for what in METRIC_MOVES[measure.metric].inputs:
                    pairs.setdefault(what, []).append((measure.name, component_name))
        found = _MOVED_BY[model.version] = {what: tuple(p) for what, p in pairs.items()}
    return found


_MOVED_BY: dict[str, dict[str, tuple[tuple[str, str], ...]]] = {}


_ABSENT = Measured(None, 0.0)
"""Marks a measure the reuse does not hold."""


@dataclass(frozen=True, slots=True)
class _Planned:
    """A measure with what its evaluation looks up about it, looked up once per model."""

    measure: Measure
    name: str
    key: tuple[Metric, int | None, int | None]
    """Its raw value's key in ``RawValues``."""
    clocked: bool
    """The clock moves it at any moment: taken again at every evaluation."""
    scaled_window: int | None
    """A usage count's window, which a new account may not have filled (``scaled_from``)."""
    tenure: bool
    percentile: PercentileMapping | None
    """Its mapping, when it ranks among its peers (when there are peers)."""


def _plan(model: ScoringModel) -> tuple[tuple[str, ComponentModel, tuple[_Planned, ...]], ...]:
    """Each component of ``model`` with its measures planned (computed once per model)."""
    found = _PLANS.get(model.version)
    if found is None:
        found = _PLANS[model.version] = tuple(
            (
                name,
                component,
                tuple(
                    _Planned(
                        measure,
                        measure.name,
                        (measure.metric, measure.window_days, measure.baseline_days),
                        METRIC_MOVES[measure.metric].clock,
                        scaled_window(measure),
                        measure.metric is Metric.TENURE_DAYS,
                        measure.mapping if isinstance(measure.mapping, PercentileMapping) else None,
                    )
                    for measure in component.measures
                ),
            )
            for name, component in model.components.items()
        )
    return found


_PLANS: dict[str, tuple[tuple[str, ComponentModel, tuple[_Planned, ...]], ...]] = {}


def _component_scores(
    state: AccountState,
    model: ScoringModel,
    as_of: float,
    group: str,
    peers: PeerDistribution | None,
    raws: RawValues,
    measured: dict[str, Measured],
    reuse: _Reuse | None,
    new: Onboarding | None,
) -> dict[str, float]:
    """Each component's score from its measures, each measure's result into ``measured``;
    a measure ``reuse`` holds is not taken again, and what is taken goes into it. While the
    account is ``new`` its tenure counts as the day it is judged from: youth still ranks it
    below older accounts, but its first days are not read as the emergency their figures
    alone would say."""
    ctx: MetricContext | None = None
    kept = reuse.measured if reuse is not None else None
    kept_components = reuse.components if reuse is not None else None
    days = data_days(state, as_of)
    component_scores: dict[str, float] = {}
    for name, component, planned in _plan(model):
        whole = kept_components.get(name) if kept_components is not None else None
        if whole is not None:
            score, entries = whole
            for measure_name, raw_key, result in entries:
                measured[measure_name] = result
                raws.setdefault(raw_key, result.value)
            if score is not None:
                component_scores[name] = score
            continue
        scored = []
        taken: list[tuple[str, Any, Measured]] = []
        clocked = False
        for plan in planned:
            key = plan.key
            found = kept.get(plan.name, _ABSENT) if kept is not None else _ABSENT
            if found is _ABSENT:
                if key in raws:
                    raw = raws[key]
                else:
                    ctx = ctx or MetricContext(state, model, as_of)
                    raw = raws[key] = metric_value(ctx, plan.measure)
                window = plan.scaled_window
                scaled = days if window is not None and days is not None and days < window else None
                found = _measure(plan, raw, group, peers, scaled)
                if new is not None and raw is not None and plan.tenure:
                    counted = plan.measure.mapping.score(max(raw, float(new.judged_from_day)))
                    found = Measured(raw, counted)
                if plan.clocked:
                    clocked = True
                elif kept is not None:
                    kept[plan.name] = found
            elif found is not None:
                raws.setdefault(key, found.value)
            if found is None:
                continue
            measured[plan.name] = found
            scored.append((plan.measure, found.score))
            taken.append((plan.name, key, found))
        value = component.aggregate(scored) if scored else None
        if value is not None:
            component_scores[name] = value
        if kept_components is not None and not clocked:
            kept_components[name] = (value, tuple(taken))
    return component_scores


def _measure(
    plan: _Planned,
    raw: float | None,
    group: str,
    peers: PeerDistribution | None,
    scaled: int | None,
) -> Measured | None:
    """The measure's result for ``raw`` (None: no data and its missing rule skips it);
    ``scaled``: the days of data a usage count was scaled up from."""
    measure = plan.measure
    if raw is None:
        if measure.missing is MissingRule.NEUTRAL:
            return Measured(None, measure.neutral_score)
        return None
    if plan.percentile is not None and peers is not None:
        rank = peers.rank(group, plan.name, raw)
        if rank is not None:
            score = plan.percentile.score_rank(rank.percentile)
            return Measured(raw, score, rank.percentile, rank.median, scaled)
    return Measured(raw, measure.mapping.score(raw), scaled_from_days=scaled)


def contribute(state: AccountState, score: Score, book: PeerBook, now: float) -> None:
    """Add the account's peer-relative values to ``book`` for ``now``'s day, once a day;
    stale accounts (no data for ``stale_after_days``) and new ones (their counts are scaled
    up) are not anyone's peers."""
    today = day_of(now)
    if state.peer_day == today or score.stale or score.onboarding or not score.peer_values:
        return
    book.contribute(today, score.peer_group, score.peer_values)
    state.peer_day = today
