"""What a score must beat: two baselines any analyst could build from the raw events.

- *fewer events in 30 days*: the account's events of every kind in the last 30 days, alone;
- *logistic on counts*: a logistic regression of churn on per-kind counts (last 30 days and
  the 30 before, log-scaled), days as a customer and days since the last event, fitted on the
  observations it is judged on (so it flatters itself a little).

The counts come from the account's day buckets, the same state the score reads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scoring.measures import tenure_days
from scoring.state import SECONDS_PER_DAY, AccountState, DayBucket, day_of
from sim.regression import logistic_regression

COUNT_WINDOW_DAYS = 30
COUNT_KINDS = ("logins", "feature_uses", "tickets", "payment_issues", "surveys")
COUNT_FEATURES = (
    *(f"{kind}_30d" for kind in COUNT_KINDS),
    *(f"{kind}_30d_before" for kind in COUNT_KINDS),
    "tenure_days",
    "days_since_last_event",
)


def _kind_counts(bucket: DayBucket) -> tuple[float, ...]:
    return (
        bucket.logins,
        bucket.feature_uses,
        bucket.tickets_opened + bucket.tickets_resolved,
        bucket.payment_failures + bucket.refunds,
        bucket.nps_count + bucket.csat_count + bucket.ces_count,
    )


def simple_counts(state: AccountState, at: float) -> tuple[float, ...]:
    """The baselines' features of ``state`` as of ``at``, in ``COUNT_FEATURES`` order (counts
    as they are; ``features`` scales them)."""
    today = day_of(at)
    recent = [0.0] * len(COUNT_KINDS)
    before = [0.0] * len(COUNT_KINDS)
    for day, bucket in state.days.items():
        age = today - day
        if 0 <= age < COUNT_WINDOW_DAYS:
            target = recent
        elif COUNT_WINDOW_DAYS <= age < 2 * COUNT_WINDOW_DAYS:
            target = before
        else:
            continue
        for index, count in enumerate(_kind_counts(bucket)):
            target[index] += count
    tenure = tenure_days(state, at) or 0.0
    last = state.watermark
    since = (at - last) / SECONDS_PER_DAY if last is not None else 365.0
    return (*recent, *before, tenure, max(0.0, since))


def events_30d(counts: Sequence[float]) -> float:
    """Events of every kind in the last 30 days, from ``simple_counts``."""
    return sum(counts[: len(COUNT_KINDS)])


def features(counts: Sequence[float]) -> list[float]:
    """The regression's inputs: every count and day figure on a log scale."""
    return [math.log1p(max(0.0, value)) for value in counts]


@dataclass(frozen=True)
class LogisticBaseline:
    intercept: float
    coefficients: tuple[float, ...]

    def risk(self, counts: Sequence[float]) -> float:
        """Log-odds of churn (higher = more likely to churn)."""
        row = features(counts)
        return self.intercept + sum(c * x for c, x in zip(self.coefficients, row, strict=True))


def fit_logistic(
    rows: Sequence[Sequence[float]], labels: Sequence[bool], l2: float = 1.0
) -> LogisticBaseline:
    """The counts regression: ``simple_counts`` rows on a log scale."""
    intercept, slopes = logistic_regression([features(row) for row in rows], labels, l2)
    return LogisticBaseline(intercept, tuple(slopes))
