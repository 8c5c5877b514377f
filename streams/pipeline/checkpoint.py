"""A window's outputs first, then the states that record them: a crash never keeps a state whose
outputs were lost.

The changelog record of an account's state says which inputs were applied (the offset fence)
and which alerts were raised and which score published: written before an output of its window
was delivered, a crash between the two would lose the output for good (docs/reliability.md).
So each window's states are written to the changelog only once every output of the window
(ScoreUpdates, alerts, dead-lettered inputs) is delivered, and its inputs are acknowledged
only once those records are in the producer's hands (a commit waits for the records the
producer holds, ``ChsProducer.flush``). A crash in between replays the inputs from the last commit
against the last state written: the outputs come again, with the same alert ids.

The states are encoded when the window is settled, not when they are written: the scoring task
goes on with the next windows, changing the same objects in place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

InputT = TypeVar("InputT")

MAX_PENDING_INPUTS = 5_000
"""Inputs of the settled windows waiting for their outputs before the scoring task waits too.
Counted in inputs, not windows: a window holds one input under a light load, tens of thousands
under a backlog (docs/performance.md, "Why the code is shaped so")."""


@dataclass(slots=True)
class SettledWindow(Generic[InputT]):
    """What one window leaves to do once it is scored."""

    outputs: list[Awaitable[Any]] = field(default_factory=list)
    """Deliveries of what the window published (each fails if its record was not delivered)."""
    states: list[tuple[bytes, int, bytes | None]] = field(default_factory=list)
    """The changelog records of the states as the window left them: record key, changelog
    partition and value (None deletes; ``streams/worker/state_records.py``), in order."""
    inputs: list[InputT] = field(default_factory=list)
    """The window's input messages, acknowledged last."""
    held: dict[bytes, int] = field(default_factory=dict)
    """Accounts settled whose states are not encoded into ``states`` yet, with their changelog
    partitions: windows held, written together later (``streams.pipeline.window_step``:
    ``encode_held``, ``ClosingWrite``)."""


class OutputsFirst(Generic[InputT]):
    """Writes settled windows' states and acknowledges their inputs in window order, each window
    once its outputs are delivered. ``run`` raises if an output failed: the worker must stop
    (and a restart replays the inputs), not write a state whose outputs are lost."""

    def __init__(
        self,
        write_state: Callable[[bytes, int, bytes | None], object],
        states_sent: Callable[[], Awaitable[object]],
        ack: Callable[[InputT], object],
        max_pending_inputs: int = MAX_PENDING_INPUTS,
    ) -> None:
        self._write_state = write_state
        self._states_sent = states_sent
        self._ack = ack
        self._max_pending = max_pending_inputs
        self._pending: asyncio.Queue[SettledWindow[InputT]] = asyncio.Queue()
        self._pending_inputs = 0
        self._room = asyncio.Event()

    async def put(self, window: SettledWindow[InputT]) -> None:
        """Queue ``window``; waits while ``max_pending_inputs`` inputs are queued
        (back-pressure). A window larger than that is let in alone."""
        while self._pending_inputs and self._pending_inputs >= self._max_pending:
            self._room.clear()
            await self._room.wait()
        self._pending_inputs += _weight(window)
        self._pending.put_nowait(window)

    @property
    def pending(self) -> int:
        """Inputs of the windows waiting."""
        return self._pending_inputs

    async def run(self) -> None:
        """Until cancelled: each window in turn, once its outputs are delivered."""
        while True:
            window = await self._pending.get()
            await self.complete(window)
            self._pending_inputs -= _weight(window)
            self._room.set()

    async def complete(self, window: SettledWindow[InputT]) -> None:
        """Wait for ``window``'s outputs, then write its states, hand them to the producer
        (``states_sent``) and acknowledge its inputs."""
        if window.outputs:
            results = await asyncio.gather(*window.outputs, return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            if failures:
                raise OutputLost(len(failures), len(results), failures[0])
        for key, partition, encoded in window.states:
            self._write_state(key, partition, encoded)
        if window.states:
            await self._states_sent()
        for message in window.inputs:
            self._ack(message)


def _weight(window: SettledWindow[InputT]) -> int:
    """What a window counts for in the bound: its inputs (at least one)."""
    return max(1, len(window.inputs))


class OutputLost(Exception):
    """An output of a window was not delivered: its states are not written, its inputs not
    acknowledged."""

    def __init__(self, failed: int, outputs: int, first: BaseException) -> None:
        super().__init__(
            f"{failed} of {outputs} outputs of a window were not delivered "
            f"(first: {type(first).__name__}: {first}); its states are not written and its "
            "inputs not committed, so a restart processes them again"
        )
        self.__cause__ = first
