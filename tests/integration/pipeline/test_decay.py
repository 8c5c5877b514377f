"""Time alone moves a score: a silent account falls into a worse band, and the update says why.

The worker runs with the event clock (CHS_CLOCK=event), so "time passes" as other accounts'
events arrive with later timestamps; the timer re-evaluates only the accounts that are due.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from scoring.update import ScoreUpdate, Trigger
from streams.settings import Settings
from tests.conftest import isolated, start_worker
from tests.factories import active_history, login
from tests.integration.kafka import Records, read_until
from tests.integration.pipeline.test_pipeline import latest_updates, produce, recent, score_history

pytestmark = pytest.mark.integration


async def test_a_silent_account_decays_across_a_band_with_no_event_of_its_own(
    worker_settings: Settings, tmp_path: Path
) -> None:
    settings = isolated(worker_settings, tmp_path, clock="event")
    run = uuid.uuid4().hex[:6]
    silent, other = f"silent-{run}", f"other-{run}"
    # Silent for 19 days at the end (stale after 21): past the band's margin, 3 points below it.
    history = recent(active_history(silent, first_day=-48, last_day=-19))
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        first = await score_history(settings, history, silent)
        assert first.band == "healthy"

        # Sixteen days pass for the rest of the book; the silent account sends nothing.
        await produce(settings, recent([login(other, days=-d) for d in range(15, -1, -1)]))

        def fell(records: Records) -> bool:
            update = latest_updates(records, {silent}).get(silent)
            return update is not None and update.band != "healthy"

        records = await read_until(settings, settings.topic_scores, fell)
    finally:
        worker.stop()
    updates = updates_of(records, silent)
    crossing = updates[-1]
    assert crossing.trigger is Trigger.TIMER
    assert crossing.event_id is None
    assert crossing.band == "at-risk"
    assert crossing.previous_band == "healthy"
    assert crossing.score < first.score - 5
    assert crossing.summary.startswith("usage -")
    # Silence shows as usage against the account's own past (or its recency, its active days).
    words = ("usage in the last 7 days", "days since last login", "active days")
    assert any(w in crossing.summary for w in words), crossing.summary
    assert all(u.trigger is Trigger.TIMER for u in updates if u.as_of > first.as_of)


def updates_of(records: Records, account: str) -> list[ScoreUpdate]:
    updates = (ScoreUpdate.model_validate_json(r.value or b"") for r in records)
    return [u for u in updates if u.account_id == account]
