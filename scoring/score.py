"""Evaluate an account's state into a 0-100 health score with its band and grade.

measures -> components -> overall, as the model says (``scoring.scoring_model``). A component whose
measures all lack data is left out and its weight shared among the others. An account with no
data at all for longer than ``stale_after_days`` is *stale*: its score is held at the value it
had when it went stale, so a data outage does not read as a customer walking away.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from scoring.measures import MetricContext, metric_value, tenure_days
from scoring.peers import PeerBook, PeerDistribution, peer_group
from scoring.scoring_model import (
    OVERRIDE_COMPONENT,
    Measure,
    Metric,
    MissingRule,
    PercentileMapping,
    ScoringModel,
    label_for,
)
from scoring.state import SECONDS_PER_DAY, AccountState, ActiveOverride, day_of


class MeasureScore(BaseModel):
    model_config = ConfigDict(frozen=True)

    value: float | None
    """The raw metric value; None when it had no data (and the missing rule made it neutral)."""
    score: float
    percentile: float | None = None
    """Peer-relative measures: the account's rank among its peers (0-100); None when the
    peers were too few and the absolute fallback scored it."""
    peers_median: float | None = None
    """Peer-relative measures: the peers' median raw value (None as for ``percentile``)."""


class ComponentScore(BaseModel):
    model_config = ConfigDict(frozen=True)

    score: float
    weight: float
    """This component's share of the overall score (the shares of present components sum to 1)."""
    contribution: float
    """Points it adds to the overall score: ``weight * score``."""


class Score(BaseModel):
    """The result of one evaluation."""

    model_config = ConfigDict(frozen=True)

    value: float
    band: str
    grade: str
    segment: str | None
    stale: bool
    components: dict[str, ComponentScore]
    measures: dict[str, MeasureScore]
    override: ActiveOverride | None
    peer_group: str
    """The peers it ranks among (``scoring.peers.peer_group``)."""
    peer_values: dict[str, float]
    """Raw values of its peer-relative measures, unrounded: what it adds to the sketches."""


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
    ``peers`` (their absolute fallback without).

    None before the account's first product event (attributes or an override alone say
    nothing about its health) and when no component has data.
    """
    if state.watermark is None:
        return None
    profile = model.profile_for(state.attributes)
    stale, as_of = _staleness(state, model, now)
    group = peer_group(profile.segment, tenure_days(state, as_of), model.peers.tenure_bands_days)
    measures: dict[str, MeasureScore] = {}
    peer_values: dict[str, float] = {}
    component_scores = _component_scores(
        state, model, as_of, group, peers, {} if raws is None else raws, measures, peer_values
    )
    override = active_override(state, model, now)
    if override is not None:
        component_scores[OVERRIDE_COMPONENT] = override.score
    if not component_scores:
        return None
    total_weight = sum(profile.weights[name] for name in component_scores)
    components = {}
    for name, score in component_scores.items():
        share = profile.weights[name] / total_weight
        components[name] = ComponentScore(
            score=round(score, 1), weight=round(share, 4), contribution=round(share * score, 1)
        )
    value = _overall(component_scores, profile.weights)
    return Score(
        value=value,
        band=label_for(profile.bands, value),
        grade=label_for(model.grades, value),
        segment=profile.segment,
        stale=stale,
        components=components,
        measures=measures,
        override=override,
        peer_group=group,
        peer_values=peer_values,
    )


def score_value(
    state: AccountState,
    model: ScoringModel,
    now: float,
    peers: PeerDistribution | None,
    raws: RawValues,
) -> float | None:
    """``evaluate``'s score value alone, with no explanation built: what a shadow model needs
    (its cost is mostly the mappings, ``raws`` holding what the live model measured)."""
    if state.watermark is None:
        return None
    profile = model.profile_for(state.attributes)
    _, as_of = _staleness(state, model, now)
    group = peer_group(profile.segment, tenure_days(state, as_of), model.peers.tenure_bands_days)
    component_scores = _component_scores(state, model, as_of, group, peers, raws, None, None)
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


def _component_scores(
    state: AccountState,
    model: ScoringModel,
    as_of: float,
    group: str,
    peers: PeerDistribution | None,
    raws: RawValues,
    measures: dict[str, MeasureScore] | None,
    peer_values: dict[str, float] | None,
) -> dict[str, float]:
    """Each component's score from its measures; ``measures`` and ``peer_values``, when
    given, collect each measure's explanation and the raw values of peer-relative ones."""
    ctx: MetricContext | None = None
    component_scores: dict[str, float] = {}
    for name, component in model.components.items():
        scored = []
        for measure in component.measures:
            key = (measure.metric, measure.window_days, measure.baseline_days)
            if key in raws:
                raw = raws[key]
            else:
                ctx = ctx or MetricContext(state, model, as_of)
                raw = raws[key] = metric_value(ctx, measure)
            if raw is not None:
                if peer_values is not None and isinstance(measure.mapping, PercentileMapping):
                    peer_values[measure.name] = raw
                measured, score = _measure_score(measure, raw, group, peers, measures is not None)
            elif measure.missing is MissingRule.NEUTRAL:
                score = measure.neutral_score
                measured = MeasureScore(value=None, score=score) if measures is not None else None
            else:
                continue
            if measures is not None and measured is not None:
                measures[measure.name] = measured
            scored.append((measure, score))
        if scored:
            component_scores[name] = component.aggregate(scored)
    return component_scores


def _measure_score(
    measure: Measure, raw: float, group: str, peers: PeerDistribution | None, explain: bool
) -> tuple[MeasureScore | None, float]:
    """The measure's score in the update (rounded; None unless ``explain``) and exact (what
    the component uses)."""
    mapping = measure.mapping
    rank = None
    if isinstance(mapping, PercentileMapping) and peers is not None:
        rank = peers.rank(group, measure.name, raw)
    if rank is None:
        score = mapping.score(raw)
        if not explain:
            return None, score
        return MeasureScore(value=round(raw, 2), score=round(score, 1)), score
    assert isinstance(mapping, PercentileMapping)
    score = mapping.score_rank(rank.percentile)
    if not explain:
        return None, score
    measured = MeasureScore(
        value=round(raw, 2),
        score=round(score, 1),
        percentile=round(rank.percentile, 1),
        peers_median=round(rank.median, 2),
    )
    return measured, score


def contribute(state: AccountState, score: Score, book: PeerBook, now: float) -> None:
    """Add the account's peer-relative values to ``book`` for ``now``'s day, once a day;
    stale accounts (no data for ``stale_after_days``) are not anyone's peers."""
    today = day_of(now)
    if state.peer_day == today or score.stale or not score.peer_values:
        return
    book.contribute(today, score.peer_group, score.peer_values)
    state.peer_day = today
