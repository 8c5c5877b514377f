"""``chs audit`` in one process: the worker's processor and audit over a history of records."""

from __future__ import annotations

import random
from datetime import timedelta

from alerts.config import default_rules
from scoring.events import LoginEvent, OutcomeEvent, OutcomeKind
from scoring.scoring_model import default_model
from sim.backtest import Item, record_time
from streams.ops.audit_replay import AuditReplay, report_lines
from tests.factories import at

ACCOUNTS = 20
CHURN_DAY = 65


def records() -> list[Item]:
    """Twenty accounts over 70 days; the odd ones fade from day 10 and churn on day 65."""
    rng = random.Random(2)
    items: list[Item] = []
    for day in range(70):
        for a in range(ACCOUNTS):
            fading = a % 2 == 1
            if fading and day >= CHURN_DAY:
                continue
            users = 4 if not fading or day < 10 else max(0, 4 - (day - 10) // 10)
            for user in range(users):
                if rng.random() < 0.9:
                    items.append(
                        LoginEvent(
                            event_id=f"{a}-{day}-{user}",
                            account_id=f"a{a}",
                            occurred_at=at(day - 80) + timedelta(hours=8 + user),
                            user_id=f"u{user}",
                        )
                    )
            if fading and day == CHURN_DAY - 1:
                items.append(
                    OutcomeEvent(
                        event_id=f"churn-{a}",
                        account_id=f"a{a}",
                        occurred_at=at(CHURN_DAY - 80) + timedelta(minutes=5),
                        outcome=OutcomeKind.CHURNED,
                    )
                )
    return sorted(items, key=record_time)


def test_the_history_is_judged_as_the_worker_would_for_the_live_model_and_a_candidate() -> None:
    model = default_model()
    candidate = model.model_copy(update={"name": "candidate"})
    replay = AuditReplay(model, (candidate,), default_rules(), window_days=180)
    replay.run(records())
    report = replay.report()
    assert [m.role for m in report.models] == ["live", "shadow"]
    assert report.outcomes == {"churned": ACCOUNTS // 2}
    for audited in report.models:
        leads = {lead.lead_days: lead for lead in audited.leads}
        assert leads[30].churners == ACCOUNTS // 2
        assert leads[30].auc == 1.0  # 35 days of fading: every one below every survivor
        assert leads[60].churners == ACCOUNTS // 2  # day 5: not fading yet
        assert leads[60].auc is not None
        assert leads[60].auc < 1.0
        assert leads[90].churners == 0  # the records start 65 days before the churns
    assert len(replay.states) == ACCOUNTS  # the churners are kept, judged, until the window
    text = "\n".join(report_lines(report, "title"))
    assert f"{candidate.version} (shadow)" in text


def test_outcomes_read_before_the_history_they_close_give_the_same_figures() -> None:
    """A replay or a backfill reads the outcome topic ahead of the event topics: a churn
    applies from its own time, so the churners' earlier history still makes their scores."""
    in_order = records()
    outcomes = [item for item in in_order if isinstance(item, OutcomeEvent)]
    late = [
        LoginEvent(
            event_id=f"late-{o.account_id}",
            account_id=o.account_id,
            occurred_at=o.occurred_at + timedelta(days=1),
            user_id="u0",
        )
        for o in outcomes
    ]
    adverse = [*outcomes, *(item for item in in_order if item not in outcomes), *late]
    reports = []
    for items in (in_order, adverse):
        replay = AuditReplay(default_model(), (), default_rules(), window_days=180)
        replay.run(items)
        reports.append(replay.report())
        churned = [s for s in replay.states.values() if s.churned_day is not None]
        assert len(churned) == ACCOUNTS // 2
        assert all(s.watermark is not None and s.watermark < s.churn_at for s in churned)  # type: ignore[operator]
    assert reports[1].models[0].leads == reports[0].models[0].leads
    assert reports[1].models[0].leads[0].churners == ACCOUNTS // 2
