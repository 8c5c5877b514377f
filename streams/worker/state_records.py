"""An account's state in the table's changelog: a small record of what every input changes,
and the slower parts apart, each written only when it changed.

An account's whole state took about 4 KB (90 days of a busy account) and was written for
every batch that touched it, though an input changes little of it: today's day bucket, the
offset fence, the last seen times, the alert memory, the closing score of the day. So:

- under the account's key, the *input record*: everything but the parts below (of the day
  buckets, the newest day's; of the closing scores, the audit's trails and the alert rules'
  daily highs, the last day's);
- under keys of their own, five *parts*, each written only when its encoding changed: the
  closed days (day buckets before the newest day; closing scores, trails and daily highs
  before the last day), the users, the features, the other maps (open tickets, unpaid
  invoices, survey answers), and the account (published score, attributes, outcomes, audit
  results);
- a parent's children, a *child record* each (its latest report), written when that child's
  report changed and deleted when it leaves: a report from one of a thousand children writes
  one child, not the thousand.

A part is written before the input record that refers to it, in one of two slots by turns;
the input record says which slot holds each part. Under a backlog, when an account's window
changed most of its parts, the changed parts go inline in its input record instead (a *window
record*): one record per account per window; a part held only inline is written to a slot
when it is next left out. A crash between the two leaves the input
record referring to the slot written before, which the new write did not touch: the state
read back is always one the worker had after a batch (docs/reliability.md).

A record's first byte says what it is; a value starting with ``{`` is the older form, the
whole state as JSON, and still loads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import from_json, to_json

from scoring.state import AccountState, AlertMemory, ChildEntry

INPUT_RECORD = 1
PART_RECORD = 2
CHILD_RECORD = 3
WINDOW_RECORD = 4
"""An input record with parts inline: ``\x00`` then the part's letter before each (JSON never
holds a raw NUL)."""
INLINE = -1
"""The slot of a part held only inline in the account's record."""
CHILDREN = "children"
"""The field of a parent's children, kept in child records."""
PART_PREFIX = b"\x00"
"""Part keys start with it (an account id never does: ``account_key_is_valid``)."""

CLOSED_DAYS = "d"
PART_FIELDS: dict[str, frozenset[str]] = {
    CLOSED_DAYS: frozenset({"days", "history", "trails", "alerts"}),
    "u": frozenset({"active_users"}),
    "f": frozenset({"features"}),
    "m": frozenset({"open_tickets", "unpaid_invoices", "latest_surveys"}),
    "a": frozenset({"published", "attributes", "outcomes", "audit"}),
}
"""Each part's fields: each of the maps apart, as a user's or a feature's first use of the
day changes its map only."""
PARTS = tuple(PART_FIELDS)
_SPLIT = PART_FIELDS[CLOSED_DAYS]
_WHOLE = frozenset({CHILDREN}).union(
    *(fields for part, fields in PART_FIELDS.items() if part != CLOSED_DAYS)
)
"""The fields the input record leaves out (the closed days' fields it holds in part)."""
_ACCOUNT_PART = "a"


def account_key_is_valid(key: bytes) -> bool:
    return not key.startswith(PART_PREFIX)


def part_key(key: bytes, part: str, slot: int) -> bytes:
    return PART_PREFIX + f"{part}{slot}".encode() + PART_PREFIX + key


def child_key(key: bytes, child_id: str) -> bytes:
    """A child record's key: a digest of the child's id (ids may hold any character but a
    leading NUL), then the parent's key."""
    digest = hashlib.blake2b(child_id.encode(), digest_size=8).hexdigest()
    return PART_PREFIX + b"c" + digest.encode() + PART_PREFIX + key


def account_of(record_key: bytes) -> bytes:
    """The account key of a part or child record's key."""
    return record_key.split(PART_PREFIX, 2)[2]


@dataclass(frozen=True, slots=True)
class StatePart:
    """A part record as read back: merged into its account's state after a recovery."""

    part: str
    slot: int
    body: bytes
    """The part's fields as JSON (parsed only when merged: a recovery reads every version
    of a key the broker has not compacted yet)."""


@dataclass(frozen=True, slots=True)
class ChildRecord:
    """A child record as read back: added to its parent's children after a recovery."""

    child_id: str
    entry: ChildEntry


@dataclass(frozen=True, slots=True)
class InputRecord:
    """An input record as read back, with the slots of its parts and the parts it holds
    inline (a window record), all JSON until merged: the account's state is validated once,
    from the record and its parts together."""

    body: bytes
    slots: dict[str, int]
    inline: dict[str, bytes] = field(default_factory=dict)


def _newest(days: dict[int, Any]) -> int | None:
    return max(days) if days else None


def _closed(state: AccountState) -> AccountState:
    """The closed days' part: day buckets before the newest, closing scores, trails and the
    alert rules' daily highs before the last day."""
    newest = state.newest_day
    last = _newest(state.history)
    highs = state.alerts.daily_highs
    high_day = _newest(highs)
    # A shallow copy: building a model afresh resolves every field's default, which cost
    # more than the encoding.
    return state.model_copy(
        update={
            "days": {d: b for d, b in state.days.items() if newest is None or d < newest},
            "history": {d: s for d, s in state.history.items() if last is None or d < last},
            "trails": {version: trail[:-1] for version, trail in state.trails.items()},
            "alerts": AlertMemory(daily_highs={d: h for d, h in highs.items() if d != high_day}),
        }
    )


def _open(state: AccountState) -> dict[str, Any]:
    """What of the closed days' fields goes with the input record."""
    newest = state.newest_day
    last = _newest(state.history)
    highs = state.alerts.daily_highs
    high_day = _newest(highs)
    return {
        "days": {d: b for d, b in state.days.items() if newest is not None and d >= newest},
        "history": {d: s for d, s in state.history.items() if d == last},
        "trails": {version: trail[-1:] for version, trail in state.trails.items()},
        "alerts": state.alerts.model_copy(
            update={"daily_highs": {d: h for d, h in highs.items() if d == high_day}}
        ),
    }


_INCLUDE = {part: {"account_id", *fields} for part, fields in PART_FIELDS.items()}


def closed_days_mark(state: AccountState) -> tuple[Any, ...]:
    """What moves when the closed days' part changes: the newest day (buckets close and
    leave), late events, the closing scores' last day and count, the trails' end and
    lengths, the daily highs' last day and count. The same mark, the same part: it need not
    be encoded to be compared."""
    history, highs = state.history, state.alerts.daily_highs
    return (
        state.newest_day,
        len(state.days),
        state.caches.late_folds,
        _newest(history),
        len(history),
        state.trail_end,
        tuple((version, len(trail)) for version, trail in state.trails.items()),
        _newest(highs),
        len(highs),
    )


def encode_part(state: AccountState, part: str) -> bytes:
    """The part's fields as JSON (the slot goes in front when it is written)."""
    source = _closed(state) if part == CLOSED_DAYS else state
    return source.model_dump_json(include=_INCLUDE[part], exclude_defaults=True).encode()


def part_record(part: str, slot: int, body: bytes) -> bytes:
    return bytes([PART_RECORD]) + f"{part}{slot}".encode() + body


def encode_input_record(
    state: AccountState, slots: dict[str, int], inline: dict[str, bytes] | None = None
) -> bytes:
    """The input record; with ``inline`` parts (part -> ``encode_part``), a window record,
    whose head names the slots of the other parts only."""
    kind = WINDOW_RECORD if inline else INPUT_RECORD
    named = [p for p in PARTS if not inline or p not in inline]
    head = bytes([kind]) + "".join(f"{p}{slots.get(p, 0)}" for p in named).encode()
    opened = state.model_copy(update=_open(state))
    body = opened.model_dump_json(exclude=set(_WHOLE), exclude_defaults=True)
    parts = b"".join(b"\x00" + part.encode() + encoded for part, encoded in (inline or {}).items())
    return head + b"|" + body.encode() + parts


def child_record(child_id: str, entry: ChildEntry) -> bytes:
    body = entry.model_dump_json(exclude_defaults=True).encode()
    return bytes([CHILD_RECORD]) + child_id.encode() + b"\x00" + body


Recovered = AccountState | InputRecord | StatePart | ChildRecord
"""A changelog record's value as read back."""


def decode(value: bytes) -> Recovered:
    kind = value[0]
    if kind in (INPUT_RECORD, WINDOW_RECORD):
        head, rest = value[1:].split(b"|", 1)
        text = head.decode()
        slots = {text[i]: int(text[i + 1]) for i in range(0, len(text), 2)}
        body, *parts = rest.split(b"\x00")
        return InputRecord(body, slots, {part[:1].decode(): part[1:] for part in parts})
    if kind == PART_RECORD:
        part, slot = value[1:2].decode(), int(value[2:3].decode())
        return StatePart(part, slot, value[3:])
    if kind == CHILD_RECORD:
        child_id, body = value[1:].split(b"\x00", 1)
        return ChildRecord(child_id.decode(), ChildEntry.model_validate_json(body))
    return AccountState.model_validate_json(value)  # the older form: the whole state


def merge(
    record: InputRecord,
    parts: dict[tuple[str, int], bytes],
    missing: list[str] | None = None,
) -> AccountState:
    """The account's state from its input record and the parts in the slots it names (those
    not among ``parts`` are added to ``missing``, and left at their defaults)."""
    named = [(part, parts.get((part, slot))) for part, slot in record.slots.items()]
    body = record.body
    joined: list[bytes] = []
    for part, found in [*named, *record.inline.items()]:
        if found is None:
            if missing is not None:
                missing.append(part)
        elif part == CLOSED_DAYS:
            state: dict[str, Any] = from_json(body)
            _merge_closed_days(state, from_json(found))
            body = to_json(state)
        else:
            joined.append(found)
    # The other parts' fields are theirs alone: each part's JSON object joins the record's as
    # it is, unparsed (the account id, in both, is the same; the last of a repeated key wins).
    return AccountState.model_validate_json(_joined(body, joined))


def _joined(record: bytes, parts: list[bytes]) -> bytes:
    """JSON objects' members in one object."""
    members = [body[1:-1] for body in [record, *parts] if len(body) > 2]
    return b"{" + b",".join(members) + b"}"


def _merge_closed_days(state: dict[str, Any], closed: dict[str, Any]) -> None:
    """The closed days before the open ones the input record holds (JSON, as read)."""
    for name in ("days", "history"):
        merged = {**closed.get(name, {}), **state.get(name, {})}
        if merged:
            state[name] = merged
    trails = closed.get("trails", {})
    if "trails" in state:
        state["trails"] = {
            version: [*trails.get(version, []), *trail]
            for version, trail in state["trails"].items()
        }
    highs = closed.get("alerts", {}).get("daily_highs", {})
    if highs:
        alerts = state.setdefault("alerts", {})
        alerts["daily_highs"] = {**highs, **alerts.get("daily_highs", {})}


def _digest(encoded: bytes) -> bytes:
    return hashlib.blake2b(encoded, digest_size=16).digest()


class StateWriter:
    """The records to write for each account's state after a batch: the parts whose encoding
    changed since last written (into the other slot), then the input record."""

    def __init__(self) -> None:
        self._written: dict[bytes, dict[str, tuple[int, bytes | None]]] = {}
        """Account key -> part -> (slot or ``INLINE``, digest of the encoding) last written;
        digest None after a recovery (the slot is known, not what it holds)."""
        self._closed_marks: dict[bytes, tuple[Any, ...]] = {}
        """Account key -> ``closed_days_mark`` when its closed days were last written."""
        self._children: dict[bytes, dict[str, ChildEntry]] = {}
        """Parent key -> each child's entry as last written (a report replaces the entry,
        so an entry that is the same object is unchanged)."""

    def records(
        self, key: bytes, state: AccountState, inline: bool = False
    ) -> Iterator[tuple[bytes, bytes | None]]:
        """The parts whose encoding changed, each into its other slot, then the input record;
        ``inline`` (a window under a backlog): the changed parts inline in the input record,
        one record in all (children apart)."""
        written = self._written.setdefault(key, {})
        slots: dict[str, int] = {}
        held: dict[str, bytes] = {}
        mark = closed_days_mark(state)
        for part in PARTS:
            last = written.get(part)
            only_inline = last is not None and last[0] == INLINE
            if (
                part == CLOSED_DAYS
                and last is not None
                and not only_inline
                and self._closed_marks.get(key) == mark
            ):
                slots[part] = last[0]  # encoding the closed days was most of the cost
                continue
            encoded = encode_part(state, part)
            digest = _digest(encoded)
            if last is not None and last[1] == digest and not only_inline:
                slots[part] = last[0]
                continue
            if inline:
                written[part] = (INLINE, digest)
                held[part] = encoded
                continue
            # Not the slot the input record written last names (an inline part has none).
            slot = 0 if last is None or last[0] != 0 else 1
            written[part] = (slot, digest)
            slots[part] = slot
            yield part_key(key, part, slot), part_record(part, slot, encoded)
        self._closed_marks[key] = mark
        yield from self._child_records(key, state)
        yield key, encode_input_record(state, slots, held)

    def _child_records(
        self, key: bytes, state: AccountState
    ) -> Iterator[tuple[bytes, bytes | None]]:
        """A record for each child whose entry changed; a tombstone for each that left."""
        children = state.children
        written = self._children.get(key)
        if not children and not written:
            return
        if written is None:
            written = self._children[key] = {}
        for child_id, entry in children.items():
            if written.get(child_id) is not entry:
                written[child_id] = entry
                yield child_key(key, child_id), child_record(child_id, entry)
        for child_id in [c for c in written if c not in children]:
            del written[child_id]
            yield child_key(key, child_id), None

    def deleted(self, key: bytes) -> Iterator[bytes]:
        """Every record key of a deleted account (tombstones for all)."""
        self._written.pop(key, None)
        self._closed_marks.pop(key, None)
        yield key
        for part in PARTS:
            for slot in (0, 1):
                yield part_key(key, part, slot)
        for child_id in self._children.pop(key, {}):
            yield child_key(key, child_id)

    def recovered(
        self, key: bytes, slots: dict[str, int], children: dict[str, ChildEntry] | None = None
    ) -> None:
        """After a recovery: the slots the account's input record names hold its parts (the
        next write of a part goes to the other; ``INLINE``: the record holds it), and its
        child records hold ``children``."""
        self._written[key] = {part: (slot, None) for part, slot in slots.items()}
        self._closed_marks.pop(key, None)
        if children:
            self._children[key] = dict(children)


def merge_recovered(
    data: MutableMapping[bytes, Any], writer: StateWriter | None
) -> dict[bytes, list[str]]:
    """Turn the records a recovery read into ``data`` (record key -> ``decode``'s value)
    into account states: each input record merged with the parts it names; the part records
    leave ``data``. Returns the parts named but not read back, by account (none, unless
    records were lost)."""
    not_read: dict[bytes, list[str]] = {}
    parts: dict[bytes, dict[tuple[str, int], bytes]] = {}
    children: dict[bytes, dict[str, ChildEntry]] = {}
    inputs: dict[bytes, InputRecord] = {}
    for key, value in list(data.items()):
        if isinstance(value, StatePart):
            parts.setdefault(account_of(key), {})[(value.part, value.slot)] = value.body
            del data[key]
        elif isinstance(value, ChildRecord):
            children.setdefault(account_of(key), {})[value.child_id] = value.entry
            del data[key]
        elif isinstance(value, InputRecord):
            inputs[key] = value
        elif writer is not None:
            writer.recovered(key, {})  # the older form: it names no part
    for key, record in inputs.items():
        missing: list[str] = []
        state = data[key] = merge(record, parts.get(key, {}), missing)
        if missing:
            not_read[key] = missing
        written = children.get(key, {})
        # Child records come in no order: the older reports first, as the parent got them.
        state.children = {
            **state.children,
            **dict(sorted(written.items(), key=lambda child: child[1].at)),
        }
        if writer is not None:
            # An older form's children (in the account part) have no record yet.
            slots = {**record.slots, **dict.fromkeys(record.inline, INLINE)}
            writer.recovered(key, slots, written if written else None)
    return not_read


def replay(records: Iterable[tuple[bytes, bytes | None]]) -> dict[bytes, AccountState]:
    """The accounts' states a changelog's records (key, value; None deletes) leave."""
    data: dict[bytes, Any] = {}
    for key, value in records:
        if value is None:
            data.pop(key, None)
        else:
            data[key] = decode(value)
    merge_recovered(data, None)
    return data
