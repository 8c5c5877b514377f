"""Peers across workers: every worker ranks against the same distribution although each
owns only some partitions.

Each worker fills the peer books (``scoring.peers.PeerBook``) of the partitions it owns and
ships each changed one every ``CHS_PEERS_SHIP_SECONDS`` to ``chs.peers`` (one partition,
compacted, keyed by the account partition), and reads that topic whole, from the start, with
a consumer of no group (``streams.worker.book_reader.read_books``): its board holds every
partition's latest book and merges them on read. A worker that takes a partition over
carries on with the book last shipped for it.

Bounds: a book holds two days of sketches per (peer group, peer-relative measure), each at
most about 3 KB whatever the number of accounts (``scoring.peers``); the default model's
8 such measures and 3 groups make at most about 150 KB per partition, shipped at most once
per interval, and the compacted topic keeps one book per partition.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Awaitable, Callable

from aiokafka import ConsumerRecord

from scoring.peers import PeerBoard, PeerBook, PeerDistribution
from streams.worker.own_books import OwnBooks

log = logging.getLogger(__name__)

Ship = Callable[[int, bytes], Awaitable[None]]
"""Sends one partition's book (the account partition, its bytes) to ``chs.peers``."""


class LivePeers(OwnBooks[PeerBook]):
    """The worker's ``PeerPort``: it ranks against the board, and fills its own books."""

    def __init__(self, min_accounts: int) -> None:
        super().__init__()
        self.board = PeerBoard(min_accounts)

    def distribution(self, today: int) -> PeerDistribution:
        return self.board.distribution(today)

    def _new_book(self, partition: int) -> PeerBook:
        # Carries on from the book last shipped for the partition: a copy, since the board's
        # is replaced whenever the topic brings a newer one.
        shipped = self.board.book(partition)
        return PeerBook.from_bytes(shipped.to_bytes()) if shipped else PeerBook()

    async def ship(self, send: Ship) -> int:
        """Send every book that changed since it was last shipped; the number sent."""
        sent = 0
        for partition, book in list(self._own.items()):
            if book.changed:
                book.changed = False
                await send(partition, book.to_bytes())
                sent += 1
        return sent

    def take(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """A book read from ``chs.peers``."""
        if record.key is None or record.value is None:
            return
        try:
            partition = int(record.key)
            book = PeerBook.from_bytes(record.value)
        except (ValueError, IndexError, RuntimeError, struct.error) as error:
            # Only workers write the topic: another shape is a bug elsewhere, not a reason to
            # stop ranking.
            log.error("Left out of the peers: %s@%d: %s", record.key, record.offset, error)
            return
        self.board.put(partition, book)
