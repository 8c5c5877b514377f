from __future__ import annotations

import io
from datetime import UTC, datetime

from scoring.score import ComponentScore, Onboarding, RollupInfo
from scoring.update import ScoreUpdate, Trigger
from streams.ops.watch import ScoreFeed

NOW = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)
BANDS = ["healthy", "at-risk", "critical"]


def update(
    account: str, score: float, band: str, previous: float | None, was: str | None
) -> ScoreUpdate:
    return ScoreUpdate(
        account_id=account,
        score=score,
        band=band,
        grade="C",
        segment=None,
        stale=False,
        previous_score=previous,
        previous_band=was,
        components={"usage": ComponentScore(score=20.0, weight=1.0, contribution=20.0)},
        measures={},
        drivers=[],
        summary="usage -14: days since last login 2 -> 16",
        change_7d=None,
        change_30d=None,
        override=None,
        owner=None,
        model_version="default@x",
        as_of=NOW,
        computed_at=NOW,
        trigger=Trigger.TIMER,
        event_id=None,
    )


def test_feed_prints_moves_and_band_crossings_but_not_wobble() -> None:
    out = io.StringIO()
    feed = ScoreFeed(out, BANDS, min_move=3.0, colour=False)
    feed.show(update("acct-1", 80.0, "healthy", None, None))
    feed.show(update("acct-1", 79.0, "healthy", 80.0, "healthy"))
    feed.show(update("acct-1", 65.0, "at-risk", 79.0, "healthy"))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "first ->  80.0  healthy" in lines[0]
    assert "79.0 ->  65.0  at-risk  C  usage -14: days since last login 2 -> 16" in lines[1]


def test_colours_follow_band_rank() -> None:
    out = io.StringIO()
    feed = ScoreFeed(out, BANDS, colour=True)
    feed.show(update("a", 20.0, "critical", None, None))
    assert "\033[31mcritical" in out.getvalue()


def test_summary_counts_accounts_per_band_in_model_order() -> None:
    out = io.StringIO()
    feed = ScoreFeed(out, BANDS, colour=False)
    feed.show(update("a", 80.0, "healthy", None, None))
    feed.show(update("b", 20.0, "critical", None, None))
    feed.show(update("a", 50.0, "at-risk", 80.0, "healthy"))
    feed.summary()
    assert "2 accounts: 0 healthy, 1 at-risk, 1 critical; 3 score updates" in out.getvalue()


def test_a_churned_account_leaves_the_summary() -> None:
    out = io.StringIO()
    feed = ScoreFeed(out, BANDS, colour=False)
    feed.show(update("a", 80.0, "healthy", None, None))
    feed.show(update("b", 20.0, "critical", None, None))
    feed.withdraw("b")
    feed.withdraw("never-seen")
    feed.summary()
    text = out.getvalue()
    assert "b            churned: no longer scored" in text
    assert "never-seen" not in text
    assert "1 accounts: 1 healthy, 0 at-risk, 0 critical" in text


def test_new_accounts_and_groups_are_labelled_and_counted() -> None:
    out = io.StringIO()
    feed = ScoreFeed(out, BANDS, colour=False)
    young = update("acct-1", 76.0, "at-risk", None, None).model_copy(
        update={"onboarding": Onboarding(days_of_data=3, judged_from_day=14)}
    )
    feed.show(young)
    group = update("group-1", 88.0, "healthy", None, None).model_copy(
        update={
            "rollup": RollupInfo(
                method="mrr_weighted", children=2, scored_children=2, own_score=False
            )
        }
    )
    feed.show(group)
    assert "76.0  at-risk  C new  usage" in out.getvalue()
    feed.summary()
    assert (
        "2 accounts (1 of them groups): 1 healthy, 1 at-risk, 0 critical; 1 new;" in out.getvalue()
    )
    feed.show(update("acct-1", 77.0, "at-risk", 76.0, "at-risk"))  # judged now
    feed.summary()
    assert (
        out.getvalue()
        .splitlines()[-1]
        .startswith("--- 2 accounts (1 of them groups): 1 healthy, 1 at-risk, 0 critical; 3 score")
    )
