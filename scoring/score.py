"""Evaluate an account's state into a 0-100 health score with its band and grade.

measures -> components -> overall, as the model says (``scoring.model``). A component whose
measures all lack data is left out and its weight shared among the others. An account with no
data at all for longer than ``stale_after_days`` is *stale*: its score is held at the value it
had when it went stale, so a data outage does not read as a customer walking away.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from scoring.metrics import MetricContext, metric_value, tenure_days
from scoring.model import (
    OVERRIDE_COMPONENT,
    Measure,
    MissingRule,
    PercentileMapping,
    ScoringModel,
    label_for,
)
from scoring.peers import PeerBook, PeerDistribution, peer_group
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


def evaluate(
    state: AccountState,
    model: ScoringModel,
    now: float,
    peers: PeerDistribution | None = None,
) -> Score | None:
    """Score ``state`` as of ``now`` (POSIX seconds), peer-relative measures against
    ``peers`` (their absolute fallback without).

    None before the account's first product event (attributes or an override alone say
    nothing about its health) and when no component has data.
    """
    if state.watermark is None:
        return None
    profile = model.profile_for(state.attributes)
    stale = is_stale(state, model, now)
    as_of = now
    if stale:
        assert state.watermark is not None
        as_of = state.watermark + model.stale_after_days * SECONDS_PER_DAY
    ctx = MetricContext(state, model, as_of)
    group = peer_group(profile.segment, tenure_days(state, as_of), model.peers.tenure_bands_days)
    peer_values: dict[str, float] = {}
    component_scores: dict[str, float] = {}
    measures: dict[str, MeasureScore] = {}
    for name, component in model.components.items():
        scored = []
        for measure in component.measures:
            raw = metric_value(ctx, measure)
            if raw is not None:
                if isinstance(measure.mapping, PercentileMapping):
                    peer_values[measure.name] = raw
                measured, score = _measure_score(measure, raw, group, peers)
            elif measure.missing is MissingRule.NEUTRAL:
                score = measure.neutral_score
                measured = MeasureScore(value=None, score=score)
            else:
                continue
            measures[measure.name] = measured
            scored.append((measure, score))
        if scored:
            component_scores[name] = component.aggregate(scored)
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
    value = round(
        sum(profile.weights[n] * s for n, s in component_scores.items()) / total_weight, 1
    )
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


def _measure_score(
    measure: Measure, raw: float, group: str, peers: PeerDistribution | None
) -> tuple[MeasureScore, float]:
    """The measure's score in the update (rounded) and exact (what the component uses)."""
    mapping = measure.mapping
    rank = None
    if isinstance(mapping, PercentileMapping) and peers is not None:
        rank = peers.rank(group, measure.name, raw)
    if rank is None:
        score = mapping.score(raw)
        return MeasureScore(value=round(raw, 2), score=round(score, 1)), score
    assert isinstance(mapping, PercentileMapping)
    score = mapping.score_rank(rank.percentile)
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
