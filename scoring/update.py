"""``ScoreUpdate``, the wire model of a score change, and the ``Rescorer`` that evaluates an
account and produces it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from scoring.audit import Auditor
from scoring.explain import Drag, Driver, Explainer, change_since
from scoring.peers import PeerPort
from scoring.rollup import rollup_drags, rollup_drivers, rollup_score, scores_as_rollup
from scoring.score import (
    ComponentScore,
    MeasureScore,
    Onboarding,
    RawValues,
    RollupInfo,
    Score,
    band_of_new,
    contribute,
    evaluate,
    score_value,
)
from scoring.scoring_model import (
    ParentScoring,
    ScoringModel,
    Threshold,
    label_for,
    steady_label,
)
from scoring.state import AccountState, Published, day_of, record_closing_score

PUBLISH_MIN_DELTA = 1.0
"""Points a score must move to be published when nothing else changed (docs/events.md)."""


class Trigger(StrEnum):
    """What made the worker re-evaluate the account."""

    EVENT = "event"
    ATTRIBUTES = "attributes"
    OVERRIDE = "override"
    OUTCOME = "outcome"
    CHILD = "child"
    """A child's report to its parent (``scoring.rollup``)."""
    TIMER = "timer"


class OverrideInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    override_id: str
    score: float
    author: str
    reason: str
    expires_at: AwareDatetime


class ScoreUpdate(BaseModel):
    """Published on the scores topic, keyed by account, when an account's score changed in a
    way that matters (``Rescorer.publishes``)."""

    model_config = ConfigDict(frozen=True)

    account_id: str
    score: float
    band: str
    grade: str
    segment: str | None
    stale: bool
    previous_score: float | None
    previous_band: str | None
    components: dict[str, ComponentScore]
    measures: dict[str, MeasureScore]
    drivers: list[Driver]
    drags: list[Drag] = Field(default_factory=list)
    """What pulls the score down: the measures costing the most points against a perfect
    score, worst first (updates published before drags existed have none)."""
    summary: str
    """The drivers (and notes such as staleness) in one line of words and numbers."""
    change_7d: float | None
    change_30d: float | None
    override: OverrideInfo | None
    owner: str | None
    """The account's CSM, from its attributes."""
    parent: str | None = None
    """The account's parent, from its attributes (``parent_account_id``)."""
    rollup: RollupInfo | None = None
    """Set when the score is a roll-up of the account's children; its components are then
    the children (``child:<account id>``) and its drags and drivers name them."""
    onboarding: Onboarding | None = None
    """Set while the account is new: too few days of data to be judged like any other."""
    bands: list[Threshold] = Field(default_factory=list)
    """The band thresholds of the account's segment, best first (each band from its min)."""
    model_version: str
    as_of: AwareDatetime
    """The time the score is computed for."""
    computed_at: AwareDatetime
    """Wall-clock time the worker computed it."""
    trigger: Trigger
    event_id: str | None
    """The input that caused this update (None for the timer)."""

    def wire_form(self) -> bytes:
        """The update as published: fields at their defaults left out (a third of its size;
        readers fill them back, docs/events.md)."""
        return self.model_dump_json(exclude_defaults=True).encode()


def _measures_alike(live: ScoringModel, shadow: ScoringModel) -> bool:
    """Whether ``shadow`` measures a state as ``live`` does (so it may reuse the raw values
    live measured): the same sticky features, and staleness from the same age."""
    return (live.sticky_features, live.stale_after_days) == (
        shadow.sticky_features,
        shadow.stale_after_days,
    )


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@dataclass(slots=True)
class Explanation:
    """Why a score is where it is (drags) and why it moved since the last update (notes and
    drivers): built only for what is published or alerted on."""

    drivers: list[Driver]
    notes: list[str]
    drags: list[Drag]

    @property
    def reasons(self) -> list[str]:
        return [*self.notes, *(driver.text for driver in self.drivers)]


@dataclass(slots=True)
class Evaluation:
    """One evaluation of an account, before anything is published."""

    score: Score
    previous_score: float | None
    """The score of the evaluation before (published or not)."""
    explanation: Explanation | None = None
    """Kept once built (``Rescorer.explain``)."""


class Rescorer:
    """Evaluates an account and, when the change matters (``publishes``), records the new
    score in the state and returns the explained update. Peer-relative measures rank against
    ``peers`` (their absolute fallback without), and every evaluation adds the account's
    values to its partition's book (once a day) and its closing scores to the audit."""

    def __init__(
        self,
        model: ScoringModel,
        peers: PeerPort | None = None,
        auditor: Auditor | None = None,
        shadows: tuple[ScoringModel, ...] = (),
        publish_min_delta: float = PUBLISH_MIN_DELTA,
    ) -> None:
        self.model = model
        self.peers = peers if model.peer_measures else None
        self.auditor = auditor
        self.shadows = shadows
        """Evaluated beside the model for the audit only: they publish and alert nothing."""
        self._shadows = [(shadow, _measures_alike(model, shadow)) for shadow in shadows]
        self._explainer = Explainer(model)
        self.publish_min_delta = publish_min_delta
        """A score that moved less than this (and nothing else changed) is not published."""

    def evaluate(self, state: AccountState, now: float) -> Evaluation | None:
        """Score the account at ``now`` (a parent as the roll-up of its children,
        ``scoring.rollup``); its closing score of the day is kept whether or not it is
        published."""
        model = self.model
        if scores_as_rollup(state, model):
            both = model.rollup.parents is ParentScoring.BOTH
            score = rollup_score(state, model, self._own(state, now) if both else None)
            if score is None and not both:
                score = self._own(state, now)  # no child has a score yet
        else:
            score = self._own(state, now)
        if score is None:
            return None
        published = state.published
        if published is not None and published.segment == score.segment:
            bands = model.profile_for(state.attributes).bands
            steady = steady_label(bands, published.band, score.value, model.band_margin_points)
            score.band = band_of_new(state, bands, steady, score.onboarding)
        history = state.history
        previous = next(reversed(history.values())) if history else None
        record_closing_score(state, score.value, now)
        return Evaluation(score, previous)

    def _own(self, state: AccountState, now: float) -> Score | None:
        """The account's score from its own inputs; its peers' book and the audit take it."""
        peers = self.peers
        distribution = peers.distribution(day_of(now)) if peers is not None else None
        raws: RawValues = {}
        score = evaluate(state, self.model, now, distribution, raws)
        if score is None:
            return None
        if peers is not None:
            contribute(state, score, peers.book_for(state.partition), now)
        if self.auditor is not None:
            scores = {self.model.version: score.value}
            for shadow, shares in self._shadows:
                value = score_value(state, shadow, now, distribution, raws if shares else {})
                if value is not None:
                    scores[shadow.version] = value
            self.auditor.observe(state, scores, now)
        return score

    def publishes(
        self, previous: Published | None, score: Score, now: float, alerted: bool
    ) -> bool:
        """Whether consumers need this score: the first one, an alert, a new day (one update
        per account and day evaluated at least), a change of band, grade, staleness,
        segment or override, or a move of at least ``publish_min_delta`` points."""
        if previous is None or alerted or day_of(previous.at) != day_of(now):
            return True
        override_id = score.override.override_id if score.override else None
        if (previous.band, previous.stale, previous.segment, previous.override_id) != (
            score.band,
            score.stale,
            score.segment,
            override_id,
        ):
            return True
        moved = abs(score.value - previous.score)
        if not moved:
            return False
        grades = self.model.grades
        return moved >= self.publish_min_delta or (label_for(grades, previous.score) != score.grade)

    def explain(self, state: AccountState, evaluation: Evaluation) -> Explanation:
        """What moved since the last update and what pulls the score down (built once)."""
        if evaluation.explanation is None:
            previous, score = state.published, evaluation.score
            explainer = self._explainer
            rolled_up = score.rollup is not None
            evaluation.explanation = Explanation(
                drivers=(rollup_drivers if rolled_up else explainer.drivers)(previous, score),
                notes=explainer.notes(previous, score),
                drags=rollup_drags(score) if rolled_up else explainer.drags(score),
            )
        return evaluation.explanation

    def drivers_by_kind(self, drivers: list[Driver]) -> dict[str, list[str]]:
        """Event kind -> the drivers (in words) of the components its events move."""
        moved_by = self._explainer.kinds_moving
        found: dict[str, list[str]] = {}
        for driver in drivers:
            for kind in moved_by.get(driver.component, ()):
                found.setdefault(kind, []).append(driver.text)
        return found

    def publish(
        self,
        state: AccountState,
        evaluation: Evaluation,
        now: float,
        trigger: Trigger,
        event_id: str | None,
        computed_at: datetime,
        alerted: bool = False,
    ) -> ScoreUpdate | None:
        """The update for ``evaluation`` when it ``publishes``, recorded as the account's
        published score; None when it does not."""
        previous, score = state.published, evaluation.score
        if not self.publishes(previous, score, now, alerted):
            return None
        explanation = self.explain(state, evaluation)
        reasons = explanation.reasons
        attributes = state.attributes
        override_id = score.override.override_id if score.override else None
        update = ScoreUpdate(
            account_id=state.account_id,
            score=score.value,
            band=score.band,
            grade=score.grade,
            segment=score.segment,
            stale=score.stale,
            previous_score=previous.score if previous else None,
            previous_band=previous.band if previous else None,
            components=score.components,
            measures=score.measures,
            drivers=explanation.drivers,
            drags=explanation.drags,
            summary="; ".join(reasons),
            change_7d=change_since(state, score.value, now, 7),
            change_30d=change_since(state, score.value, now, 30),
            override=None
            if score.override is None
            else OverrideInfo(
                override_id=score.override.override_id,
                score=score.override.score,
                author=score.override.author,
                reason=score.override.reason,
                expires_at=_utc(score.override.expires_at),
            ),
            owner=attributes.csm_owner if attributes else None,
            parent=attributes.parent_account_id if attributes else None,
            rollup=score.rollup,
            onboarding=score.onboarding,
            bands=self.model.profile_for(attributes).bands,
            model_version=self.model.version,
            as_of=_utc(now),
            computed_at=computed_at,
            trigger=trigger,
            event_id=event_id,
        )
        components = update.components
        state.published = Published(
            score=score.value,
            band=score.band,
            stale=score.stale,
            segment=score.segment,
            component_scores={n: c.score for n, c in components.items()},
            shares={n: c.weight for n, c in components.items()},
            measures={n: m.value for n, m in update.measures.items() if m.value is not None},
            measure_scores={n: m.score for n, m in update.measures.items()},
            peer_medians={
                n: m.peers_median for n, m in update.measures.items() if m.peers_median is not None
            },
            onboarding=score.onboarding is not None,
            override_id=override_id,
            at=now,
            reasons=reasons,
        )
        return update
