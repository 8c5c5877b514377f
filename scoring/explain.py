"""Why a score moved: the drivers of the change since the previous ScoreUpdate, and the trend.

A driver is a component whose contribution to the overall score changed, in points, with the
measures behind it (raw value before -> after), e.g.
``usage -9: days since last login 2 -> 16; active days in 30 days 18 -> 9``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from scoring.model import OVERRIDE_COMPONENT, ScoringModel
from scoring.score import Score
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

    def drivers(self, previous: Published | None, score: Score) -> list[Driver]:
        """The top components behind the change from ``previous`` to ``score``."""
        old_contributions = previous.contributions if previous else {}
        old_measures = previous.measures if previous else {}
        names = set(old_contributions) | set(score.components)
        deltas = []
        for name in names:
            new = score.components[name].contribution if name in score.components else 0.0
            delta = round(new - old_contributions.get(name, 0.0), 1)
            if abs(delta) >= MIN_DRIVER_POINTS:
                deltas.append((name, delta))
        deltas.sort(key=lambda item: -abs(item[1]))
        return [
            self._driver(name, delta, old_measures, score) for name, delta in deltas[:MAX_DRIVERS]
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


def change_since(state: AccountState, score: float, now: float, days: int) -> float | None:
    """Score change against the closing score of ``days`` ago (or the latest day before it)."""
    target = day_of(now) - days
    earlier = [day for day in state.history if day <= target]
    if not earlier:
        return None
    return round(score - state.history[max(earlier)], 1)
