from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from scoring.events import FeatureUseEvent, LoginEvent
from sim.backtest import record_time
from sim.files import (
    BadRecord,
    CsvMapping,
    estimate_records,
    read_file,
    read_files,
    write_jsonl,
)
from sim.progress import Progress

EXPORT = """customer,ts,type,user,feature
acme,2025-03-01T09:00:00Z,signin,u1,
acme,1740823200,feature,u1,reports
globex,2025-03-01T11:00:00+01:00,signin,u9,
"""
MAPPING = CsvMapping(
    columns={"account_id": "customer", "occurred_at": "ts", "kind": "type", "user_id": "user"},
    kinds={"signin": "login", "feature": "feature_use"},
)


def test_a_csv_export_is_mapped_onto_our_events(tmp_path: Path) -> None:
    export = tmp_path / "export.csv"
    export.write_text(EXPORT)
    events = list(read_file(export, MAPPING))
    assert [type(e) for e in events] == [LoginEvent, FeatureUseEvent, LoginEvent]
    login, feature, other = events
    assert isinstance(login, LoginEvent)
    assert login.account_id == "acme"
    assert isinstance(feature, FeatureUseEvent)
    assert feature.feature == "reports"
    assert feature.occurred_ts == 1740823200  # POSIX seconds read as such
    assert record_time(other) == login.occurred_ts + 3600  # its zone taken into account
    assert login.event_id == "export.csv:2"  # no id column: file and line


def test_the_mapping_file_and_bad_rows_say_what_is_wrong(tmp_path: Path) -> None:
    mapping_file = tmp_path / "mapping.json"
    mapping_file.write_text(MAPPING.model_dump_json())
    assert CsvMapping.load(mapping_file) == MAPPING
    export = tmp_path / "export.csv"
    export.write_text(EXPORT.replace("signin,u9", "logout,u9"))
    with pytest.raises(
        BadRecord, match=re.escape("export.csv:4: event type 'logout' is none of ours")
    ):
        list(read_file(export, MAPPING))
    export.write_text(EXPORT.replace("2025-03-01T09:00:00Z", "2025-03-01 09:00"))
    with pytest.raises(
        BadRecord, match=re.escape("export.csv:2: '2025-03-01 09:00' has no time zone")
    ):
        list(read_file(export, MAPPING))
    unmapped = CsvMapping(columns={"account_id": "client"})
    with pytest.raises(BadRecord, match="no column 'client'"):
        list(read_file(export, unmapped))


def test_files_merge_in_event_time_order(tmp_path: Path) -> None:
    def login(account: str, hour: int) -> dict[str, object]:
        return {
            "kind": "login",
            "event_id": f"{account}-{hour}",
            "account_id": account,
            "occurred_at": f"2025-03-01T{hour:02d}:00:00Z",
            "user_id": "u",
        }

    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_jsonl(iter([login("a", 1), login("a", 5)]), first)
    write_jsonl(iter([login("b", 2), login("b", 3)]), second)
    merged = [
        f"{e.account_id}{record_time(e) // 3600 % 24:.0f}" for e in read_files([first, second])
    ]
    assert merged == ["a1", "b2", "b3", "a5"]
    first.write_text('{"kind": "login", "account_id": "a"}\n')
    with pytest.raises(BadRecord, match=re.escape("a.jsonl:1: ")):
        list(read_file(first))


def test_the_record_count_is_estimated_from_the_size_for_the_progress_eta(
    tmp_path: Path,
) -> None:
    jsonl = tmp_path / "events.jsonl"
    lines = [f'{{"kind": "login", "n": {n}, "pad": "{"x" * (n % 37)}"}}\n' for n in range(60_000)]
    jsonl.write_text("".join(lines))
    assert estimate_records([jsonl]) == pytest.approx(60_000, rel=0.05)
    csv_file = tmp_path / "export.csv"
    csv_file.write_text(EXPORT)
    assert estimate_records([csv_file, jsonl]) == pytest.approx(60_003, rel=0.05)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_an_eta_while_a_total_is_known() -> None:
    out = Terminal()
    progress = Progress("scoring", total=1_000, out=out, every=0.0)
    progress.update(250)
    assert re.search(r"25% 250/1,000 .* ETA \d+s", out.getvalue())
    progress.finish()
    assert "ETA" not in out.getvalue().split("\r")[-1]
