"""Alert rules as configuration: a YAML file beside the scoring model, validated by pydantic.

The default ships as ``alerts/rules/default.yaml``; ``CHS_ALERT_RULES_FILE`` points at another.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, model_validator

from scoring.config import load_config, parse_yaml
from scoring.events import EventKind


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BandChangeRule(_Strict):
    """Alert when the account's published band becomes a worse one (and, optionally, a
    better one). Its hysteresis is the scoring model's ``band_margin_points``: the alerts
    follow the band every consumer sees."""

    @model_validator(mode="before")
    @classmethod
    def _moved_setting(cls, data: Any) -> Any:
        if isinstance(data, dict) and "hysteresis_points" in data:
            raise ValueError(
                "hysteresis_points is now the scoring model's band_margin_points (one margin "
                "for the published band and its alerts; docs/alerts.md): remove it here"
            )
        return data

    enabled: bool = True
    min_minutes_in_band: float = Field(
        default=0.0, ge=0, description="the new band must hold this long before alerting"
    )
    cooldown_hours: float = Field(default=24.0, ge=0, description="per account and band")
    recovery: bool = Field(
        default=True, description="also alert when an account alerted about recovers"
    )


class SharpDropRule(_Strict):
    enabled: bool = True
    points: PositiveFloat = Field(default=15.0, description="fall of at least this many points")
    window_days: int = Field(default=7, ge=1, le=30, description="from the high of this window")
    cooldown_hours: float = Field(default=72.0, ge=0)
    severity: Severity = Severity.WARNING


class CriticalEventRule(_Strict):
    """Alert on one event, e.g. a failed payment, whatever it does to the score."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: EventKind
    match: dict[str, list[str]] = Field(
        default_factory=dict, description="event field -> values that trigger the rule"
    )
    segments: list[str] = Field(
        default_factory=list, description="only accounts in these segments; empty: all"
    )
    severity: Severity = Severity.CRITICAL
    cooldown_hours: float = Field(default=24.0, ge=0)


class StaleRule(_Strict):
    enabled: bool = True
    severity: Severity = Severity.WARNING


class AlertRules(_Strict):
    warmup_days: float = Field(
        default=3.0, ge=0, description="no score alerts until an account has this much data"
    )
    max_lag_hours: float = Field(
        default=48.0, gt=0, description="no alerts about times further back (replays, backfills)"
    )
    band_change: BandChangeRule = Field(default_factory=BandChangeRule)
    sharp_drop: SharpDropRule = Field(default_factory=SharpDropRule)
    critical_events: list[CriticalEventRule] = Field(default_factory=list)
    stale: StaleRule = Field(default_factory=StaleRule)


def load_rules(path: Path) -> AlertRules:
    return load_config(AlertRules, path)


@cache
def default_rules() -> AlertRules:
    text = resources.files("alerts").joinpath("rules/default.yaml").read_text()
    return parse_yaml(AlertRules, text, "alerts/rules/default.yaml")
