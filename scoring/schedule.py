"""When an account must be re-evaluated with no new input: time alone moves its score.

Windows age, days since the last login grow, surveys fall out of their window, an override
expires, the account goes stale. The worker re-evaluates each account at its ``next_due``
time; only due accounts are touched.
"""

from __future__ import annotations

import zlib

from scoring.scoring_model import ScoringModel
from scoring.state import SECONDS_PER_DAY, AccountState


def next_due(state: AccountState, model: ScoringModel, now: float) -> float | None:
    """The next time after ``now`` the account's score may change without input; None if never.

    Periodic, every ``model.reevaluate_hours``, on a grid offset per account so that a large
    book of accounts does not fall due in the same second; plus the exact moments the
    account goes stale, its override expires and its churn takes it away. A stale account is
    frozen: only its churn is due.
    """
    candidates = []
    if state.watermark is not None:
        stale_at = state.watermark + model.stale_after_days * SECONDS_PER_DAY
        if now < stale_at:
            period = model.reevaluate_hours * 3600.0
            offset = zlib.crc32(state.account_id.encode()) % int(period)
            candidates.append(now + period - (now - offset) % period)
            candidates.append(stale_at)
    override = state.override
    if override is not None and override.expires_at > now:
        candidates.append(override.expires_at)
    if state.churn_at is not None and state.churned_day is None:
        candidates.append(state.churn_at)  # the account leaves then, input or not
    return min(candidates) if candidates else None
