from __future__ import annotations

import io
from datetime import UTC, datetime

from scoring.model import Band, Component
from scoring.score import ScoreUpdate
from streams.watch import ScoreFeed

NOW = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)


def update(
    account: str, score: float, band: Band, previous: float | None, was: Band | None
) -> ScoreUpdate:
    return ScoreUpdate(
        account_id=account,
        score=score,
        band=band,
        previous_score=previous,
        previous_band=was,
        components={Component.USAGE: 20.0, Component.BILLING: 90.0},
        model_version="default@x",
        as_of=NOW,
        computed_at=NOW,
        event_id="e1",
    )


def test_feed_prints_moves_and_band_crossings_but_not_wobble() -> None:
    out = io.StringIO()
    feed = ScoreFeed(out, min_move=3.0, colour=False)
    feed.show(update("acct-1", 80.0, Band.HEALTHY, None, None))
    feed.show(update("acct-1", 79.0, Band.HEALTHY, 80.0, Band.HEALTHY))
    feed.show(update("acct-1", 65.0, Band.AT_RISK, 79.0, Band.HEALTHY))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "new ->  80.0  healthy" in lines[0]
    assert "79.0 ->  65.0  at-risk" in lines[1]
    assert "weakest: usage 20" in lines[1]
    assert "(was healthy)" in lines[1]


def test_summary_counts_accounts_per_band() -> None:
    out = io.StringIO()
    feed = ScoreFeed(out, colour=False)
    feed.show(update("a", 80.0, Band.HEALTHY, None, None))
    feed.show(update("b", 20.0, Band.CRITICAL, None, None))
    feed.show(update("a", 50.0, Band.AT_RISK, 80.0, Band.HEALTHY))
    feed.summary()
    assert "2 accounts: 0 healthy, 1 at-risk, 1 critical; 3 score updates" in out.getvalue()
