"""Input messages in batches: each batch is folded into the account states, then every account
it touched is rescored, written to the table and published once.

Faust's per-event stream (an ``Event`` per message, a changelog write and a send for each)
cost more than the scoring itself (docs/performance.md). Here the conductor hands the raw
messages to a queue, and the scoring task takes whatever is there, up to a limit: one
message at a time when the load is light, thousands when it is behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import faust
from faust.types import Message

from scoring.state import AccountState, SourcePosition
from streams.processing import Applied, Folded, FoldOutcome, Processor, TopicRole

T = TypeVar("T")


class InputTopic(faust.Topic):
    """The input topics, delivering each raw ``Message`` (no ``Event``, no decoding: the
    processor parses the bytes itself)."""

    def _compile_decode(self) -> None:
        """Faust sets ``decode`` per instance here; the class's own is kept instead."""

    async def decode(self, message: Message, *, propagate: bool = False) -> Any:
        return message


async def batches(queue: asyncio.Queue[T], limit: int) -> AsyncIterator[list[T]]:
    """What ``queue`` holds, up to ``limit`` messages at a time; waits for the first one."""
    while True:
        batch = [await queue.get()]
        while len(batch) < limit and not queue.empty():
            batch.append(queue.get_nowait())
        yield batch


class AccountBatch:
    """The inputs of one batch, folded per account as they come; ``settle`` rescores each
    account once, after its last input of the batch."""

    def __init__(
        self, processor: Processor, lookup: Callable[[bytes], AccountState | None]
    ) -> None:
        self._processor = processor
        self._lookup = lookup
        self._folded: dict[bytes, list[Folded]] = {}

    def add(
        self,
        role: TopicRole | None,
        key: bytes | None,
        payload: bytes | None,
        source: SourcePosition,
    ) -> FoldOutcome:
        outcome = self._processor.fold(self._state, role, key, payload, source)
        if isinstance(outcome, Folded):
            assert key is not None
            self._folded.setdefault(key, []).append(outcome)
        return outcome

    def _state(self, key: bytes) -> AccountState | None:
        """The account's state as this batch has left it so far."""
        inputs = self._folded.get(key)
        return inputs[-1].state if inputs else self._lookup(key)

    def settle(self) -> list[tuple[bytes, Applied]]:
        settle = self._processor.settle
        return [(key, settle(inputs)) for key, inputs in self._folded.items()]
