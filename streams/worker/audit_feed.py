"""The live audit across workers: every worker judges churns against the survivors of every
partition, and publishes the whole base's figures.

Each worker keeps the audit books (``scoring.audit.AuditBook``) of the partitions it owns,
rebuilt from the accounts' states whenever it is assigned partitions (a book is a function of
them, and they live in the table with its changelog), and ships what changed every
``CHS_AUDIT_SHIP_SECONDS`` to ``chs.audit`` (one partition, compacted): one record per
(partition, day) with that day's score distributions, and one per partition with its churners'
results and outcomes. It reads that topic whole (``streams.worker.book_reader.read_books``) and sums
the other partitions' records with its own books.

Bounds: a day's distribution of one model holds at most 1,001 counts whatever the number of
accounts (about 12 KB as JSON); a partition keeps ``TRAIL_DAYS`` days per model.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable

from aiokafka import ConsumerRecord

from scoring.audit import TRAIL_DAYS, AuditBook, Auditor, ScoreCounts, Tally, TallyKey
from scoring.state import AccountState
from streams.worker.own_books import NO_PARTITION, OwnBooks

log = logging.getLogger(__name__)

Ship = Callable[[bytes, bytes | None], Awaitable[None]]
"""Sends one record (its key, its value or None to delete it) to ``chs.audit``."""

RESULTS = "results"


def day_key(partition: int, day: int) -> bytes:
    return f"{partition}/{day}".encode()


def results_key(partition: int) -> bytes:
    return f"{partition}/{RESULTS}".encode()


def encode_day(book: AuditBook, day: int) -> bytes | None:
    versions = book.alive.get(day)
    if not versions:
        return None
    return json.dumps({v: counts.counts for v, counts in versions.items()}).encode()


def encode_results(book: AuditBook) -> bytes:
    results = [[*key, *tally.as_list()] for key, tally in book.results.items()]
    body = {
        "results": results,
        "outcomes": book.outcomes,
        "newest": book.newest,
        "pending": book.pending,
    }
    return json.dumps(body).encode()


class ShippedPartition:
    """What ``chs.audit`` holds of one partition."""

    __slots__ = ("days", "newest", "outcomes", "pending", "results")

    def __init__(self) -> None:
        self.newest: int | None = None
        """The latest day its accounts were scored on."""
        self.days: dict[int, dict[str, ScoreCounts]] = {}
        self.results: dict[TallyKey, Tally] = {}
        self.outcomes: Counter[str] = Counter()
        self.pending: set[int] = set()
        """Days of churns told and not in effect yet."""


class LiveAudit(OwnBooks[AuditBook]):
    """The worker's ``AuditPort``: its own partitions' books, and the others' as shipped."""

    def __init__(self) -> None:
        super().__init__()
        self._shipped: dict[int, ShippedPartition] = {}
        self._waiting: dict[str, tuple[int, int]] = {}
        """Churner's account id -> (its partition, the day its judgement waits for)."""

    def _new_book(self, partition: int) -> AuditBook:
        return AuditBook()

    def rebuild(self, partition: int, states: Iterable[AccountState], auditor: Auditor) -> None:
        """The partition's book from its accounts' states (all of them shipped again)."""
        book = AuditBook()
        for state in states:
            auditor.footprint(state, book)
        if book.alive:
            book.prune(max(book.alive) + 1)  # as the evaluations that closed the newest day
        book.changed_days = set(book.alive)
        book.results_changed = True
        self._own[partition] = book

    def keep_only(self, partitions: set[int]) -> None:
        """Forget the books of partitions now another worker's (it rebuilds them)."""
        super().keep_only(partitions)
        for account_id, (partition, _) in list(self._waiting.items()):
            if partition not in partitions:
                del self._waiting[account_id]

    def wait(self, partition: int | None, account_id: str, day: int) -> None:
        self._waiting[account_id] = (NO_PARTITION if partition is None else partition, day)

    def ready(self) -> list[tuple[int, bytes]]:
        """(partition, account key) of the churners waiting for a day now reached, no longer
        waiting: to be judged at once."""
        ready = [(a, p) for a, (p, day) in self._waiting.items() if self.reached(day)]
        for account_id, _ in ready:
            del self._waiting[account_id]
        return [(partition, account_id.encode()) for account_id, partition in ready]

    def _others(self) -> list[ShippedPartition]:
        return [shipped for p, shipped in self._shipped.items() if p not in self._own]

    def survivors(self, version: str, day: int) -> ScoreCounts:
        total = ScoreCounts()
        for book in self._own.values():
            counts = book.alive.get(day, {}).get(version)
            if counts is not None:
                total.merge(counts)
        for shipped in self._others():
            counts = shipped.days.get(day, {}).get(version)
            if counts is not None:
                total.merge(counts)
        return total

    def reached(self, day: int) -> bool:
        """Whether every partition with accounts alive has scored them as of ``day``, and no
        churn of a day before it waits to take effect: its own books as they are, the
        others' as last shipped (one whose accounts all churned holds no one back)."""
        newest = [book.newest for book in self._own.values() if book.has_accounts()]
        newest += [
            shipped.newest
            for shipped in self._others()
            if shipped.newest is not None and shipped.days.get(shipped.newest - 1)
        ]
        if any(book.churns_pending_before(day) for book in self._own.values()):
            return False
        if any(d < day for shipped in self._others() for d in shipped.pending):
            return False
        return all(n is not None and n >= day for n in newest)

    def totals(self) -> tuple[dict[TallyKey, Tally], Counter[str]]:
        """Every partition's results and outcomes, summed."""
        tallies: dict[TallyKey, Tally] = {}
        outcomes: Counter[str] = Counter()
        parts = [(b.results, b.outcomes) for b in self._own.values()]
        parts += [(s.results, s.outcomes) for s in self._others()]
        for results, counts in parts:
            for key, tally in results.items():
                tallies.setdefault(key, Tally()).merge(tally)
            outcomes.update(counts)
        return tallies, outcomes

    async def ship(self, send: Ship) -> int:
        """Send what changed in each own book since it was last shipped; the records sent."""
        sent = 0
        for partition, book in list(self._own.items()):
            if partition == NO_PARTITION:
                continue
            days, book.changed_days = book.changed_days, set()
            for day in sorted(days):
                await send(day_key(partition, day), encode_day(book, day))
                sent += 1
            if book.results_changed:
                book.results_changed = False
                await send(results_key(partition), encode_results(book))
                sent += 1
        return sent

    def take(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """A record read from ``chs.audit``."""
        if record.key is None:
            return
        try:
            partition_text, _, what = record.key.decode().partition("/")
            shipped = self._shipped.setdefault(int(partition_text), ShippedPartition())
            if what == RESULTS:
                body = json.loads(record.value or b"{}")
                shipped.results = {
                    (v, int(lead), segment): Tally(int(n), above, bottom, int(survivors))
                    for v, lead, segment, n, above, bottom, survivors in body["results"]
                }
                shipped.outcomes = Counter(body["outcomes"])
                shipped.newest = body.get("newest")
                shipped.pending = {int(day) for day in body.get("pending", {})}
                return
            day = int(what)
            if record.value is None:
                shipped.days.pop(day, None)
                return
            shipped.days[day] = {
                version: ScoreCounts({int(b): n for b, n in counts.items()})
                for version, counts in json.loads(record.value).items()
            }
            for old in [d for d in shipped.days if d <= day - TRAIL_DAYS]:
                del shipped.days[old]
        except (ValueError, KeyError, TypeError) as error:
            # Only workers write the topic: another shape is a bug elsewhere, not a reason to
            # stop judging.
            log.error("Left out of the audit: %s@%d: %s", record.key, record.offset, error)
