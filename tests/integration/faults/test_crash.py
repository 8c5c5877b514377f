"""kill -9 in the middle of a 50,000-event stream: after a restart, every account's aggregates
and score equal those of an uninterrupted run over the same events (``reference``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from streams.settings import Settings
from streams.worker.topics import group_lag
from tests.conftest import isolated, start_worker
from tests.integration.kafka import wait_consumed
from tests.integration.pipeline.test_pipeline import produce
from tests.integration.reference import (
    assert_matches_reference,
    changelog_states,
    demo_events,
    reference,
)
from tests.integration.serving.test_operations import metric

pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.dev_broker]

EVENTS = 50_000
COMMIT_INTERVAL = 2.8
"""Faust's ``broker_commit_interval`` (seconds), which the worker keeps."""


async def test_kill_9_mid_stream_then_restart_equals_an_uninterrupted_run(
    worker_settings: Settings, tmp_path: Path
) -> None:
    # Windows of at most 5,000 inputs: the backlog is committed in steps, and the kill comes
    # between two of them (one window could hold the whole stream).
    settings = isolated(worker_settings, tmp_path, clock="event", window_max_inputs=5_000)
    events = demo_events(EVENTS, accounts=500, seed=11)
    expected = reference(events)

    event_topics = list(settings.event_topics)
    await produce(settings, events)
    worker = start_worker(settings, tmp_path / "worker-1.log")
    try:
        # Well into the stream (a fifth of it committed), whatever the worker's speed...
        async with asyncio.timeout(120):
            while await group_lag(settings, event_topics) > EVENTS * 4 // 5:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        # ...and between two commits: inputs applied and written to the changelog since the
        # last commit are then read again after the restart (a state is written once its
        # outputs are delivered, so right after a commit there may be none)...
        await asyncio.sleep(COMMIT_INTERVAL / 2)
    finally:
        worker.kill()  # ...pull the plug
    behind_at_kill = await group_lag(settings, event_topics)
    worker = start_worker(settings, tmp_path / "worker-2.log")
    try:
        await wait_consumed(settings, event_topics, within=240)
        actual = await changelog_states(settings)
        redelivered = metric(settings, "chs_inputs_skipped_total", reason="redelivered")
    finally:
        worker.stop()

    print(
        f"not committed at the kill: {behind_at_kill}; redelivered and skipped: {redelivered:.0f}"
    )
    assert 0 < behind_at_kill < EVENTS  # it was killed mid-stream
    # Applied by the killed worker but not committed: read again after the restart, and
    # turned away by the offset fence (else counted twice, and the comparison would fail).
    assert redelivered > 0
    assert_matches_reference(actual, expected, EVENTS)
