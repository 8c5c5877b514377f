"""``read_changelogs`` against an in-memory consumer: ranges, offsets told, cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from streams.worker.changelog_reader import read_changelogs

A, B = TopicPartition("changelog", 0), TopicPartition("changelog", 1)


def _record(tp: TopicPartition, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        tp.topic, tp.partition, offset, 0, 0, b"k%d" % offset, b"v%d" % offset, None, 0, 0, []
    )


class FakeConsumer:
    """Holds each partition's records (offsets may skip: compaction) and hands them out
    ``per_fetch`` at a time; ``stall_after`` fetches, it waits forever."""

    def __init__(
        self,
        logs: dict[TopicPartition, list[int]],
        per_fetch: int = 2,
        stall_after: int | None = None,
    ) -> None:
        self.logs = logs
        self.per_fetch = per_fetch
        self.stall_after = stall_after
        self.positions: dict[TopicPartition, int] = {}
        self.paused: set[TopicPartition] = set()
        self.fetches = 0

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = list(partitions)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def pause(self, tp: TopicPartition) -> None:
        self.paused.add(tp)

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        if self.stall_after is not None and self.fetches >= self.stall_after:
            await asyncio.Event().wait()
        self.fetches += 1
        out = {}
        for tp in partitions:
            offsets = [o for o in self.logs[tp] if o >= self.positions[tp]][: self.per_fetch]
            if offsets:
                out[tp] = [_record(tp, o) for o in offsets]
                self.positions[tp] = offsets[-1] + 1
            elif self.logs[tp]:
                self.positions[tp] = max(self.positions[tp], self.logs[tp][-1] + 1)
        return out


def _read(
    consumer: FakeConsumer, ranges: dict[TopicPartition, tuple[int, int]]
) -> tuple[list[tuple[TopicPartition, int]], dict[TopicPartition, int]]:
    applied: list[tuple[TopicPartition, int]] = []
    told: dict[TopicPartition, int] = {}

    def apply(tp: TopicPartition, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        applied.extend((tp, r.offset) for r in records)

    def read_to(tp: TopicPartition, offset: int) -> None:
        # Told only offsets every record up to which was applied.
        assert all(o <= offset for t, o in applied if t == tp)
        told[tp] = offset

    asyncio.run(read_changelogs(consumer, ranges, apply, read_to))
    return applied, told


def test_it_applies_each_range_in_offset_order_past_compacted_gaps() -> None:
    consumer = FakeConsumer({A: [0, 1, 4, 5, 9], B: [2, 3]})
    applied, told = _read(consumer, {A: (0, 9), B: (2, 3)})
    assert [o for t, o in applied if t == A] == [0, 1, 4, 5, 9]
    assert [o for t, o in applied if t == B] == [2, 3]
    assert told == {A: 9, B: 3}
    assert consumer.paused == {A, B}


def test_records_past_the_range_are_left_for_whoever_reads_on() -> None:
    consumer = FakeConsumer({A: [0, 1, 2, 3, 4, 5]}, per_fetch=4)
    applied, told = _read(consumer, {A: (1, 3)})
    assert [o for _, o in applied] == [1, 2, 3]
    assert told == {A: 3}


def test_a_range_whose_last_offsets_were_compacted_away_still_ends() -> None:
    consumer = FakeConsumer({A: [0, 1, 2, 7]})
    applied, told = _read(consumer, {A: (0, 5)})
    assert [o for _, o in applied] == [0, 1, 2]
    assert told == {A: 5}


def test_a_cancelled_read_has_told_the_offsets_it_applied() -> None:
    consumer = FakeConsumer({A: list(range(10))}, per_fetch=3, stall_after=2)
    applied: list[int] = []
    told: dict[TopicPartition, int] = {}

    def apply(tp: TopicPartition, records: Sequence[Any]) -> None:
        applied.extend(r.offset for r in records)

    async def cut_short() -> None:
        task = asyncio.ensure_future(
            read_changelogs(
                consumer,
                {A: (0, 9)},
                apply,
                lambda tp, offset: told.__setitem__(tp, offset),
            )
        )
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cut_short())
    assert applied == [0, 1, 2, 3, 4, 5]
    assert told == {A: 5}
