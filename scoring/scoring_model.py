"""The scoring model as configuration: a YAML file validated by pydantic.

measures (a metric over a window, mapped to 0-100) -> components (weighted, with an
aggregation) -> overall score (weighted mean of components) -> band and letter grade.
Segments change weights and thresholds for accounts whose attributes match. The default model
ships in ``scoring/models/default.yaml`` and is documented field by field in docs/scoring.md.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from enum import StrEnum
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    model_validator,
)

from scoring.config import ConfigError, load_config, parse_yaml
from scoring.events import AccountAttributes
from scoring.state import HORIZON_DAYS

OVERRIDE_COMPONENT = "csm_override"
"""The component a CSM's sentiment override enters the score as."""


class Metric(StrEnum):
    """The catalogue of metrics a measure can use (see docs/scoring.md for each)."""

    LOGINS = "logins"
    FEATURE_USES = "feature_uses"
    ACTIVE_DAYS = "active_days"
    ACTIVE_USERS = "active_users"
    SEAT_UTILISATION = "seat_utilisation"
    LOGINS_PER_SEAT = "logins_per_seat"
    DAYS_SINCE_LAST_LOGIN = "days_since_last_login"
    USAGE_TREND = "usage_trend"
    FEATURE_BREADTH = "feature_breadth"
    FEATURE_DEPTH = "feature_depth"
    USES_PER_LOGIN = "uses_per_login"
    STICKY_FEATURES = "sticky_features"
    TICKETS_OPENED = "tickets_opened"
    OPEN_TICKETS = "open_tickets"
    OPEN_URGENT_TICKETS = "open_urgent_tickets"
    TIME_TO_RESOLVE_HOURS = "time_to_resolve_hours"
    PAYMENT_FAILURES = "payment_failures"
    DAYS_OVERDUE = "days_overdue"
    REFUNDS = "refunds"
    NPS_LATEST = "nps_latest"
    NPS_AVERAGE = "nps_average"
    CSAT_LATEST = "csat_latest"
    CSAT_AVERAGE = "csat_average"
    CES_LATEST = "ces_latest"
    CES_AVERAGE = "ces_average"
    TENURE_DAYS = "tenure_days"


WINDOWED_METRICS = frozenset(
    {
        Metric.LOGINS,
        Metric.FEATURE_USES,
        Metric.ACTIVE_DAYS,
        Metric.ACTIVE_USERS,
        Metric.SEAT_UTILISATION,
        Metric.LOGINS_PER_SEAT,
        Metric.USAGE_TREND,
        Metric.FEATURE_BREADTH,
        Metric.FEATURE_DEPTH,
        Metric.USES_PER_LOGIN,
        Metric.STICKY_FEATURES,
        Metric.TICKETS_OPENED,
        Metric.TIME_TO_RESOLVE_HOURS,
        Metric.PAYMENT_FAILURES,
        Metric.REFUNDS,
        Metric.NPS_LATEST,
        Metric.NPS_AVERAGE,
        Metric.CSAT_LATEST,
        Metric.CSAT_AVERAGE,
        Metric.CES_LATEST,
        Metric.CES_AVERAGE,
    }
)
"""Metrics computed over ``window_days``; the others are point-in-time values."""

MAX_WINDOW_DAYS = 90
"""Day buckets are kept for this long (``scoring.state.HORIZON_DAYS``)."""


MAX_PEER_SKETCHES = 150
"""Peer groups x percentile measures: a partition's two days of sketches (about 3 KB each)
then fit in one record of the peers topic (under 1 MB)."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LinearMapping(_Strict):
    """0 at ``low`` and 100 at ``high`` (reversed when lower is better), clamped outside."""

    type: Literal["linear"]
    low: float
    high: float
    higher_is_better: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> LinearMapping:
        if not self.low < self.high:
            raise ValueError("low must be less than high")
        return self

    def score(self, raw: float) -> float:
        fraction = (raw - self.low) / (self.high - self.low)
        return _directed(fraction, self.higher_is_better)


class LogMapping(_Strict):
    """Like linear, on log(1 + x - low): early gains count most (users, uses, tenure)."""

    type: Literal["log"]
    low: float = 0.0
    high: float
    higher_is_better: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> LogMapping:
        if not self.low < self.high:
            raise ValueError("low must be less than high")
        return self

    def score(self, raw: float) -> float:
        fraction = math.log1p(max(0.0, raw - self.low)) / math.log1p(self.high - self.low)
        return _directed(fraction, self.higher_is_better)


class Step(_Strict):
    min: float = Field(description="the step applies from this raw value up")
    score: float = Field(ge=0, le=100)


class StepsMapping(_Strict):
    """Bands of raw values: the score of the last step whose ``min`` the value reaches."""

    type: Literal["steps"]
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _ascending(self) -> StepsMapping:
        mins = [step.min for step in self.steps]
        if mins != sorted(mins) or len(set(mins)) != len(mins):
            raise ValueError("steps must have strictly ascending min values")
        return self

    def score(self, raw: float) -> float:
        result = self.steps[0].score
        for step in self.steps:
            if raw < step.min:
                break
            result = step.score
        return result


def _directed(fraction: float, higher_is_better: bool) -> float:
    fraction = min(1.0, max(0.0, fraction))
    return 100.0 * (fraction if higher_is_better else 1.0 - fraction)


AbsoluteMapping = Annotated[LinearMapping | LogMapping | StepsMapping, Field(discriminator="type")]


class PercentileMapping(_Strict):
    """The account's rank among its peers on the raw value (``scoring.peers``): 0 for the
    lowest, 100 from the ``full_at`` percentile up (reversed when lower is better). Below
    ``peers.min_accounts`` peers with a value, ``fallback`` scores it instead."""

    type: Literal["percentile"]
    higher_is_better: bool = True
    full_at: float = Field(
        default=100.0,
        gt=0,
        le=100,
        description="the percentile from which the measure scores 100 (50: the median is enough)",
    )
    fallback: AbsoluteMapping

    def score(self, raw: float) -> float:
        """The absolute score: what counts while the peers are too few."""
        return self.fallback.score(raw)

    def score_rank(self, percentile: float) -> float:
        standing = percentile if self.higher_is_better else 100.0 - percentile
        return 100.0 * min(1.0, standing / self.full_at)


ValueMapping = Annotated[
    LinearMapping | LogMapping | StepsMapping | PercentileMapping, Field(discriminator="type")
]


class MissingRule(StrEnum):
    SKIP = "skip"
    """Leave the measure out and share its weight among the others."""
    NEUTRAL = "neutral"
    """Count it as ``neutral_score``."""


class Measure(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str = Field(description="how explanations name it, e.g. 'logins in 30 days'")
    metric: Metric
    window_days: int | None = Field(default=None, ge=1, le=MAX_WINDOW_DAYS)
    baseline_days: int | None = Field(
        default=None, ge=1, le=MAX_WINDOW_DAYS, description="usage_trend only"
    )
    weight: PositiveFloat = 1.0
    mapping: ValueMapping
    missing: MissingRule = MissingRule.SKIP
    neutral_score: float = Field(default=50.0, ge=0, le=100)

    @model_validator(mode="after")
    def _window_fits_metric(self) -> Measure:
        windowed = self.metric in WINDOWED_METRICS
        if windowed and self.window_days is None:
            raise ValueError(f"metric {self.metric.value} needs window_days")
        if not windowed and self.window_days is not None:
            raise ValueError(f"metric {self.metric.value} takes no window_days")
        if self.metric is Metric.USAGE_TREND:
            if self.baseline_days is None:
                raise ValueError("usage_trend needs baseline_days")
            if (self.window_days or 0) + self.baseline_days > MAX_WINDOW_DAYS:
                raise ValueError(f"window_days + baseline_days must be <= {MAX_WINDOW_DAYS}")
        elif self.baseline_days is not None:
            raise ValueError("only usage_trend takes baseline_days")
        return self


class Aggregation(StrEnum):
    WEIGHTED_MEAN = "weighted_mean"
    MIN = "min"
    MAX = "max"


class ComponentModel(_Strict):
    label: str | None = None
    weight: PositiveFloat
    aggregation: Aggregation = Aggregation.WEIGHTED_MEAN
    measures: list[Measure] = Field(min_length=1)

    def aggregate(self, scores: list[tuple[Measure, float]]) -> float:
        values = [score for _, score in scores]
        if self.aggregation is Aggregation.MIN:
            return min(values)
        if self.aggregation is Aggregation.MAX:
            return max(values)
        total = sum(measure.weight for measure, _ in scores)
        return sum(measure.weight * score for measure, score in scores) / total


class Threshold(_Strict):
    label: str = Field(min_length=1, max_length=40)
    min: float = Field(ge=0, le=100)


def _check_thresholds(thresholds: list[Threshold]) -> list[Threshold]:
    mins = [t.min for t in thresholds]
    if mins != sorted(mins, reverse=True) or len(set(mins)) != len(mins):
        raise ValueError("list the best first, with strictly falling min values")
    if mins[-1] != 0:
        raise ValueError("the last must have min 0, so that every score has one")
    if len({t.label for t in thresholds}) != len(thresholds):
        raise ValueError("labels must be unique")
    return thresholds


Bands = Annotated[list[Threshold], Field(min_length=2), AfterValidator(_check_thresholds)]


def label_for(thresholds: list[Threshold], score: float) -> str:
    for threshold in thresholds:
        if score >= threshold.min:
            return threshold.label
    return thresholds[-1].label


def rank_for(thresholds: list[Threshold], score: float) -> int:
    """The index of ``label_for``'s band (0 = best)."""
    return next(i for i, t in enumerate(thresholds) if score >= t.min or i == len(thresholds) - 1)


def hysteretic_rank(current: int, score: float, thresholds: list[Threshold], margin: float) -> int:
    """The band rank after ``score``, leaving band ``current`` only ``margin`` past it."""
    rank = min(current, len(thresholds) - 1)
    while rank < len(thresholds) - 1 and score < thresholds[rank].min - margin:
        rank += 1
    while rank > 0 and score >= thresholds[rank - 1].min + margin:
        rank -= 1
    return rank


def steady_label(
    thresholds: list[Threshold], previous: str | None, score: float, margin: float
) -> str:
    """The band of ``score`` for an account last published in band ``previous``: it stays
    there until the score is ``margin`` points past the threshold (a score wobbling around a
    threshold does not flicker between bands)."""
    ranks = [t.label for t in thresholds]
    if previous not in ranks:
        return label_for(thresholds, score)
    return ranks[hysteretic_rank(ranks.index(previous), score, thresholds, margin)]


SegmentAttribute = Literal["segment", "plan", "lifecycle_stage"]


class Segment(_Strict):
    name: str = Field(min_length=1, max_length=100)
    when: dict[SegmentAttribute, list[str]] = Field(
        min_length=1, description="every attribute must have one of the listed values"
    )
    weights: dict[str, PositiveFloat] = Field(default_factory=dict)
    bands: Bands | None = None

    def matches(self, attributes: AccountAttributes | None) -> bool:
        if attributes is None:
            return False
        return all(getattr(attributes, key) in values for key, values in self.when.items())


class PeerSettings(_Strict):
    """How peer-relative (``percentile``) measures find their peers."""

    min_accounts: int = Field(
        default=50, ge=5, description="fewer peers with a value: the fallback mapping applies"
    )
    tenure_bands_days: list[int] = Field(
        default_factory=list,
        description="split peers by days as a customer at these bounds, e.g. [90, 365]",
    )

    @model_validator(mode="after")
    def _ascending(self) -> PeerSettings:
        bands = self.tenure_bands_days
        if bands != sorted(set(bands)) or any(b <= 0 for b in bands):
            raise ValueError("tenure_bands_days must be positive and strictly ascending")
        return self


class OnboardingSettings(_Strict):
    """How long a new account is *onboarding*: scored without the measures that need a
    history it cannot have yet (its youth), labelled new, and raising no band or drop
    alert (docs/scoring.md)."""

    days: int = Field(
        default=14,
        ge=0,
        le=HORIZON_DAYS,
        description="days of data before it is judged like any other",
    )


class OverrideModel(_Strict):
    weight: PositiveFloat = Field(description="weight of an active CSM override")
    label: str = "CSM override"


class RollupMethod(StrEnum):
    """How a parent's score is rolled up from its children's (``scoring.rollup``)."""

    MRR_WEIGHTED = "mrr_weighted"
    """Weighted by each child's MRR; a child without MRR weighs as the average child."""
    MEAN = "mean"
    MIN = "min"
    """The worst child's score: a group is as healthy as its weakest member."""


class ParentScoring(StrEnum):
    """What a parent that also has events of its own is scored by."""

    ROLLUP = "rollup"
    OWN = "own"
    BOTH = "both"
    """Its own score as one more member of the roll-up, weighted by its own MRR."""


class RollupSettings(_Strict):
    method: RollupMethod = RollupMethod.MRR_WEIGHTED
    parents: ParentScoring = ParentScoring.ROLLUP


class Profile(BaseModel):
    """What applies to one account: the default model or a segment's changes to it."""

    model_config = ConfigDict(frozen=True)

    segment: str | None
    weights: dict[str, float]
    bands: list[Threshold]


class ScoringModel(_Strict):
    """A complete, validated model. ``version`` (name and content hash) is on every update."""

    name: str = Field(min_length=1, max_length=100)
    description: str = ""
    stale_after_days: PositiveFloat = Field(
        default=21.0, description="no data at all for this long makes the score stale"
    )
    reevaluate_hours: PositiveFloat = Field(
        default=6.0, le=24, description="how often time alone re-evaluates an account"
    )
    sticky_features: list[str] = Field(default_factory=list)
    components: dict[str, ComponentModel] = Field(min_length=1)
    override: OverrideModel | None = None
    peers: PeerSettings = Field(default_factory=PeerSettings)
    bands: Bands
    grades: Bands
    segments: list[Segment] = Field(default_factory=list)
    rollup: RollupSettings = Field(default_factory=RollupSettings)
    onboarding: OnboardingSettings = Field(default_factory=OnboardingSettings)
    band_margin_points: float = Field(
        default=3.0,
        ge=0,
        le=20,
        description="a published band is left only this far past its threshold",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ScoringModel:
        if OVERRIDE_COMPONENT in self.components:
            raise ValueError(f"component name {OVERRIDE_COMPONENT!r} is reserved")
        names = [m.name for c in self.components.values() for m in c.measures]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"measure names must be unique, repeated: {', '.join(duplicates)}")
        groups = (len(self.segments) + 1) * (len(self.peers.tenure_bands_days) + 1)
        if groups * len(self.peer_measures) > MAX_PEER_SKETCHES:
            raise ValueError(
                f"{groups} peer groups x {len(self.peer_measures)} percentile measures is more "
                f"than {MAX_PEER_SKETCHES} sketches: fewer segments, tenure bands or measures"
            )
        known = set(self.components) | ({OVERRIDE_COMPONENT} if self.override else set())
        for segment in self.segments:
            unknown = set(segment.weights) - known
            if unknown:
                raise ValueError(
                    f"segment {segment.name!r} weights unknown components: {sorted(unknown)}"
                )
        return self

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy validated anew: pydantic's copies the cached properties below with the
        fields, so a renamed copy kept the original's version (and a shadow made that way was
        audited as the live model)."""
        del deep  # validation builds every nested value anew
        return self.model_validate({**self.model_dump(), **(update or {})})

    @cached_property
    def version(self) -> str:
        # The default roll-up is left out: models written before roll-ups keep their version
        # (the audit's figures are kept by version).
        default_rollup = self.rollup == RollupSettings()
        dumped = self.model_dump_json(exclude={"rollup"} if default_rollup else None)
        digest = hashlib.sha256(dumped.encode()).hexdigest()[:12]
        return f"{self.name}@{digest}"

    @cached_property
    def band_labels(self) -> frozenset[str]:
        """Every band label, the segments' own bands included."""
        segment_bands = [band for segment in self.segments for band in segment.bands or []]
        return frozenset(band.label for band in [*self.bands, *segment_bands])

    @cached_property
    def windows(self) -> tuple[int, ...]:
        """Every window the measures need, for the one pass over the day buckets."""
        days: set[int] = set()
        for component in self.components.values():
            for measure in component.measures:
                if measure.window_days is not None:
                    days.add(measure.window_days)
                if measure.baseline_days is not None:
                    days.add(measure.window_days + measure.baseline_days)  # type: ignore[operator]
        return tuple(sorted(days))

    @cached_property
    def peer_measures(self) -> tuple[Measure, ...]:
        """The measures scored against peers (``percentile`` mappings)."""
        return tuple(
            m
            for c in self.components.values()
            for m in c.measures
            if isinstance(m.mapping, PercentileMapping)
        )

    @cached_property
    def _default_profile(self) -> Profile:
        weights = {name: c.weight for name, c in self.components.items()}
        if self.override is not None:
            weights[OVERRIDE_COMPONENT] = self.override.weight
        return Profile(segment=None, weights=weights, bands=self.bands)

    @cached_property
    def _segment_profiles(self) -> list[tuple[Segment, Profile]]:
        base = self._default_profile
        return [
            (
                segment,
                Profile(
                    segment=segment.name,
                    weights={**base.weights, **segment.weights},
                    bands=segment.bands or base.bands,
                ),
            )
            for segment in self.segments
        ]

    def profile_for(self, attributes: AccountAttributes | None) -> Profile:
        """The first segment whose conditions the attributes meet, else the default."""
        for segment, profile in self._segment_profiles:
            if segment.matches(attributes):
                return profile
        return self._default_profile


def shadow_conflicts(live: ScoringModel, shadow: ScoringModel) -> list[str]:
    """Why ``shadow`` cannot be evaluated beside ``live``: a shadow ranks its peer-relative
    measures against the live model's sketches, which are named by measure; a measure of the
    same name must measure the same thing."""
    if shadow.version == live.version:
        return [f"it is the live model ({live.version})"]
    ranked = {m.name: m for m in live.peer_measures}
    problems = []
    for measure in shadow.peer_measures:
        theirs = ranked.get(measure.name)
        if theirs is not None and (theirs.metric, theirs.window_days, theirs.baseline_days) != (
            measure.metric,
            measure.window_days,
            measure.baseline_days,
        ):
            problems.append(
                f"measure {measure.name!r} is not the live model's {measure.name!r} "
                "(metric or window differ): give it a name of its own"
            )
    return problems


ModelError = ConfigError
"""A model file that cannot be used; the message names the file, the field and the problem."""


def load_model(path: Path) -> ScoringModel:
    """Read and validate a model file."""
    return load_config(ScoringModel, path)


@cache
def default_model() -> ScoringModel:
    """The model that ships with the package."""
    text = resources.files("scoring").joinpath("models/default.yaml").read_text()
    return parse_yaml(ScoringModel, text, "scoring/models/default.yaml")
