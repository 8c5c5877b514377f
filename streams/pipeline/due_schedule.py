"""Which accounts are due for re-evaluation, per partition this worker owns.

A min-heap of (due time, account key) per partition: the timer pops only what is due, so a
tick costs O(due accounts * log n), never a scan of every account. An account's entry is
replaced when its due time changes (superseded entries are skipped when popped).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable


class DueSchedule:
    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[float, bytes]]] = {}
        self._due: dict[bytes, float] = {}

    def __len__(self) -> int:
        return len(self._due)

    def set(self, partition: int, key: bytes, due: float | None) -> None:
        """Schedule ``key`` at ``due`` (None: nothing is due for it)."""
        if due is None:
            self._due.pop(key, None)
            return
        if self._due.get(key) == due:
            return
        self._due[key] = due
        heapq.heappush(self._heaps.setdefault(partition, []), (due, key))

    def pop_due(
        self, now: float | Callable[[int], float], limit: int
    ) -> list[tuple[int, bytes, float]]:
        """Up to ``limit`` (partition, key, due) with due <= now, removed from the schedule;
        ``now`` may be each partition's own time (``streams.pipeline.clock.Clock.now``)."""
        result: list[tuple[int, bytes, float]] = []
        for partition, heap in self._heaps.items():
            time_now = now(partition) if callable(now) else now
            while heap and heap[0][0] <= time_now and len(result) < limit:
                due, key = heapq.heappop(heap)
                if self._due.get(key) == due:
                    del self._due[key]
                    result.append((partition, key, due))
        return result

    def keep_only(self, partitions: Iterable[int]) -> None:
        """Forget every partition not in ``partitions`` (after a rebalance took them away)."""
        owned = set(partitions)
        for partition in [p for p in self._heaps if p not in owned]:
            for _, key in self._heaps.pop(partition):
                self._due.pop(key, None)
