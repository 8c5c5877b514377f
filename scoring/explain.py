"""Why a score is where it is and why it moved.

A driver is a component's part in the change of the overall score since the previous
ScoreUpdate, in points, with the causes a CSM can check: a measure that moved (raw value
before -> after), the peers that moved (their median before -> after), a component that
started or stopped counting, e.g. ``usage -9: days since last login 2 -> 16; active days in
30 days 18 -> 9`` or ``billing -12: now counts: failed payments in 30 days 1``. The parts add
up to the change: a component's own move at its new share, and a component that comes or
goes by how far its score stands from the rest (``component_effects``), so a driver's sign is
always its cause's.

A drag is a cause (a measure, with the others of the same metric; or the CSM override) that
costs the score points against a perfect one, with its raw value, e.g. ``usage -22: active
days in 30 days 3``: what pulls the score down, whether or not it moved lately.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from scoring.measures import METRIC_MOVES
from scoring.score import MeasureScore, Score
from scoring.scoring_model import (
    OVERRIDE_COMPONENT,
    Aggregation,
    LinearMapping,
    LogMapping,
    Measure,
    Metric,
    ScoringModel,
)
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
    """Labels from the model, used to put drivers and drags in words."""

    def __init__(self, model: ScoringModel) -> None:
        self._model = model
        self._measures: dict[str, Measure] = {
            m.name: m for c in model.components.values() for m in c.measures
        }
        self._relative = {m.name for m in model.peer_measures}
        self.kinds_moving: dict[str, frozenset[str]] = {
            name: frozenset(str(kind) for m in c.measures for kind in METRIC_MOVES[m.metric].inputs)
            for name, c in model.components.items()
        }
        """Component -> the inputs (event kinds, attributes) that can move it."""

    def drags(self, score: Score) -> list[Drag]:
        """The causes costing ``score`` the most points against a perfect score, worst first.

        A measure's cost is its component's share of the score times its own share of the
        component (its weight among the component's scored measures; with ``min`` or ``max``
        aggregation, the measure that sets the component bears all of it) times the points it
        lacks to 100. Measures of one metric in one component (failed payments in 30 and in 90
        days) are one cause: one drag, their costs summed.
        """
        costs: dict[tuple[str, object], list[tuple[float, str | None]]] = {}
        for name, component in score.components.items():
            if name == OVERRIDE_COMPONENT:
                costs[(name, None)] = [(component.weight * (100.0 - component.score), None)]
                continue
            for measure, share in self._measure_shares(name, score):
                lacking = 100.0 - score.measures[measure].score
                cause = (name, self._measures[measure].metric)
                costs.setdefault(cause, []).append((component.weight * share * lacking, measure))
        ranked = sorted(
            (
                (sum(p for p, _ in parts), name, sorted(parts, key=lambda p: -p[0]))
                for (name, _), parts in costs.items()
            ),
            key=lambda cost: -cost[0],
        )
        return [
            self._drag(component, [m for _, m in parts], round(points, 1), score)
            for points, component, parts in ranked[:MAX_DRAGS]
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

    def _drag(
        self, component: str, measures: list[str | None], points: float, score: Score
    ) -> Drag:
        first = measures[0]
        if first is None:
            words = self._override_words(score)
        else:
            words = self._measure_words(first, score.measures[first])
            others = [
                f"{self._measures[m].window_days} days: {_number(score.measures[m].value)}"
                for m in measures[1:]
                if m is not None and self._measures[m].window_days is not None
            ]
            if others:
                words = f"{words} ({'; '.join(others)})"
        return Drag(
            component=component,
            measure=first,
            points=points,
            text=f"{component} {_points(-points)}: {words}",
        )

    def drivers(self, previous: Published | None, score: Score) -> list[Driver]:
        """The components behind the change from ``previous`` to ``score``, largest first."""
        if previous is None:
            return []
        return [
            self._driver(name, delta, previous, score)
            for name, delta in moved_components(previous, score)
        ]

    def _driver(self, component: str, delta: float, previous: Published, score: Score) -> Driver:
        if component == OVERRIDE_COMPONENT:
            words = self._override_words(score)
            changes: list[MeasureChange] = []
        elif component not in score.components:
            words, changes = "no longer counts: no data in its windows", []
        elif component not in previous.component_scores:
            changes = self._entering(component, score)
            words = "now counts: " + "; ".join(
                self._measure_words(c.measure, score.measures[c.measure]) for c in changes
            )
        else:
            changes, words = self._moved_measures(component, delta, previous, score)
        text = f"{component} {_points(delta)}: {words}"
        return Driver(component=component, delta=delta, text=text, measures=changes)

    def _entering(self, component: str, score: Score) -> list[MeasureChange]:
        """A component that starts counting: its measures that cost it most, worst first."""
        found = [
            (score.measures[m.name].score, m)
            for m in self._model.components[component].measures
            if m.name in score.measures
        ]
        found.sort(key=lambda item: item[0])
        return [
            MeasureChange(measure=m.name, label=m.label, old=None, new=score.measures[m.name].value)
            for _, m in found[:MAX_MEASURES_PER_DRIVER]
        ]

    def _moved_measures(
        self, component: str, delta: float, previous: Published, score: Score
    ) -> tuple[list[MeasureChange], str]:
        """The measures whose own score moved the way the component did, most first, each
        with the cause that moved it: its value, its peers' median, or both."""
        moved = []
        level = previous.component_scores[component]
        for measure in self._model.components[component].measures:
            name = measure.name
            now = score.measures.get(name)
            was_score = previous.measure_scores.get(name)
            if now is None and was_score is None:
                continue
            # A measure that comes or goes pulls its component towards or away from its own
            # score, as a component does the overall score.
            after = now.score if now is not None else level
            before = was_score if was_score is not None else level
            step = (
                after - before
                if now is not None and was_score is not None
                else (after - level if was_score is None else level - before)
            )
            if step * delta > 0:
                moved.append((abs(step), measure, now))
        moved.sort(key=lambda item: -item[0])
        changes, words = [], []
        for _, measure, now in moved[:MAX_MEASURES_PER_DRIVER]:
            name = measure.name
            was = previous.measures.get(name)
            new = None if now is None else now.value
            changes.append(MeasureChange(measure=name, label=measure.label, old=was, new=new))
            words.append(self._change_words(measure, was, now, previous))
        if not words:
            was_score = previous.component_scores[component]
            words.append(
                f"its score {_number(was_score)} -> {_number(score.component_scores[component])}"
            )
        return changes, "; ".join(words)

    def _change_words(
        self, measure: Measure, was: float | None, now: MeasureScore | None, previous: Published
    ) -> str:
        label = measure.label
        if now is None:
            return f"{label}: no data (no longer counted)"
        if previous.measure_scores.get(measure.name) is None:
            return f"{label}: {_number(now.value)} (newly counted)"
        words = (
            f"{label} {_number(was)}"
            if was == now.value
            else f"{label} {_number(was)} -> {_number(now.value)}"
        )
        old_median = previous.peer_medians.get(measure.name)
        if (
            now.peers_median is not None
            and old_median is not None
            and old_median != now.peers_median
        ):
            words += f", peers' median {_number(old_median)} -> {_number(now.peers_median)}"
        elif now.peers_median != old_median:
            words += f" ({self._scale_words(now)})"
        return words

    def _scale_words(self, scored: MeasureScore) -> str:
        if scored.peers_median is not None:
            return f"peers' median {_number(scored.peers_median)}"
        minimum = self._model.peers.min_accounts
        return f"on a fixed scale: fewer than {minimum} comparable accounts yet"

    def _measure_words(self, measure: str, scored: MeasureScore) -> str:
        """``active days in 30 days 3 (peers' median 17)``; the days a new account's count
        was scaled up from; tenure as the youth it is."""
        spec = self._measures[measure]
        if scored.value is None:
            return f"{spec.label}: no data, counted as {scored.score:.0f} of 100"
        if spec.metric is Metric.TENURE_DAYS:
            return _youth_words(spec, scored.value, self._model.onboarding.days)
        notes = []
        if scored.scaled_from_days is not None:
            days = scored.scaled_from_days
            notes.append(f"scaled up from its first {'day' if days == 1 else f'{days} days'}")
        if scored.peers_median is not None or measure in self._relative:
            notes.append(self._scale_words(scored))
        words = f"{spec.label} {_number(scored.value)}"
        return f"{words} ({'; '.join(notes)})" if notes else words

    @staticmethod
    def _override_words(score: Score) -> str:
        override = score.override
        if override is None:
            return "CSM override ended"
        return f"CSM override {override.score:.0f} by {override.author} ({override.reason})"

    def notes(self, previous: Published | None, score: Score) -> list[str]:
        """Changes of state that are not a component's: onboarding, staleness, segment."""
        notes = []
        new = score.onboarding
        if previous is None:
            if new is not None:
                days = f"{new.days_of_data} of {new.judged_from_day} days of data"
                return [f"first score; new account: {days}"]
            return ["first score"]
        if previous.onboarding and new is None:
            notes.append(f"no longer new: {self._model.onboarding.days} days of data")
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


def _youth_words(measure: Measure, days: float, judged_from: int) -> str:
    """Tenure as youth: ``new customer: 86 days, full trust at 180``."""
    mapping = measure.mapping
    full = mapping.high if isinstance(mapping, LinearMapping | LogMapping) else None
    if full is not None and days >= full:
        return f"customer for {_number(days)} days"
    words = f"new customer: {_number(days)} days"
    if days < judged_from:
        words += f" (counted as {judged_from} until judged)"
    return f"{words}, full trust at {_number(full)}" if full is not None else words


def component_effects(previous: Published | None, score: Score) -> dict[str, float]:
    """Each component's part in the change of the overall score since ``previous``, in
    points, the parts summing to the change (up to rounding and a change of weights):

    - one present before and after: its share now times the move of its own score;
    - one that starts counting: its share now times how far its score stands from the
      previous score of the components that were there before (``rest``);
    - one that stops counting: minus its old share times how far it stood from ``rest``.

    A component is weighed among the ones present, so a component that comes or goes moves
    every share; these parts give that move to the component that caused it.
    """
    components = score.components
    if previous is None:
        return {}
    old_scores, old_shares = previous.component_scores, previous.shares
    if not old_scores:  # published before component scores were kept
        old = previous.contributions
        return {
            name: (components[name].contribution if name in components else 0.0)
            - old.get(name, 0.0)
            for name in set(old) | set(components)
        }
    both = [name for name in components if name in old_scores]
    weight = sum(components[name].weight for name in both)
    rest = (
        sum(components[n].weight * old_scores[n] for n in both) / weight
        if weight
        else previous.score
    )
    effects = {}
    for name, component in components.items():
        was = old_scores.get(name)
        effects[name] = component.weight * (component.score - (rest if was is None else was))
    for name, was in old_scores.items():
        if name not in components:
            effects[name] = -old_shares.get(name, 0.0) * (was - rest)
    return effects


def moved_components(previous: Published | None, score: Score) -> list[tuple[str, float]]:
    """The components (a roll-up's: its members) with the largest parts in the change since
    ``previous`` (``component_effects``), in points, at most ``MAX_DRIVERS``."""
    deltas = [
        (name, round(effect, 1))
        for name, effect in component_effects(previous, score).items()
        if abs(round(effect, 1)) >= MIN_DRIVER_POINTS
    ]
    deltas.sort(key=lambda item: -abs(item[1]))
    return deltas[:MAX_DRIVERS]


def change_since(state: AccountState, score: float, now: float, days: int) -> float | None:
    """Score change against the closing score of ``days`` ago (or the latest day before it)."""
    target = day_of(now) - days
    earlier = [day for day in state.history if day <= target]
    if not earlier:
        return None
    return round(score - state.history[max(earlier)], 1)
