"""``chs replay`` of a simulated history through the broker: the worker, scoring on event
time, ends where the same records folded in memory end."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from alerts.config import default_rules
from scoring.events import AccountAttributes, OutcomeEvent
from scoring.scoring_model import default_model
from scoring.state import AccountState, SourcePosition
from scoring.update import Rescorer
from sim.commands import simulate
from sim.files import read_file
from sim.simulator import SimOptions
from streams.ops.devstack import chs_command, settings_env
from streams.pipeline.account_step import Control, Processor, TopicRole
from streams.pipeline.clock import EventClock
from streams.settings import Settings
from tests.conftest import isolated, start_worker
from tests.integration.kafka import wait_consumed
from tests.integration.reference import assert_matches_reference, changelog_states

pytestmark = pytest.mark.integration


def folded_in_memory(events_file: Path) -> tuple[dict[str, AccountState], int, int]:
    """Every record through the worker's own per-message code, once, in file order; and how
    many records and product events there were."""
    processor = Processor(Rescorer(default_model()), default_rules(), EventClock(), 600)
    states: dict[bytes, AccountState] = {}
    events = 0
    for offset, record in enumerate(read_file(events_file)):
        role: TopicRole = (
            Control.ACCOUNTS
            if isinstance(record, AccountAttributes)
            else Control.OUTCOMES
            if isinstance(record, OutcomeEvent)
            else record.kind
        )
        events += not isinstance(record, AccountAttributes | OutcomeEvent)
        payload = record.model_dump_json(exclude={"kind"}).encode()
        source = SourcePosition("file", 0, offset)
        processor.process(states, role, record.account_id.encode(), payload, source)
    return {key.decode(): state for key, state in states.items()}, offset + 1, events


async def test_a_replayed_history_scores_as_if_lived_through(
    worker_settings: Settings, tmp_path: Path
) -> None:
    events_file, _ = simulate(SimOptions(accounts=40, days=75, seed=4), tmp_path / "sim")
    expected, records, events = folded_in_memory(events_file)
    settings = isolated(worker_settings, tmp_path, clock="event")
    replayed = await asyncio.to_thread(
        subprocess.run,
        [*chs_command("replay"), str(events_file)],
        env={**settings_env(settings), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed {records:,} records" in replayed.stdout
    assert "replaying: " in replayed.stderr  # the progress line
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        inputs = [*settings.event_topics, settings.topic_outcomes]
        await wait_consumed(settings, inputs, within=240)
        actual = await changelog_states(settings)
    finally:
        worker.stop()
    assert_matches_reference(actual, expected, events)
