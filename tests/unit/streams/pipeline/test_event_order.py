"""A partition's product events handed on in event-time order across their topics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.pipeline.event_order import EventOrder, event_time
from tests.factories import T0, feature, login

LOGINS, FEATURES, OUTCOMES = "chs.events.login", "chs.events.feature_use", "chs.outcomes"


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = b"acme"
    headers: Any = ()


def message(topic: str, offset: int, days: float, partition: int = 0) -> Message:
    event = login(days=days) if topic == LOGINS else feature(days=days)
    return Message(topic, partition, offset, event.model_dump_json().encode())


class Setup:
    def __init__(self) -> None:
        self.wall = 1000.0
        self.waiting: dict[tuple[str, int], int | None] = {}
        self.partitions = [0]
        self.order: EventOrder[Message] = EventOrder(
            [LOGINS, FEATURES],
            lambda: self.partitions,
            lambda topic, partition: self.waiting.get((topic, partition), 0),
            lambda: self.wall,
            wait_seconds=10.0,
            max_held=5,
        )


def test_a_leading_topic_waits_for_a_lagging_one_then_both_go_on_oldest_first() -> None:
    setup = Setup()
    order = setup.order
    first = [message(LOGINS, 0, 0.0), message(FEATURES, 0, 0.1)]
    assert order.add(first) == first
    setup.waiting[(LOGINS, 0)] = 40  # logins read to day 0, 40 more waiting
    ahead = [message(FEATURES, offset, day) for offset, day in ((1, 3.0), (2, 5.0))]
    assert order.add(ahead) == []
    assert order.held == 2
    logins = [message(LOGINS, offset, day) for offset, day in ((1, 2.0), (2, 4.0), (3, 6.0))]
    setup.waiting[(LOGINS, 0)] = 0
    released = order.add(logins)
    assert [(m.topic, m.offset) for m in released] == [
        (LOGINS, 1),
        (FEATURES, 1),
        (LOGINS, 2),
        (FEATURES, 2),
        (LOGINS, 3),
    ]
    assert order.held == 0


def test_other_topics_and_unreadable_events_go_on_at_once() -> None:
    setup = Setup()
    order = setup.order
    order.add([message(LOGINS, 0, 0.0)])
    setup.waiting[(LOGINS, 0)] = 40
    outcome = Message(OUTCOMES, 0, 0, b'{"occurred_at": "2026-01-01T00:00:00Z"}')
    unreadable = Message(FEATURES, 0, 0, b"{oops")
    assert order.add([outcome, unreadable]) == [outcome, unreadable]


def test_a_partition_read_ahead_waits_for_another_read_behind() -> None:
    setup = Setup()
    setup.partitions = [0, 1]
    order = setup.order
    order.add([message(LOGINS, 0, 0.0), message(LOGINS, 0, 0.0, partition=1)])
    setup.waiting[(LOGINS, 1)] = 40
    assert order.add([message(LOGINS, 1, 5.0)]) == []
    behind = message(LOGINS, 1, 2.0, partition=1)
    assert [m.partition for m in order.add([behind])] == [1]  # and more to read there
    setup.waiting[(LOGINS, 1)] = 0
    later = message(LOGINS, 2, 6.0, partition=1)
    assert [(m.partition, m.offset) for m in order.add([later])] == [(0, 1), (1, 2)]


def test_a_topic_not_fetched_yet_holds_the_others_until_it_tells_where_it_ends() -> None:
    setup = Setup()
    order = setup.order
    setup.waiting[(LOGINS, 0)] = None  # no fetch has told where the logins end
    assert order.add([message(FEATURES, 0, 1.0)]) == []
    setup.waiting[(LOGINS, 0)] = 0  # none
    assert [m.offset for m in order.release()] == [0]


def test_nothing_waits_longer_than_its_bound_nor_beyond_the_most_held() -> None:
    setup = Setup()
    order = setup.order
    order.add([message(LOGINS, 0, 0.0)])
    setup.waiting[(LOGINS, 0)] = 40  # and never delivered
    assert order.add([message(FEATURES, 0, 1.0)]) == []
    setup.wall += 5
    assert order.release() == []
    setup.wall += 5
    assert [m.offset for m in order.release()] == [0]
    many = [message(FEATURES, offset, 1.0 + offset) for offset in range(1, 8)]
    assert [m.offset for m in order.add(many)] == [1, 2]  # the oldest, past the five held
    assert order.held == 5


def test_an_events_time_is_read_from_its_json() -> None:
    assert event_time(login().model_dump_json().encode()) == T0.timestamp()
    assert event_time(b'{"occurred_at": "2026-01-01T00:00:00"}') is None  # no zone
    assert event_time(None) is None
