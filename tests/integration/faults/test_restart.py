"""A restarted worker recovers the account table from its changelog and goes on from there."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from scoring.events import Event, PaymentStatus
from scoring.update import ScoreUpdate
from streams.settings import Settings
from tests.conftest import isolated, start_worker
from tests.factories import login, payment
from tests.integration.kafka import Records, read_until
from tests.integration.pipeline.test_pipeline import agrees, folded, latest_updates, produce, recent

pytestmark = pytest.mark.integration


async def test_state_survives_a_worker_restart(worker_settings: Settings, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    # Topics of its own: the session's worker must not answer for this test's workers.
    settings = isolated(worker_settings, tmp_path)
    account = f"restart-{run}"
    first_events = recent([login(account, days=-d, user=f"u{d}") for d in range(5, -1, -1)])
    # A failed payment moves the score (a paid one leaves billing where it was: at full marks).
    later_event = recent([payment(account, days=0, status=PaymentStatus.FAILED)])[0]

    async def run_worker(name: str, events: list[Event], seen: list[Event]) -> ScoreUpdate:
        """Start a worker, send ``events``, wait for the score of ``seen``, stop the worker."""
        state = folded(seen)[account]
        ids = {e.event_id for e in events}
        arrived: Callable[[Records], bool] = lambda records: (  # noqa: E731
            account in (latest := latest_updates(records, {account}))
            and latest[account].event_id in ids
            and agrees(state, latest[account])
        )
        worker = start_worker(settings, tmp_path / f"{name}.log")
        try:
            await produce(settings, events)
            records = await read_until(settings, settings.topic_scores, arrived)
        finally:
            worker.stop()
        return latest_updates(records, {account})[account]

    before = await run_worker("worker-1", first_events, first_events)
    after = await run_worker("worker-2", [later_event], [*first_events, later_event])
    # The second worker knew the account's history (recovered from the changelog): had it
    # started from nothing, a lone payment would give no usage component at all.
    assert after.previous_score == before.score
    assert after.measures["active_days_30d"] == before.measures["active_days_30d"]
    assert "billing" in after.components
    # The recovered account was put back on the re-evaluation schedule of the partition it
    # belongs to (time must keep moving its score after a restart).
    log = (tmp_path / "worker-2.log").read_text(errors="replace")
    scheduled = [int(n) for n in re.findall(r"Owning partitions \[[\d, ]*\]: (\d+) accounts", log)]
    assert scheduled
    assert max(scheduled) >= 1
