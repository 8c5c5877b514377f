"""Files of records: JSONL as the simulator writes it, and CSV exports mapped onto our fields.

A JSONL line is an event of our contract with its ``kind`` (docs/events.md), an outcome with
``"kind": "outcome"``, or a CRM snapshot with ``"kind": "attributes"``. A CSV export is mapped
by a small mapping (options or a JSON file): which column holds which of our fields, how its
event types name our kinds, and constant values for fields it lacks. For example an export
with ``customer``, ``ts`` and ``type`` columns:

    {"columns": {"account_id": "customer", "occurred_at": "ts", "kind": "type"},
     "kinds": {"signin": "login", "feature": "feature_use"},
     "defaults": {"user_id": "unknown"}}
"""

from __future__ import annotations

import csv
import heapq
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from scoring.events import EventKind
from scoring.validation import NoTimeZone, parse_instant
from sim.backtest import Item, parse_record, record_time

KINDS = {kind.value for kind in EventKind} | {"attributes", "outcome"}


class BadRecord(ValueError):
    """A record that cannot be read: the file, the line and why."""


class CsvMapping(BaseModel):
    columns: dict[str, str] = Field(
        default_factory=dict, description="our field -> the CSV column holding it"
    )
    kinds: dict[str, str] = Field(
        default_factory=dict, description="the export's event type -> our kind"
    )
    defaults: dict[str, Any] = Field(
        default_factory=dict, description="our field -> a value for every row"
    )

    @classmethod
    def load(cls, path: Path) -> CsvMapping:
        try:
            return cls.model_validate_json(path.read_text())
        except ValidationError as error:
            raise BadRecord(f"{path}: not a mapping: {error.errors()[0]['msg']}") from None

    def record(self, row: dict[str, str], source: str) -> dict[str, Any]:
        record: dict[str, Any] = dict(self.defaults)
        for name, value in row.items():
            record[name] = value  # columns named like our fields need no mapping
        for ours, column in self.columns.items():
            if column not in row:
                raise BadRecord(f"{source}: no column {column!r} (mapped to {ours})")
            record[ours] = row[column]
        kind = str(record.get("kind", ""))
        record["kind"] = self.kinds.get(kind, kind)
        if record["kind"] not in KINDS:
            raise BadRecord(
                f"{source}: event type {kind!r} is none of ours: map it with kinds "
                f"(ours: {sorted(KINDS)})"
            )
        record.setdefault("event_id", source)
        for name in ("occurred_at", "updated_at"):
            if name in record:
                record[name] = _iso_time(str(record[name]), source)
        return {name: value for name, value in record.items() if value != ""}


def _iso_time(value: str, source: str) -> str:
    try:
        return parse_instant(value).isoformat()
    except NoTimeZone:
        raise BadRecord(f"{source}: {value!r} has no time zone") from None
    except ValueError:
        raise BadRecord(f"{source}: {value!r} is not a time (ISO 8601 or POSIX seconds)") from None


def read_file(path: Path, mapping: CsvMapping | None = None) -> Iterator[Item]:
    """The records of one JSONL or CSV file, in file order, validated."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as handle:
            for line, row in enumerate(csv.DictReader(handle), start=2):
                source = f"{path.name}:{line}"
                yield _parse(json.dumps((mapping or CsvMapping()).record(row, source)), source)
    else:
        with path.open("rb") as handle:
            for line, raw in enumerate(handle, start=1):
                if raw.strip():
                    yield _parse(raw, f"{path.name}:{line}")


def _parse(line: str | bytes, source: str) -> Item:
    try:
        return parse_record(line)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadRecord(f"{source}: {where}: {first['msg']}") from None


SAMPLE_BYTES = 1 << 20


def estimate_records(paths: list[Path]) -> int:
    """About how many records ``paths`` hold, from each file's size and the mean length of the
    lines in its first MiB (for a progress bar and its ETA; nothing is parsed)."""
    total = 0
    for path in paths:
        size = path.stat().st_size
        with path.open("rb") as handle:
            sample = handle.read(SAMPLE_BYTES)
        lines = sample.count(b"\n") or 1
        records = round(size * lines / max(1, len(sample)))
        total += records - 1 if path.suffix.lower() == ".csv" else records
    return max(0, total)


def read_files(paths: list[Path], mapping: CsvMapping | None = None) -> Iterator[Item]:
    """Several files merged in event-time order (each must be in order itself, as exports
    and the simulator's files are)."""
    yield from heapq.merge(*(read_file(path, mapping) for path in paths), key=record_time)


def write_jsonl(records: Iterator[dict[str, Any]], path: Path) -> int:
    count = 0
    with path.open("w") as handle:
        for record in records:
            handle.write(json.dumps(record, separators=(",", ":")))
            handle.write("\n")
            count += 1
    return count


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["account_id"])
        writer.writeheader()
        writer.writerows(rows)
