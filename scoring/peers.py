"""Where an account's raw measure value ranks among its peers'.

A peer-relative measure (``PercentileMapping``) scores an account by its rank among the
accounts of its peer group (``peer_group``: the model segment, optionally the tenure band)
on the same measure. The ranks come from KLL quantile sketches (Apache DataSketches) of the
raw values, one per (peer group, measure) and day:

- each account adds its values once a day, at its first evaluation of the day (the state
  records the day: ``AccountState.peer_day``), so an active account weighs no more than a
  quiet one;
- a partition's sketches (``PeerBook``) hold the day being filled and the one before; the
  sketches of every partition merge into the whole base's (``PeerDistribution``);
- scores rank against the previous day's distribution (complete: every account is evaluated
  at least every ``reevaluate_hours``), or the current day's while the previous one has too
  few accounts (the first day), or not at all below ``min_accounts``: the measure then uses
  its absolute ``fallback`` mapping and says so.

A sketch of ``SKETCH_K`` = 200 holds at most about 600 values whatever the number of
accounts (rank error about 1.3 %), about 2.5 KB serialised.

Pure: no clock, no I/O. The worker keeps one ``PeerBook`` per partition and ships it on a
compacted topic; the backtest builds one per observation date.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from typing import NamedTuple, Protocol

from datasketches import kll_floats_sketch

SKETCH_K = 200
"""KLL accuracy parameter: normalised rank error about 1.65 / k."""
DAYS_KEPT = 2
"""A partition's book holds the day being filled and the one before."""
DEFAULT_GROUP = "*"
"""The peer group name of accounts in no model segment."""

SketchKey = tuple[str, str]
"""(peer group, measure name)."""


def peer_group(segment: str | None, tenure_days: float | None, bands: list[int]) -> str:
    """The group an account is ranked in: its model segment, and the tenure band when the
    model splits peers by tenure (``bands`` in days, ascending: [90, 365] makes "<90d",
    "90-365d" and ">=365d")."""
    name = segment or DEFAULT_GROUP
    if not bands or tenure_days is None:
        return name
    index = bisect_right(bands, tenure_days)
    if index == 0:
        return f"{name}/<{bands[0]}d"
    if index == len(bands):
        return f"{name}/>={bands[-1]}d"
    return f"{name}/{bands[index - 1]}-{bands[index]}d"


class PeerRank(NamedTuple):
    percentile: float
    """0-100: the share of peers below the value, ties counted half."""
    median: float
    """The peers' median raw value."""
    accounts: int
    """Peers with a value for the measure."""


class DaySketches:
    """One day's sketches of raw measure values, per (peer group, measure)."""

    __slots__ = ("day", "sketches")

    def __init__(self, day: int) -> None:
        self.day = day
        self.sketches: dict[SketchKey, kll_floats_sketch] = {}

    def add(self, group: str, values: Mapping[str, float]) -> None:
        for measure, value in values.items():
            key = (group, measure)
            sketch = self.sketches.get(key)
            if sketch is None:
                sketch = self.sketches[key] = kll_floats_sketch(SKETCH_K)
            sketch.update(value)

    def merge(self, other: DaySketches) -> None:
        for key, sketch in other.sketches.items():
            mine = self.sketches.get(key)
            if mine is None:
                mine = self.sketches[key] = kll_floats_sketch(SKETCH_K)
            mine.merge(sketch)

    def to_bytes(self) -> bytes:
        parts = [struct.pack(">iI", self.day, len(self.sketches))]
        for (group, measure), sketch in sorted(self.sketches.items()):
            body = sketch.serialize()
            for text in (group.encode(), measure.encode()):
                parts.append(struct.pack(">H", len(text)) + text)
            parts.append(struct.pack(">I", len(body)) + body)
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes, offset: int = 0) -> tuple[DaySketches, int]:
        day, count = struct.unpack_from(">iI", data, offset)
        offset += 8
        result = cls(day)
        for _ in range(count):
            texts = []
            for _ in range(2):
                (length,) = struct.unpack_from(">H", data, offset)
                texts.append(data[offset + 2 : offset + 2 + length].decode())
                offset += 2 + length
            (length,) = struct.unpack_from(">I", data, offset)
            body = data[offset + 4 : offset + 4 + length]
            offset += 4 + length
            result.sketches[(texts[0], texts[1])] = kll_floats_sketch.deserialize(body)
        return result, offset


class PeerBook:
    """One partition's sketches: the day being filled and the day before (``DAYS_KEPT``)."""

    __slots__ = ("changed", "days")

    def __init__(self) -> None:
        self.days: dict[int, DaySketches] = {}
        self.changed = False
        """Set by ``contribute``; the owner clears it once the book is shipped."""

    def contribute(self, day: int, group: str, values: Mapping[str, float]) -> None:
        sketches = self.days.get(day)
        if sketches is None:
            sketches = self.days[day] = DaySketches(day)
            for old in sorted(self.days)[:-DAYS_KEPT]:
                del self.days[old]
        sketches.add(group, values)
        self.changed = True

    def to_bytes(self) -> bytes:
        kept = [self.days[day].to_bytes() for day in sorted(self.days)]
        return struct.pack(">B", len(kept)) + b"".join(kept)

    @classmethod
    def from_bytes(cls, data: bytes) -> PeerBook:
        book = cls()
        (count,) = struct.unpack_from(">B", data, 0)
        offset = 1
        for _ in range(count):
            sketches, offset = DaySketches.from_bytes(data, offset)
            book.days[sketches.day] = sketches
        return book


class PeerDistribution:
    """The whole base's distribution of one day, merged from every partition's sketches."""

    __slots__ = ("_medians", "day", "min_accounts", "sketches")

    def __init__(self, sketches: DaySketches, min_accounts: int) -> None:
        self.day = sketches.day
        self.sketches = sketches
        self.min_accounts = min_accounts
        self._medians: dict[SketchKey, float] = {}

    def rank(self, group: str, measure: str, raw: float) -> PeerRank | None:
        """Where ``raw`` ranks among the group's values; None below ``min_accounts`` peers."""
        key = (group, measure)
        sketch = self.sketches.sketches.get(key)
        if sketch is None or sketch.n < self.min_accounts:
            return None
        median = self._medians.get(key)
        if median is None:
            median = self._medians[key] = sketch.get_quantile(0.5)
        below = sketch.get_rank(raw, False)
        at_or_below = sketch.get_rank(raw, True)
        return PeerRank(50.0 * (below + at_or_below), median, sketch.n)


def merged(books: Iterable[PeerBook], day: int) -> DaySketches:
    """Every book's sketches of ``day`` merged into one."""
    result = DaySketches(day)
    for book in books:
        sketches = book.days.get(day)
        if sketches is not None:
            result.merge(sketches)
    return result


class PeerBoard:
    """The distributions scores rank against, from every partition's latest book."""

    def __init__(self, min_accounts: int) -> None:
        self.min_accounts = min_accounts
        self._books: dict[int, PeerBook] = {}
        self._cache: dict[int, PeerDistribution] = {}

    def put(self, partition: int, book: PeerBook) -> None:
        """The partition's newest book (replacing the one held)."""
        self._books[partition] = book
        self._cache.clear()

    def book(self, partition: int) -> PeerBook | None:
        return self._books.get(partition)

    def distribution(self, today: int) -> PeerDistribution:
        """The previous day's distribution, or today's while yesterday's is thinner (the
        first day of data, or after a gap): cached until a book changes."""
        found = self._cache.get(today)
        if found is None:
            previous = merged(self._books.values(), today - 1)
            current = merged(self._books.values(), today)
            chosen = previous if _size(previous) >= _size(current) else current
            found = self._cache[today] = PeerDistribution(chosen, self.min_accounts)
        return found


def _size(sketches: DaySketches) -> int:
    return max((sketch.n for sketch in sketches.sketches.values()), default=0)


class PeerPort(Protocol):
    """What scoring needs of the peers: the distribution to rank against, and the book an
    account's partition adds its values to."""

    def distribution(self, today: int) -> PeerDistribution: ...

    def book_for(self, partition: int | None) -> PeerBook: ...


class LocalPeers:
    """Every account in one process, one book read back as it fills (the backtest, tests)."""

    def __init__(self, min_accounts: int) -> None:
        self.book = PeerBook()
        self._board = PeerBoard(min_accounts)

    def distribution(self, today: int) -> PeerDistribution:
        if self.book.changed or self._board.book(0) is None:
            self._board.put(0, self.book)
            self.book.changed = False
        return self._board.distribution(today)

    def book_for(self, partition: int | None) -> PeerBook:
        return self.book
