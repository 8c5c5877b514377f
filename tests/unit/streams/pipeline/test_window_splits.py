"""Windows of any size leave what one input at a time leaves: the same inputs split into
windows anywhere give the same states (aggregates and every day's closing score), the same
alerts on critical events (whose ids name the event), the same last evaluation, and changelog
records that read back as the states held in memory."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts.alert import Alert
from scoring.events import Event, PaymentStatus, TicketAction, TicketPriority
from scoring.score import evaluate
from scoring.scoring_model import default_model
from scoring.state import AccountState
from scoring.update import PUBLISH_MIN_DELTA
from streams.pipeline.checkpoint import SettledWindow
from streams.pipeline.clock import EventClock
from streams.pipeline.window_step import ClosingWrite, ScoringWindow, encode_held
from streams.worker.state_records import account_key_is_valid, replay
from tests.factories import feature, login, payment, survey, ticket
from tests.integration.reference import AGGREGATES as REFERENCE_AGGREGATES
from tests.unit.streams.pipeline.test_window_step import NOW, Harness, Record

ACCOUNTS = ("acme", "globex", "initech")
AGGREGATES = {*REFERENCE_AGGREGATES, "history"}
"""The folds' results (as the broker tests compare them) and every day's closing score."""

MAKERS: list[Callable[[str, float, int], Event]] = [
    lambda account, days, n: login(account, days, user=f"u{n % 4}"),
    lambda account, days, n: feature(account, days, name=f"f{n % 5}", user=f"u{n % 3}", n=2),
    lambda account, days, n: ticket(
        account,
        days,
        ticket_id=f"t{n % 2}",
        action=TicketAction.OPENED,
        priority=TicketPriority.URGENT,
    ),
    lambda account, days, n: ticket(
        account, days, ticket_id=f"t{n % 2}", action=TicketAction.RESOLVED
    ),
    lambda account, days, n: payment(account, days, invoice=f"i{n}", status=PaymentStatus.FAILED),
    lambda account, days, n: payment(account, days, invoice=f"i{n - 1}"),
    lambda account, days, n: survey(account, days, score=n % 11),
]

INPUTS = st.lists(
    st.tuples(
        st.sampled_from(ACCOUNTS),
        st.floats(min_value=-12.0, max_value=0.0, allow_nan=False),
        st.integers(min_value=0, max_value=len(MAKERS) - 1),
    ),
    min_size=1,
    max_size=60,
)
SPLITS = st.lists(st.integers(min_value=1, max_value=60), max_size=8)


def records(inputs: list[tuple[str, float, int]]) -> list[Record]:
    """The inputs as messages in event-time order, one partition."""
    events = [MAKERS[kind](account, days, n) for n, (account, days, kind) in enumerate(inputs)]
    events.sort(key=lambda event: event.occurred_ts)
    return [
        Record(
            f"chs.events.{event.kind.value}",
            0,
            offset,
            event.account_id.encode(),
            event.model_dump_json(exclude={"kind"}).encode(),
        )
        for offset, event in enumerate(events)
    ]


class Run:
    """The scoring step over windows, with what it published and wrote."""

    def __init__(self, windows: list[list[Record]], holds: list[bool] | None = None) -> None:
        """``holds``: for each window, whether its states are held for the next; a run of
        held windows, once due, is encoded one account per later window (as the scoring
        task does a slice per batch), the accounts those windows change first."""
        self.harness = Harness(clock=EventClock(lambda: NOW))
        self.written: list[tuple[bytes, bytes | None]] = []
        self.backlog_records: list[bytes] = []
        """The keys written by windows of more than one input (settled as under a backlog)."""
        self.acknowledged: list[Record] = []
        self.checkpoints: list[tuple[int, int]] = []
        """After each write: records written and inputs acknowledged so far."""
        ports = self.harness.ports
        held: SettledWindow[Record] | None = None
        closing: ClosingWrite[Record] | None = None
        for n, inputs in enumerate(windows):
            window: ScoringWindow[Record] = ScoringWindow(ports, held, closing)
            window.add(inputs)
            if holds is None:
                self._write(window.settle(backlog=len(inputs) > 1), len(inputs) > 1)
                continue
            held = window.settle(backlog=len(inputs) > 1, hold=True)
            if closing is not None:
                closing.encode_some(1)
                if closing.done:
                    self._write(closing.settled)
                    closing = None
            if not holds[n % len(holds)]:
                if closing is not None:
                    closing.encode_some()
                    self._write(closing.settled)
                closing, held = ClosingWrite(held, ports, len(inputs) > 1), None
        for last in (closing.settled if closing else None, held):
            if last is not None:
                encode_held(last, ports, False)
                self._write(last)

    def _write(self, settled: SettledWindow[Record], backlog: bool = False) -> None:
        self.written += [(key, value) for key, _, value in settled.states]
        self.acknowledged += settled.inputs
        self.checkpoints.append((len(self.written), len(self.acknowledged)))
        if backlog:
            self.backlog_records += [key for key, _, _ in settled.states]

    @property
    def states(self) -> dict[bytes, AccountState]:
        return self.harness.store.states

    def alert_ids(self, rule_prefix: str) -> set[str]:
        alerts = [Alert.model_validate_json(value) for _, value in self.harness.publisher.alerts]
        return {alert.alert_id for alert in alerts if alert.rule.startswith(rule_prefix)}

    def last_updates(self) -> dict[bytes, dict[str, Any]]:
        last: dict[bytes, dict[str, Any]] = {}
        for key, value in self.harness.publisher.scores:
            if value is not None:
                last[key] = json.loads(value)
        return last


def split(inputs: list[Record], cuts: list[int]) -> list[list[Record]]:
    bounds = sorted({cut for cut in cuts if cut < len(inputs)})
    edges = [0, *bounds, len(inputs)]
    return [inputs[start:end] for start, end in itertools.pairwise(edges)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(INPUTS, SPLITS)
def test_any_split_into_windows_leaves_what_one_input_at_a_time_leaves(
    inputs: list[tuple[str, float, int]], cuts: list[int]
) -> None:
    messages = records(inputs)
    one_at_a_time = Run([[message] for message in messages])
    windowed = Run(split(messages, cuts))

    assert set(windowed.states) == set(one_at_a_time.states)
    model = default_model()
    for key, reference in one_at_a_time.states.items():
        state = windowed.states[key]
        assert state.model_dump(include=AGGREGATES) == reference.model_dump(include=AGGREGATES)
        want, got = evaluate(reference, model, NOW), evaluate(state, model, NOW)
        assert (got and got.value) == (want and want.value)
    # Critical events raise their alert whatever the window (the id names the event).
    assert windowed.alert_ids("critical_event") == one_at_a_time.alert_ids("critical_event")
    # Each account's last ScoreUpdate: in each run within the publishing rule's minimum move
    # of the account's final score (a smaller move is not published), and those agree (above).
    # One input at a time may publish a move that a window's later input takes back.
    for key, update in windowed.last_updates().items():
        reference_update = one_at_a_time.last_updates()[key]
        assert abs(update["score"] - reference_update["score"]) < 2 * PUBLISH_MIN_DELTA
    # What was written reads back as the states held in memory, once per account per window.
    read_back = replay(windowed.written)
    for key, state in windowed.states.items():
        assert read_back[key].model_dump(include=AGGREGATES) == state.model_dump(include=AGGREGATES)
        assert read_back[key].published == state.published
    windows = split(messages, cuts)
    assert all(account_key_is_valid(key) for key in windowed.backlog_records)  # no part apart
    written_inputs = [key for key, _ in windowed.written if account_key_is_valid(key)]
    assert len(written_inputs) == sum(len({m.key for m in window}) for window in windows)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(INPUTS, SPLITS, st.lists(st.booleans(), min_size=1, max_size=6))
def test_windows_whose_states_are_held_write_each_account_once_as_it_was_left(
    inputs: list[tuple[str, float, int]], cuts: list[int], holds: list[bool]
) -> None:
    messages = records(inputs)
    windows = split(messages, cuts)
    each = Run(windows)
    held = Run(windows, holds)
    # The same outputs, the same states, every input acknowledged once, after its state.
    assert held.harness.publisher.scores == each.harness.publisher.scores
    assert held.harness.publisher.alerts == each.harness.publisher.alerts
    assert held.acknowledged == messages
    read_back = replay(held.written)
    assert set(read_back) == set(held.states) == set(each.states)
    for key, state in held.states.items():
        assert read_back[key].model_dump(include=AGGREGATES) == state.model_dump(include=AGGREGATES)
        assert read_back[key].published == state.published
    # A crash after any write reads back states holding exactly the inputs acknowledged.
    for records_written, inputs_acknowledged in held.checkpoints:
        states = replay(held.written[:records_written])
        acknowledged = Counter(m.key for m in held.acknowledged[:inputs_acknowledged])
        assert {k: s.events_applied for k, s in states.items()} == dict(acknowledged)
    # Fewer input records: an account is written once per group of held windows.
    written_inputs = [key for key, _ in held.written if account_key_is_valid(key)]
    assert len(written_inputs) <= len([k for k, _ in each.written if account_key_is_valid(k)])
