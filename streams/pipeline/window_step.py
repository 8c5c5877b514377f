"""The scoring task's application step: the input messages of a window in, batch by batch;
the accounts' states updated, their outputs sent, and what is left to write and acknowledge
out.

Its ports are passed in (in the manner of cosmicpython's service layer): the account store,
the publisher, the schedule, the clock, the consumer's positions and the metrics.
``streams/worker/app.py`` gives it the Faust table, topics and Prometheus; the unit tests give it
in-memory fakes (tests/unit/streams/pipeline/test_window_step.py).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from alerts.alert import Alert
from scoring.state import AccountState, SourcePosition, day_of
from scoring.update import ScoreUpdate
from streams.pipeline.account_step import (
    Applied,
    Control,
    Erasure,
    Folded,
    FoldOutcome,
    Processor,
    Rejected,
    Skipped,
    TopicRole,
)
from streams.pipeline.checkpoint import SettledWindow
from streams.pipeline.clock import Clock
from streams.wire import REASON_CODE_HEADER, REASON_HEADER, SOURCE_HEADERS

log = logging.getLogger(__name__)


class InputMessage(Protocol):
    """What the step reads of a consumed record."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Any: ...


def header(message: InputMessage, name: str) -> str | None:
    """A header's value as text (Faust gives headers as a list of pairs or a mapping)."""
    headers = message.headers or ()
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in pairs:
        if key == name:
            return bytes(value).decode(errors="replace") if value is not None else ""
    return None


M = TypeVar("M", bound=InputMessage)


class AccountStore(Protocol):
    """The accounts' states by key (the worker's table, in memory)."""

    def get(self, key: bytes) -> AccountState | None: ...
    def put(self, key: bytes, state: AccountState) -> None: ...
    def delete(self, key: bytes) -> None: ...


Delivery = Awaitable[Any]
"""A send under way: it fails if its record was not delivered."""


class Publisher(Protocol):
    """The output topics."""

    def score(self, key: bytes, value: bytes | None, erased: bool = False) -> Delivery:
        """A ScoreUpdate (None: a tombstone, the score is withdrawn; ``erased``: because
        the account was erased)."""
        ...

    def alert(self, key: bytes, value: bytes) -> Delivery: ...
    def rollup(self, key: bytes, value: bytes) -> Delivery:
        """A child's report, keyed by its parent (``scoring.rollup.ChildReport``)."""
        ...

    def dead_letter(
        self, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> Delivery: ...


class StateRecords(Protocol):
    """An account's state as changelog records (``streams.worker.state_records.StateWriter``)."""

    def records(
        self, key: bytes, state: AccountState, inline: bool = False
    ) -> Iterable[tuple[bytes, bytes | None]]:
        """``inline``: as one record per account where it can (a window under a backlog)."""
        ...

    def deleted(self, key: bytes) -> Iterable[bytes]: ...


class Schedule(Protocol):
    def set(self, partition: int, key: bytes, due: float | None) -> None: ...


class StepMetrics(Protocol):
    """What the step counts (``streams.worker.metrics.PrometheusMetrics``)."""

    def consumed(self, role: str) -> None: ...
    def rejected(self, code: str) -> None: ...
    def skipped(self, reason: str) -> None: ...
    def event_lag(self, seconds: float) -> None: ...
    def outcome(self, outcome: str) -> None: ...
    def published(self, update: ScoreUpdate) -> None: ...
    def withdrawn(self, band: str | None) -> None: ...
    def erased(self) -> None: ...
    def reported(self) -> None: ...
    def alerted(self, alert: Alert) -> None: ...
    def consumer_lag(self, topic: str, partition: int, behind: int) -> None: ...
    def ticked(self) -> None: ...
    def window(self, inputs: int, seconds: float, wall: float) -> None: ...


def dlq_headers(reason_code: str, reason: str, source: SourcePosition) -> list[tuple[str, bytes]]:
    topic, partition, offset = SOURCE_HEADERS
    return [
        (REASON_CODE_HEADER, reason_code.encode()),
        (REASON_HEADER, reason.encode()),
        (topic, source.topic.encode()),
        (partition, str(source.partition).encode()),
        (offset, str(source.offset).encode()),
    ]


@dataclass(frozen=True, slots=True)
class ScoringPorts:
    processor: Processor
    roles: Mapping[str, TopicRole]
    store: AccountStore
    state_records: StateRecords
    publisher: Publisher
    schedule: Schedule
    clock: Clock
    metrics: StepMetrics
    highwater: Callable[[str, int], int | None]
    """The end offset of an input partition (None until the first fetch response)."""


class WindowFolds:
    """The inputs of one window, folded per account as they come; ``settle`` rescores each
    account once, after its last input of the window. An input of a later day first settles
    the account's inputs of the days before, handed to ``day_settled`` at once (their
    evaluation is that day's closing score, as an input at a time would have left it; a
    window under a backlog spans days of event time). An account erased in the window is
    erased first; inputs after its erasure start it anew."""

    def __init__(
        self,
        processor: Processor,
        lookup: Callable[[bytes], AccountState | None],
        day_settled: Callable[[bytes, Applied], object],
    ) -> None:
        self._processor = processor
        self._lookup = lookup
        self._day_settled = day_settled
        self._folded: dict[bytes, list[Folded]] = {}
        self._states: dict[bytes, AccountState | None] = {}
        """The state of each account as this window has left it so far (None: erased)."""
        self._erased: dict[bytes, Erasure] = {}

    def add(
        self,
        role: TopicRole | None,
        key: bytes | None,
        payload: bytes | None,
        source: SourcePosition,
    ) -> FoldOutcome:
        processor = self._processor
        prepared = processor.prepare(role, key, payload, source)
        if isinstance(prepared, Rejected):
            return prepared
        assert key is not None
        if prepared.parsed is not None:
            self._close_day(key, processor.clock.now(source.partition))
        return self._keep(key, processor.apply(self._state, prepared))

    def tick(self, key: bytes, due_at: float, partition: int) -> FoldOutcome:
        """The timer's re-evaluation of an account, as one more input of the window."""
        processor = self._processor
        self._close_day(key, processor.clock.now(partition))
        return self._keep(key, processor.tick(self._state, key, due_at, partition))

    def _close_day(self, key: bytes, now: float) -> None:
        """An input of a later day first settles the account's inputs of the days before."""
        pending = self._folded.get(key)
        if pending and day_of(now) > day_of(pending[-1].now):
            self._folded[key] = []
            self._day_settled(key, self._processor.settle(pending))

    def _keep(self, key: bytes, outcome: FoldOutcome) -> FoldOutcome:
        if isinstance(outcome, Folded):
            pending = self._folded.setdefault(key, [])
            if pending and not self._processor.settle_needs(pending[-1]):
                pending[-1] = outcome  # only the last of such inputs counts when settling
            else:
                pending.append(outcome)
            self._states[key] = outcome.state
        elif isinstance(outcome, Erasure):
            self._folded.pop(key, None)
            self._states[key] = None
            self._erased.setdefault(key, outcome)  # the first holds the state held before
        return outcome

    def _state(self, key: bytes) -> AccountState | None:
        """The account's state as this window has left it so far."""
        if key in self._states:
            return self._states[key]
        return self._lookup(key)

    def settle(self) -> list[tuple[bytes, Applied]]:
        """The erasures, then each account settled after its last input: an account once,
        or twice when erased and started anew."""
        processor = self._processor
        erased = [(key, processor.erase(erasure)) for key, erasure in self._erased.items()]
        return erased + [
            (key, processor.settle(inputs)) for key, inputs in self._folded.items() if inputs
        ]


class ScoringWindow(Generic[M]):
    """The inputs of one window: each batch folded as it comes (a bad input dead-lettered at
    once), then ``settle`` rescores and publishes each touched account once (once per day of
    event time its inputs pass) and encodes its state once, as the window left it.

    A window is one batch under a light load and grows over batches under a backlog
    (``window_closes``): the fewer times an account is settled, the fewer evaluations,
    ScoreUpdates and changelog records per input (docs/performance.md)."""

    def __init__(
        self,
        ports: ScoringPorts,
        held: SettledWindow[M] | None = None,
        closing: ClosingWrite[M] | None = None,
    ) -> None:
        """``held``: the settled windows before this one whose states are not written yet;
        this one adds to them. ``closing``: earlier ones whose states are being encoded, a
        slice at a time: an account this window changes is encoded first."""
        self._ports = ports
        lookup = ports.store.get if closing is None else closing.lookup
        self._folds = WindowFolds(ports.processor, lookup, self._publish)
        self._settled: SettledWindow[M] = held if held is not None else SettledWindow()
        self._inputs = 0
        self._behind: dict[tuple[str, int], int] = {}
        """Input partition -> inputs waiting beyond the last read (at the last fetch)."""
        self._ticks = 0
        self._batches = 0
        self._seconds = 0.0
        self._wall = 0.0

    @property
    def inputs(self) -> int:
        return self._inputs

    @property
    def size(self) -> int:
        """Inputs and ticks."""
        return self._inputs + self._ticks

    @property
    def grew(self) -> bool:
        """Whether it holds more than one batch (it was opened under a backlog)."""
        return self._batches > 1

    @property
    def waiting(self) -> int:
        """Inputs waiting beyond those read, on the partitions read in this window."""
        return sum(self._behind.values())

    def add(self, batch: Sequence[M]) -> None:
        """Fold each message of ``batch`` (the wiring has dropped what this worker must not
        handle)."""
        began = time.perf_counter()
        ports = self._ports
        wall = self._wall = ports.clock.wall()  # one wall-clock time for the whole batch
        metrics, publisher, work = ports.metrics, ports.publisher, self._folds
        outputs = self._settled.outputs
        self._settled.inputs.extend(batch)
        self._inputs += len(batch)
        self._batches += 1
        for message in batch:
            role = ports.roles.get(message.topic)
            source = SourcePosition(message.topic, message.partition, message.offset)
            outcome = work.add(role, message.key, message.value, source)
            metrics.consumed(role.value if role else "unknown")
            if isinstance(outcome, Rejected):
                error = outcome.error
                log.warning("Rejected %s/%d@%d: %s", *source, error)
                metrics.rejected(error.code.value)
                headers = dlq_headers(error.code.value, error.reason, source)
                outputs.append(publisher.dead_letter(message.key, message.value, headers))
            elif isinstance(outcome, Skipped):
                metrics.skipped(outcome.reason.value)
            elif isinstance(outcome, Erasure):
                reason = header(message, REASON_HEADER) or "none given"
                log.info("Erasing account %s (reason: %s)", outcome.state.account_id, reason)
            elif outcome.event is not None:
                metrics.event_lag(max(0.0, wall - outcome.event.occurred_ts))
            elif isinstance(outcome, Folded) and outcome.role is Control.OUTCOMES:
                metrics.outcome(outcome.state.outcomes[-1].outcome.value)
        last_read = {(message.topic, message.partition): message.offset for message in batch}
        for (topic, partition), offset in last_read.items():
            highwater = ports.highwater(topic, partition)
            if highwater is not None:
                behind = self._behind[(topic, partition)] = max(0, highwater - offset - 1)
                metrics.consumer_lag(topic, partition, behind)
                ports.clock.backlog(topic, partition, behind)
        self._seconds += time.perf_counter() - began

    def tick(self, due: Iterable[tuple[int, bytes, float]]) -> None:
        """Re-evaluate the accounts ``due`` (partition, key, due time: from the schedule)
        with the window's inputs: an account both due and touched is settled once."""
        for partition, key, due_at in due:
            self._folds.tick(key, due_at, partition)
            self._ticks += 1
            self._ports.metrics.ticked()

    def settle(self, backlog: bool = False, hold: bool = False) -> SettledWindow[M]:
        """Rescore and publish each touched account; what is left (the states to write once
        the outputs are delivered, the inputs to acknowledge) is the caller's. Under a
        ``backlog`` each account's changed parts go inline in its record: one changelog
        record per account per window (``streams/worker/state_records.py``). ``hold``: the
        states are not encoded yet, for a later window to write with its own (``held``), each
        account once, as the last window left it."""
        began = time.perf_counter()
        ports, settled = self._ports, self._settled
        for key, applied in self._folds.settle():
            if self._publish(key, applied):
                assert applied.state.partition is not None
                settled.held[key] = applied.state.partition
        if not hold:
            encode_held(settled, ports, backlog)
        seconds = self._seconds + time.perf_counter() - began
        ports.metrics.window(self.inputs, seconds, self._wall)
        return settled

    def _publish(self, key: bytes, applied: Applied) -> bool:
        """Send what settling an account left to send (at once: a day's closing update is not
        held to the end of the window), schedule it, and keep or forget its state; returns
        whether it is kept. Its state is written once, at the end of the window."""
        ports, settled = self._ports, self._settled
        metrics, publisher, outputs = ports.metrics, ports.publisher, settled.outputs
        state = applied.state
        assert state.partition is not None
        ports.schedule.set(state.partition, key, applied.next_due)
        for report in applied.reports:
            value = report.model_dump_json().encode()
            outputs.append(publisher.rollup(report.account_id.encode(), value))
            metrics.reported()
        if applied.withdrawn:
            metrics.withdrawn(state.published.band if state.published else None)
            state.published = None
        if applied.withdrawn or applied.erased:
            outputs.append(publisher.score(key, None, applied.erased))
        if applied.erased:
            metrics.erased()
        if applied.forget:
            ports.store.delete(key)
            settled.held.pop(key, None)  # its state written since is that of a new account
            deleted = ports.state_records.deleted(key)
            settled.states.extend((record, state.partition, None) for record in deleted)
            return False
        ports.store.put(key, state)
        if applied.update is not None:
            metrics.published(applied.update)
            outputs.append(publisher.score(key, applied.update.wire_form()))
        for alert in applied.alerts:
            metrics.alerted(alert)
            outputs.append(publisher.alert(key, alert.model_dump_json().encode()))
        return True


def encode_held(settled: SettledWindow[M], ports: ScoringPorts, inline: bool) -> None:
    """The changelog records of the accounts ``settled`` holds, as they are now, after the
    records written before (an account erased and started anew: its tombstones first)."""
    _encode(settled, ports, inline, list(settled.held))


def _encode(
    settled: SettledWindow[M], ports: ScoringPorts, inline: bool, keys: list[bytes]
) -> None:
    records, store, held = ports.state_records, ports.store, settled.held
    for key in keys:
        partition = held.pop(key)
        state = store.get(key)
        if state is None:
            # Its partition left in a rebalance (an account forgotten leaves ``held``): its
            # inputs are not committed here, and its new owner replays them.
            continue
        settled.states.extend(
            (record, partition, value) for record, value in records.records(key, state, inline)
        )


class ClosingWrite(Generic[M]):
    """Held windows whose states are due, encoded a slice at a time (``encode_some``) while
    the next windows are scored, so that writing a thousand accounts at once does not hold
    up the inputs behind it. An account the next windows change is encoded first, as the
    held windows left it (``lookup``)."""

    def __init__(self, settled: SettledWindow[M], ports: ScoringPorts, inline: bool) -> None:
        self.settled = settled
        self._ports = ports
        self._inline = inline

    @property
    def done(self) -> bool:
        return not self.settled.held

    def lookup(self, key: bytes) -> AccountState | None:
        """The account's state for a later window to change, its records encoded first."""
        if key in self.settled.held:
            _encode(self.settled, self._ports, self._inline, [key])
        return self._ports.store.get(key)

    def encode_some(self, accounts: int | None = None) -> None:
        """Encode up to ``accounts`` of the accounts left (None: all of them)."""
        keys = list(itertools.islice(self.settled.held, accounts))
        _encode(self.settled, self._ports, self._inline, keys)


@dataclass(frozen=True, slots=True)
class WindowBound:
    """How far a window may grow under a backlog (``CHS_WINDOW_MAX_INPUTS``,
    ``CHS_WINDOW_MAX_SECONDS``)."""

    max_inputs: int
    max_seconds: float


def window_closes(size: int, age: float, waiting: int, flowing: bool, bound: WindowBound) -> bool:
    """Whether a window of ``size`` inputs and ticks opened ``age`` seconds ago is settled
    now: unless more inputs are ``waiting`` than it holds (a backlog: it would at least
    double), when the consumer stopped ``flowing`` (a rebalance waits for its inputs to be
    acknowledged), or at its bound. A live load, even a heavy one, keeps fewer waiting than
    one batch: its windows are one batch each, and latency does not grow."""
    if not size:
        return False
    backlog = waiting > size
    return not backlog or not flowing or size >= bound.max_inputs or age >= bound.max_seconds
