"""The audit's figures as the worker publishes them (``/metrics``, Redis) and the API serves them
(``GET /audit``): per model version and lead, the AUC, the lift and the counts behind them."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import AwareDatetime, BaseModel, ConfigDict

from scoring.audit import (
    ALL_SEGMENTS,
    BOTTOM_SHARE,
    LEADS,
    MIN_CHURNERS,
    Tally,
    TallyKey,
    hanley_mcneil_stderr,
)


class LeadFigure(BaseModel):
    model_config = ConfigDict(frozen=True)

    lead_days: int
    churners: int
    """Churners whose score ``lead_days`` before their churn was judged."""
    survivors_mean: float | None
    """The mean number of accounts each was compared with."""
    auc: float | None
    """The chance that a churner's score then was below a survivor's (ties half): 0.5 is a
    coin, 1 a perfect ranking. None without churners."""
    auc_stderr: float | None
    """Its standard error (Hanley and McNeil)."""
    lift: float | None
    """How many times more often the lowest-scored tenth churned than accounts on average."""
    note: str | None = None
    """Set when too few churners make the figure a guess."""


class ModelAudit(BaseModel):
    model_config = ConfigDict(frozen=True)

    model_version: str
    role: str
    """``live`` (publishes scores) or ``shadow`` (evaluated beside it, publishes nothing)."""
    leads: list[LeadFigure]
    segments: dict[str, list[LeadFigure]]
    """The same per segment of the churners (each still compared with every survivor)."""


class AuditReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    computed_at: AwareDatetime
    window_days: int
    """Churns of the last this many days count."""
    outcomes: dict[str, int]
    """Outcomes received within the window, by kind."""
    models: list[ModelAudit]


def lead_figure(lead: int, tally: Tally | None) -> LeadFigure:
    if tally is None or tally.churners <= 0:
        return LeadFigure(
            lead_days=lead,
            churners=0,
            survivors_mean=None,
            auc=None,
            auc_stderr=None,
            lift=None,
            note="no churner judged yet",
        )
    churners = tally.churners
    auc = tally.above / churners
    survivors = tally.survivors / churners
    stderr = hanley_mcneil_stderr(auc, churners, survivors)
    note = None
    if churners < MIN_CHURNERS:
        note = f"only {churners} churners: at least {MIN_CHURNERS} are needed to trust it"
    return LeadFigure(
        lead_days=lead,
        churners=churners,
        survivors_mean=round(survivors, 1),
        auc=round(auc, 4),
        auc_stderr=None if stderr is None else round(stderr, 4),
        lift=round(tally.bottom / churners / BOTTOM_SHARE, 3),
        note=note,
    )


def build_report(
    tallies: Mapping[TallyKey, Tally],
    outcomes: Mapping[str, int],
    versions: list[str],
    window_days: int,
    computed_at: AwareDatetime,
) -> AuditReport:
    """The figures of ``versions`` (the live model's first) from the summed tallies."""
    segments: dict[str, set[str]] = {}
    for version, _, segment in tallies:
        if segment != ALL_SEGMENTS:
            segments.setdefault(version, set()).add(segment)
    models = [
        ModelAudit(
            model_version=version,
            role="live" if index == 0 else "shadow",
            leads=[lead_figure(lead, tallies.get((version, lead, ALL_SEGMENTS))) for lead in LEADS],
            segments={
                segment: [
                    lead_figure(lead, tallies.get((version, lead, segment))) for lead in LEADS
                ]
                for segment in sorted(segments.get(version, ()))
            },
        )
        for index, version in enumerate(versions)
    ]
    return AuditReport(
        computed_at=computed_at,
        window_days=window_days,
        outcomes=dict(sorted(outcomes.items())),
        models=models,
    )
