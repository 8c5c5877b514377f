"""The scoring model as data: component weights, measure targets and band thresholds.

The defaults follow the seed articles: usage carries the most weight, feedback (support and
sentiment) and financial health (billing) share the rest, and bands split healthy / at-risk /
critical. Everything a CS team would tune is a field here, not a constant in the code.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator


class Component(StrEnum):
    USAGE = "usage"
    ADOPTION = "adoption"
    SUPPORT = "support"
    BILLING = "billing"
    SENTIMENT = "sentiment"


class Band(StrEnum):
    HEALTHY = "healthy"
    AT_RISK = "at-risk"
    CRITICAL = "critical"


class BandThresholds(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    healthy: float = Field(default=70.0, ge=0, le=100, description="score >= this is healthy")
    at_risk: float = Field(default=40.0, ge=0, le=100, description="score >= this is at-risk")

    @model_validator(mode="after")
    def _ordered(self) -> BandThresholds:
        if self.at_risk > self.healthy:
            raise ValueError("at_risk threshold must not exceed the healthy threshold")
        return self

    def band_of(self, score: float) -> Band:
        if score >= self.healthy:
            return Band.HEALTHY
        if score >= self.at_risk:
            return Band.AT_RISK
        return Band.CRITICAL


class UsageMeasures(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    window_days: PositiveInt = Field(default=30, le=60)
    target_active_days: PositiveInt = Field(
        default=20, description="active days in the window that earn a full activity score"
    )
    trend_recent_days: PositiveInt = Field(default=7, description="recent period of the trend")
    trend_baseline_days: PositiveInt = Field(
        default=21, description="baseline period just before the recent one"
    )
    activity_weight: float = Field(default=0.4, ge=0, le=1)
    """Share of the usage component from active days; the rest comes from the trend."""

    @model_validator(mode="after")
    def _fits_horizon(self) -> UsageMeasures:
        if self.trend_recent_days + self.trend_baseline_days > 90:
            raise ValueError("trend periods must fit in the 90-day state horizon")
        return self


class AdoptionMeasures(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    window_days: PositiveInt = Field(default=30, le=90)
    target_features: PositiveInt = Field(default=6, description="distinct features for 100")
    target_users: PositiveInt = Field(default=10, description="distinct active users for 100")


class SupportMeasures(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    window_days: PositiveInt = Field(default=30, le=90)
    penalty_per_open: dict[str, float] = Field(
        default_factory=lambda: {"low": 5.0, "normal": 10.0, "high": 20.0, "urgent": 30.0},
        description="points off per open ticket, by priority",
    )
    penalty_per_opened_in_window: float = Field(default=5.0, ge=0)


class BillingMeasures(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    window_days: PositiveInt = Field(default=90, le=90)
    penalty_per_unpaid_invoice: float = Field(default=35.0, ge=0)
    penalty_per_failure_in_window: float = Field(default=10.0, ge=0)


class SentimentMeasures(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    window_days: PositiveInt = Field(default=90, le=90)


def _default_weights() -> dict[Component, PositiveFloat]:
    return {
        Component.USAGE: 0.30,
        Component.ADOPTION: 0.15,
        Component.SUPPORT: 0.15,
        Component.BILLING: 0.20,
        Component.SENTIMENT: 0.20,
    }


class ScoringModel(BaseModel):
    """A complete, validated scoring model. ``version`` is stamped on every ScoreUpdate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "default"
    weights: dict[Component, PositiveFloat] = Field(default_factory=_default_weights)
    bands: BandThresholds = Field(default_factory=BandThresholds)
    usage: UsageMeasures = Field(default_factory=UsageMeasures)
    adoption: AdoptionMeasures = Field(default_factory=AdoptionMeasures)
    support: SupportMeasures = Field(default_factory=SupportMeasures)
    billing: BillingMeasures = Field(default_factory=BillingMeasures)
    sentiment: SentimentMeasures = Field(default_factory=SentimentMeasures)

    @cached_property
    def version(self) -> str:
        """Name plus a short hash of the content: two different models never share it."""
        digest = hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]
        return f"{self.name}@{digest}"


DEFAULT_MODEL = ScoringModel()
