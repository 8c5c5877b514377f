"""Input messages in batches: each batch is folded into the account states, then every account
it touched is rescored, written to the table and published once.

Rather than Faust's per-event stream (an ``Event``, a changelog write and a send for each),
the conductor hands the raw messages to a queue and the scoring task takes whatever is there,
up to a limit: one message when the load is light, thousands when it is behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from scoring.state import AccountState, SourcePosition, day_of
from streams.pipeline.account_step import (
    Applied,
    Erasure,
    Folded,
    FoldOutcome,
    Processor,
    Rejected,
    TopicRole,
)

T = TypeVar("T")


async def batches(
    queue: asyncio.Queue[T], limit: int, idle: Callable[[], float | None] = lambda: None
) -> AsyncIterator[list[T]]:
    """What ``queue`` holds, up to ``limit`` messages at a time; waits for the first one, or
    yields an empty batch after ``idle()`` seconds (None: never) with nothing to read.

    A wait that times out leaves its ``get`` pending for the next one: a cancelled get of
    Faust's stream queue can leave the task unwoken by later messages (docs/reliability.md)."""
    waiting: asyncio.Future[T] | None = None
    try:
        while True:
            if waiting is None:
                waiting = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({waiting}, timeout=idle())
            if not done:
                yield []
                continue
            batch, waiting = [waiting.result()], None
            while len(batch) < limit and not queue.empty():
                batch.append(queue.get_nowait())
            yield batch
    finally:
        if waiting is not None:
            waiting.cancel()


class AccountBatch:
    """The inputs of one batch, folded per account as they come; ``settle`` rescores each
    account once, after its last input of the batch, and once more at the end of each day
    its inputs pass: an input of a later day first settles the account's inputs of the days
    before (their evaluation is that day's closing score, as an input at a time would have
    left it; a batch under a backlog spans days of event time). An account erased in the
    batch is erased first; inputs after its erasure start it anew."""

    def __init__(
        self, processor: Processor, lookup: Callable[[bytes], AccountState | None]
    ) -> None:
        self._processor = processor
        self._lookup = lookup
        self._folded: dict[bytes, list[Folded]] = {}
        self._states: dict[bytes, AccountState | None] = {}
        """The state of each account as this batch has left it so far (None: erased)."""
        self._settled: list[tuple[bytes, Applied]] = []
        """Accounts settled at the end of a day, before inputs of a later day."""
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
        pending = self._folded.get(key) if key is not None else None
        if pending and prepared.parsed is not None:
            now = processor.clock.now(source.partition)
            if day_of(now) > day_of(pending[-1].now):
                assert key is not None
                self._settled.append((key, processor.settle(pending)))
                self._folded[key] = []
        outcome = processor.apply(self._state, prepared)
        if isinstance(outcome, Folded):
            assert key is not None
            self._folded.setdefault(key, []).append(outcome)
            self._states[key] = outcome.state
        elif isinstance(outcome, Erasure):
            assert key is not None
            self._folded.pop(key, None)
            self._settled = [(k, applied) for k, applied in self._settled if k != key]
            self._states[key] = None
            self._erased.setdefault(key, outcome)  # the first holds the state held before
        return outcome

    def _state(self, key: bytes) -> AccountState | None:
        """The account's state as this batch has left it so far."""
        if key in self._states:
            return self._states[key]
        return self._lookup(key)

    def settle(self) -> list[tuple[bytes, Applied]]:
        processor = self._processor
        erased = [(key, processor.erase(erasure)) for key, erasure in self._erased.items()]
        return (
            erased
            + self._settled
            + [(key, processor.settle(inputs)) for key, inputs in self._folded.items() if inputs]
        )
