"""What the score API answers: pydantic models, also the source of its OpenAPI description."""

from __future__ import annotations

from datetime import date

from pydantic import AwareDatetime, BaseModel, ConfigDict

from alerts.alert import Alert
from scoring.score import Onboarding, RollupInfo
from scoring.scoring_model import Threshold
from scoring.update import ScoreUpdate


class DailyScore(BaseModel):
    model_config = ConfigDict(frozen=True)

    day: date
    score: float
    """The account's closing score that day (its last score computed on that day)."""


class AccountSummary(BaseModel):
    """One row of the book of business."""

    account_id: str
    score: float
    band: str
    grade: str
    segment: str | None
    stale: bool
    owner: str | None
    drivers: list[str]
    """The top reasons of the account's last score change, in words."""
    drags: list[str] = []
    """What pulls the score down: the measures costing it the most points, in words."""
    as_of: AwareDatetime
    parent: str | None = None
    """The account's parent (``parent_account_id``), if it has one."""
    rollup: RollupInfo | None = None
    """Set for a parent scored as a roll-up of its children (``GET /accounts?parent=``)."""
    history: list[DailyScore] | None = None
    """Daily closing scores of the last 90 days, when asked for (``history=true``)."""
    previous_score: float | None = None
    """None for its first score."""
    onboarding: Onboarding | None = None
    """Set while the account is new (fewer days of data than the model's onboarding)."""
    bands: list[Threshold] = []
    """Its segment's band thresholds, best first."""


class AccountPage(BaseModel):
    items: list[AccountSummary]
    next_cursor: str | None
    """Pass as ``cursor`` for the next page; None on the last page."""


class AccountHistory(BaseModel):
    account_id: str
    days: list[DailyScore]


class AlertList(BaseModel):
    alerts: list[Alert]
    """Newest first."""


class Problem(BaseModel):
    """An error: what was wrong, in words."""

    error: str


ACCOUNT_DETAIL = ScoreUpdate
"""``GET /accounts/{id}``: the account's latest ScoreUpdate, as published on chs.scores."""
