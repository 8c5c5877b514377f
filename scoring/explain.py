"""Why a score is where it is and why it moved.

A driver is a component whose contribution to the overall score changed since the previous
ScoreUpdate, in points, with the measures behind it (raw value before -> after), e.g.
``usage -9: days since last login 2 -> 16; active days in 30 days 18 -> 9``.

A drag is a measure (or the CSM override) that costs the score points against a perfect one,
with its raw value, e.g. ``usage -22: active days in 30 days 3``: what pulls the score down,
whether or not it moved lately.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from scoring.score import MeasureScore, Score
from scoring.scoring_model import OVERRIDE_COMPONENT, Aggregation, ScoringModel
from scoring.state import AccountState, Published, day_of

MAX_DRIVERS = 3
MAX_MEASURES_PER_DRIVER = 2
MIN_DRIVER_POINTS = 0.1


class MeasureChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    measure: str
    label: str
    old: float | None
    new: float | None


class Driver(BaseModel):
    model_config = ConfigDict(frozen=True)

    component: str
    delta: float
    """Change of the component's contribution to the overall score, in points."""
    text: str
    measures: list[MeasureChange]


class Drag(BaseModel):
    model_config = ConfigDict(frozen=True)

    component: str
    measure: str | None
    """None for the CSM override."""
    points: float
    """Points of the overall score it costs against a perfect score (always > 0)."""
    text: str


MAX_DRAGS = 3
MIN_DRAG_POINTS = 0.5


def _points(delta: float) -> str:
    return f"{delta:+.1f}" if abs(delta) < 1 else f"{delta:+.0f}"


def _number(value: float | None) -> str:
    if value is None:
        return "none"
    return f"{value:.0f}" if abs(value - round(value)) < 0.05 else f"{value:.1f}"


class Explainer:
    """Labels from the model, used to put drivers in words."""

    def __init__(self, model: ScoringModel) -> None:
        self._model = model
        self._measures_of = {
            name: [(m.name, m.label) for m in c.measures] for name, c in model.components.items()
        }
        self._labels = {m.name: m.label for c in model.components.values() for m in c.measures}
        self._relative = {m.name for m in model.peer_measures}

    def drags(self, score: Score) -> list[Drag]:
        """The measures costing ``score`` the most points against a perfect score, worst first.

        A measure's cost is its component's share of the score times its own share of the
        component (its weight among the component's scored measures; with ``min`` or ``max``
        aggregation, the measure that sets the component bears all of it) times the points it
        lacks to 100.
        """
        costs: list[tuple[float, str, str | None]] = []
        for name, component in score.components.items():
            if name == OVERRIDE_COMPONENT:
                costs.append((component.weight * (100.0 - component.score), name, None))
                continue
            for measure, share in self._measure_shares(name, score):
                lacking = 100.0 - score.measures[measure].score
                costs.append((component.weight * share * lacking, name, measure))
        costs.sort(key=lambda cost: -cost[0])
        return [
            self._drag(component, measure, round(points, 1), score)
            for points, component, measure in costs[:MAX_DRAGS]
            if points >= MIN_DRAG_POINTS
        ]

    def _measure_shares(self, component: str, score: Score) -> list[tuple[str, float]]:
        """Each scored measure of ``component`` and its share of the component's score."""
        model = self._model.components[component]
        scored = [m for m in model.measures if m.name in score.measures]
        if not scored:
            return []
        if model.aggregation is not Aggregation.WEIGHTED_MEAN:
            pick = min if model.aggregation is Aggregation.MIN else max
            setting = pick(scored, key=lambda m: score.measures[m.name].score)
            return [(setting.name, 1.0)]
        total = sum(m.weight for m in scored)
        return [(m.name, m.weight / total) for m in scored]

    def _drag(self, component: str, measure: str | None, points: float, score: Score) -> Drag:
        if measure is None:
            words = self._override_words(score)
        else:
            words = self._measure_words(measure, score.measures[measure])
        return Drag(
            component=component,
            measure=measure,
            points=points,
            text=f"{component} {_points(-points)}: {words}",
        )

    def drivers(self, previous: Published | None, score: Score) -> list[Driver]:
        """The top components behind the change from ``previous`` to ``score``."""
        old_measures = previous.measures if previous else {}
        return [
            self._driver(name, delta, old_measures, score)
            for name, delta in moved_components(previous, score)
        ]

    def _driver(self, component: str, delta: float, old: dict[str, float], score: Score) -> Driver:
        if component == OVERRIDE_COMPONENT:
            return Driver(
                component=component,
                delta=delta,
                text=f"{component} {_points(delta)}: {self._override_words(score)}",
                measures=[],
            )
        moved = []
        for measure, label in self._measures_of.get(component, ()):
            found = score.measures.get(measure)
            new = found.value if found is not None else None
            was = old.get(measure)
            if was != new:
                moved.append((abs((new or 0.0) - (was or 0.0)), measure, label, was, new))
        moved.sort(key=lambda change: -change[0])
        changes = [
            MeasureChange(measure=measure, label=label, old=was, new=new)
            for _, measure, label, was, new in moved[:MAX_MEASURES_PER_DRIVER]
        ]
        words = "; ".join(f"{c.label} {_number(c.old)} -> {_number(c.new)}" for c in changes)
        text = f"{component} {_points(delta)}: {words or 'its share of the score changed'}"
        return Driver(component=component, delta=delta, text=text, measures=changes)

    def _measure_words(self, measure: str, scored: MeasureScore) -> str:
        """``active days in 30 days 3 (peers' median 17)``; a peer-relative measure scored on
        its absolute fallback says so."""
        label = self._labels.get(measure, measure)
        if scored.value is None:
            return f"{label} no data"
        words = f"{label} {_number(scored.value)}"
        if scored.peers_median is not None:
            return f"{words} (peers' median {_number(scored.peers_median)})"
        if measure in self._relative:
            return f"{words} (too few peers yet: absolute scale)"
        return words

    @staticmethod
    def _override_words(score: Score) -> str:
        override = score.override
        if override is None:
            return "CSM override ended"
        return f"CSM override {override.score:.0f} by {override.author} ({override.reason})"

    def notes(self, previous: Published | None, score: Score) -> list[str]:
        """Changes of state that are not a component's: staleness and segment."""
        notes = []
        if previous is None:
            return ["first score"]
        if score.stale and not previous.stale:
            notes.append(
                f"stale: no data for over {self._model.stale_after_days:.0f} days; "
                "score held at its last value"
            )
        elif previous.stale and not score.stale:
            notes.append("data arriving again")
        if score.segment != previous.segment:
            notes.append(f"segment {previous.segment or 'default'} -> {score.segment or 'default'}")
        return notes


def moved_components(previous: Published | None, score: Score) -> list[tuple[str, float]]:
    """The components (a roll-up's: its members) whose contribution moved most since
    ``previous``, in points, the ``MAX_DRIVERS`` largest moves first."""
    old = previous.contributions if previous else {}
    components = score.components
    deltas = []
    for name in set(old) | set(components):
        new = components[name].contribution if name in components else 0.0
        delta = round(new - old.get(name, 0.0), 1)
        if abs(delta) >= MIN_DRIVER_POINTS:
            deltas.append((name, delta))
    deltas.sort(key=lambda item: -abs(item[1]))
    return deltas[:MAX_DRIVERS]


def change_since(state: AccountState, score: float, now: float, days: int) -> float | None:
    """Score change against the closing score of ``days`` ago (or the latest day before it)."""
    target = day_of(now) - days
    earlier = [day for day in state.history if day <= target]
    if not earlier:
        return None
    return round(score - state.history[max(earlier)], 1)
