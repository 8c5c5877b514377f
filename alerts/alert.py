"""The ``Alert`` wire model, published on ``chs.alerts`` keyed by account."""

from __future__ import annotations

import hashlib

from pydantic import AwareDatetime, BaseModel, ConfigDict

from alerts.config import Severity


def alert_id(account_id: str, rule: str, trigger: str) -> str:
    """Deterministic: a replay of the same input raises an alert with the same id."""
    return hashlib.sha256(f"{account_id}|{rule}|{trigger}".encode()).hexdigest()[:32]


class Alert(BaseModel):
    model_config = ConfigDict(frozen=True)

    alert_id: str
    account_id: str
    rule: str
    """``band_change``, ``recovery``, ``sharp_drop``, ``critical_event:<name>`` or ``stale``."""
    severity: Severity
    title: str
    old_score: float | None
    new_score: float
    old_band: str | None
    new_band: str
    drivers: list[str]
    """Why the score moved, one driver per line (from the ScoreUpdate's explanation); for a
    critical event, what the event did to the score."""
    drags: list[str] = []
    """Band and drop alerts: what pulls the score down, worst first (the ScoreUpdate's
    drags)."""
    owner: str | None
    segment: str | None
    occurred_at: AwareDatetime
    trigger: str
    """The input that raised it: an event id, or ``tick:<due time>`` for the timer."""
    model_version: str
