"""The uninterrupted single-worker reference, and the comparison of a real run's final states.

The reference is the worker's own per-event code (``Processor``) run over the same events in
memory, every event once. A real run's final states are read back from the table's changelog
(the last record of each account): they are what a restarted or new worker would recover.
"""

from __future__ import annotations

import time
from typing import Any

from alerts.alert import Alert
from alerts.config import default_rules
from scoring.events import Event
from scoring.score import evaluate
from scoring.scoring_model import default_model
from scoring.state import AccountState, SourcePosition
from scoring.update import Rescorer
from streams.ops.demo import DemoOptions, history_events
from streams.pipeline.account_step import Applied, Processor
from streams.pipeline.clock import EventClock
from streams.settings import Settings
from streams.worker.state_records import replay
from tests.integration.kafka import read_all

AGGREGATES = (
    "days",
    "active_users",
    "features",
    "open_tickets",
    "unpaid_invoices",
    "latest_surveys",
    "last_seen",
    "first_seen",
    "watermark",
    "events_applied",
)


def demo_events(count: int | None, accounts: int, seed: int) -> list[Event]:
    """The demo's 45 days of history for ``accounts`` accounts (its first ``count`` events)."""
    events = history_events(DemoOptions(accounts=accounts, history_days=45, seed=seed), time.time())
    assert count is None or len(events) >= count
    return events[:count]


def reference(events: list[Event]) -> dict[str, AccountState]:
    """The uninterrupted run: the worker's processing code, in memory, every event once."""
    return reference_run(events)[0]


def reference_run(events: list[Event]) -> tuple[dict[str, AccountState], list[Alert]]:
    """The uninterrupted run's final states and the alerts it raised, one event at a time."""
    processor = Processor(Rescorer(default_model()), default_rules(), EventClock(), 600)
    states: dict[bytes, AccountState] = {}
    alerts: list[Alert] = []
    for offset, event in enumerate(events):
        payload = event.model_dump_json(exclude={"kind"}).encode()
        key = event.account_id.encode()
        source = SourcePosition("ref", 0, offset)
        outcome = processor.process(states, event.kind, key, payload, source)
        if isinstance(outcome, Applied):
            alerts += outcome.alerts
    return {key.decode(): state for key, state in states.items()}, alerts


async def changelog_states(settings: Settings) -> dict[str, AccountState]:
    """Every account's last state in the worker group's table changelog."""
    records = await read_all(settings, f"{settings.app_id}-accounts-changelog")
    states = replay((record.key, record.value) for record in records if record.key is not None)
    return {key.decode(): state for key, state in states.items()}


def aggregates(state: AccountState) -> dict[str, Any]:
    return state.model_dump(include=set(AGGREGATES))


def assert_matches_reference(
    actual: dict[str, AccountState], expected: dict[str, AccountState], events: int
) -> None:
    """Same accounts, same aggregates, same score; every event applied exactly once."""
    assert set(actual) == set(expected)
    mismatched = [
        account
        for account, state in expected.items()
        if aggregates(actual[account]) != aggregates(state)
    ]
    assert mismatched == []
    assert sum(s.events_applied for s in actual.values()) == events  # none lost, none twice
    model = default_model()
    at = max(state.watermark or 0.0 for state in expected.values())
    scored = 0
    for account, state in expected.items():
        # None for an account with CRM attributes and no event yet, on both sides.
        want, got = evaluate(state, model, at), evaluate(actual[account], model, at)
        assert (got and got.value) == (want and want.value), account
        scored += want is not None
    assert scored >= len(expected) / 2
