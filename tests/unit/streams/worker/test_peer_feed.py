"""The worker's peers, with a fake topic: what it ships, what it reads, what it carries on."""

from __future__ import annotations

from typing import NamedTuple

from scoring.peers import PeerBook
from scoring.state import day_of
from streams.worker.peer_feed import LivePeers
from tests.factories import T0

TODAY = day_of(T0.timestamp())


class Record(NamedTuple):
    key: bytes | None
    value: bytes | None
    offset: int = 0


class FakeTopic:
    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes]] = []

    async def send(self, partition: int, book: bytes) -> None:
        self.sent.append((partition, book))


async def test_only_changed_books_are_shipped_once() -> None:
    peers = LivePeers(min_accounts=5)
    topic = FakeTopic()
    peers.book_for(0).contribute(TODAY, "*", {"m": 1.0})
    peers.book_for(1).contribute(TODAY, "*", {"m": 2.0})
    assert await peers.ship(topic.send) == 2
    assert sorted(p for p, _ in topic.sent) == [0, 1]
    assert await peers.ship(topic.send) == 0  # nothing changed since
    peers.book_for(1).contribute(TODAY, "*", {"m": 3.0})
    assert await peers.ship(topic.send) == 1
    partition, shipped = topic.sent[-1]
    assert partition == 1
    assert PeerBook.from_bytes(shipped).days[TODAY].sketches[("*", "m")].n == 2


async def test_books_read_from_the_topic_merge_into_one_distribution() -> None:
    writer, reader = LivePeers(min_accounts=5), LivePeers(min_accounts=5)
    topic = FakeTopic()
    for partition in range(3):
        for value in range(4):
            writer.book_for(partition).contribute(
                TODAY - 1, "*", {"m": float(partition * 4 + value)}
            )
    await writer.ship(topic.send)
    assert reader.distribution(TODAY).rank("*", "m", 5.0) is None  # nothing read yet
    for partition, book in topic.sent:
        reader.take(Record(str(partition).encode(), book))
    ranked = reader.distribution(TODAY).rank("*", "m", 5.5)
    assert ranked is not None
    assert ranked.accounts == 12
    assert ranked.percentile == 50.0


async def test_a_partition_taken_over_carries_on_from_its_last_shipped_book() -> None:
    old_owner, new_owner = LivePeers(min_accounts=5), LivePeers(min_accounts=5)
    topic = FakeTopic()
    old_owner.book_for(2).contribute(TODAY, "*", {"m": 1.0})
    await old_owner.ship(topic.send)
    for partition, book in topic.sent:
        new_owner.take(Record(str(partition).encode(), book))
    carried = new_owner.book_for(2)
    carried.contribute(TODAY, "*", {"m": 2.0})
    assert carried.days[TODAY].sketches[("*", "m")].n == 2
    board_book = new_owner.board.book(2)
    assert board_book is not None
    assert board_book.days[TODAY].sketches[("*", "m")].n == 1  # the board's copy untouched
    new_owner.keep_only({0})
    assert new_owner.book_for(2).days[TODAY].sketches[("*", "m")].n == 1  # from the board again


def test_a_record_that_is_no_book_is_left_out() -> None:
    peers = LivePeers(min_accounts=5)
    peers.take(Record(b"x", b"\x01"))
    peers.take(Record(b"3", b"\x01\x00"))
    peers.take(Record(None, b""))
    whole = PeerBook()
    whole.contribute(TODAY, "*", {"m": 1.0})
    peers.take(Record(b"4", whole.to_bytes()[:-5]))  # cut short
    assert peers.board.book(4) is None
    assert peers.board.book(3) is None
