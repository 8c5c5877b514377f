from __future__ import annotations

from streams.pipeline.clock import FLOWING_SECONDS, EventClock, WallClock, clock_for

DAY = 86_400.0


class Wall:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def test_event_time_is_the_newest_event_seen_and_never_goes_back() -> None:
    wall = Wall()
    clock = EventClock(wall)
    clock.observe(10 * DAY)
    clock.observe(9 * DAY)  # a late event
    assert clock.now() == 10 * DAY
    assert clock.wall() == wall.t


def test_a_partition_still_being_read_is_at_its_own_time_then_catches_up() -> None:
    wall = Wall()
    clock = EventClock(wall)
    clock.observe(2 * DAY, partition=0)  # read days behind
    clock.observe(9 * DAY, partition=1)
    clock.backlog("chs.events.login", 0, 500)
    wall.t += FLOWING_SECONDS + 1
    assert clock.now(0) == 2 * DAY  # records still wait on it
    assert clock.now(1) == 9 * DAY  # the newest of all: nothing waits on it
    clock.backlog("chs.events.login", 0, 0)
    assert clock.now(0) == 9 * DAY  # read to its end: time passes for its silent accounts


def test_a_partition_with_a_recent_event_is_at_its_own_time_even_with_nothing_waiting() -> None:
    wall = Wall()
    clock = EventClock(wall)
    clock.observe(3 * DAY, partition=0)
    clock.observe(5 * DAY, partition=1)
    assert clock.now(0) == 3 * DAY  # a producer may still be writing it
    wall.t += FLOWING_SECONDS
    assert clock.now(0) == 5 * DAY


def test_the_clock_setting_picks_the_clock() -> None:
    assert isinstance(clock_for("event"), EventClock)
    assert isinstance(clock_for("wall"), WallClock)
