from __future__ import annotations

from streams.pipeline.due_schedule import DueSchedule


def test_pops_only_what_is_due_in_time_order_and_at_most_limit() -> None:
    schedule = DueSchedule()
    schedule.set(0, b"a", 30.0)
    schedule.set(0, b"b", 10.0)
    schedule.set(1, b"c", 20.0)
    schedule.set(1, b"d", 99.0)
    assert schedule.pop_due(25.0, limit=10) == [(0, b"b", 10.0), (1, b"c", 20.0)]
    assert len(schedule) == 2
    assert schedule.pop_due(100.0, limit=1) == [(0, b"a", 30.0)]
    assert schedule.pop_due(100.0, limit=5) == [(1, b"d", 99.0)]
    assert schedule.pop_due(1e9, limit=5) == []


def test_rescheduling_replaces_the_earlier_due_time() -> None:
    schedule = DueSchedule()
    schedule.set(0, b"a", 10.0)
    schedule.set(0, b"a", 50.0)
    assert schedule.pop_due(20.0, limit=10) == []
    assert schedule.pop_due(60.0, limit=10) == [(0, b"a", 50.0)]
    schedule.set(0, b"b", 10.0)
    schedule.set(0, b"b", None)
    assert schedule.pop_due(60.0, limit=10) == []


def test_keep_only_forgets_partitions_taken_away() -> None:
    schedule = DueSchedule()
    schedule.set(0, b"a", 1.0)
    schedule.set(1, b"b", 1.0)
    schedule.set(2, b"c", 1.0)
    schedule.keep_only([1])
    assert len(schedule) == 1
    assert schedule.pop_due(5.0, limit=10) == [(1, b"b", 1.0)]


def test_each_partition_may_have_its_own_time() -> None:
    schedule = DueSchedule()
    schedule.set(0, b"a", 30.0)
    schedule.set(1, b"b", 30.0)
    times = {0: 40.0, 1: 20.0}  # partition 1 is read behind: its time is earlier
    assert schedule.pop_due(times.__getitem__, limit=10) == [(0, b"a", 30.0)]
