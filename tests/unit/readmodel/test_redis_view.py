from __future__ import annotations

from pydantic_core import to_json

from readmodel.redis_view import (
    history_member,
    parse_history_member,
    update_from_view,
    view_fields,
)
from scoring.update import ScoreUpdate
from tests.factories import scored


def test_the_redis_view_round_trips_a_score_update() -> None:
    update = scored()
    stored = view_fields(update, update.model_dump_json().encode())
    assert stored["band"] == update.band
    assert stored["segment"] == ""
    assert stored["score"] == str(update.score)
    assert update_from_view(stored) == update


def older_view_fields(update: ScoreUpdate) -> dict[bytes, bytes]:
    """An account's hash as the view wrote it before storing the update whole: every field
    flat, nested ones as JSON, None as "" (as HGETALL returns them: bytes)."""
    return {
        name.encode(): (
            b"" if value is None else value.encode() if isinstance(value, str) else to_json(value)
        )
        for name, value in update.model_dump(mode="json").items()
    }


def test_the_redis_view_still_reads_hashes_of_the_older_form() -> None:
    update = scored()
    assert update_from_view(older_view_fields(update)) == update


def test_a_days_closing_score_reads_back_from_its_history_member() -> None:
    member = history_member(20_500, 63.25)
    assert parse_history_member(member.encode()) == (20_500, 63.25)
    assert parse_history_member(member) == (20_500, 63.25)
