"""What the API reads from a request and which ranking a filter walks (no Redis)."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from api.app import MAX_LIMIT, BadRequest, _either, _limit, _since, decode_cursor, encode_cursor
from api.store import AccountFilter, summary
from readmodel.redis_view import ALL_ACCOUNTS, band_key, parent_key, segment_key
from tests.factories import scored


def test_a_filter_walks_the_narrowest_ranking_it_names() -> None:
    assert AccountFilter().ranking() == ALL_ACCOUNTS
    assert AccountFilter(segment="smb").ranking() == segment_key("smb")
    assert AccountFilter(band="critical", segment="smb").ranking() == band_key("critical")
    assert AccountFilter(band="critical", parent="group").ranking() == parent_key("group")


def test_a_filter_admits_only_updates_matching_every_field_it_names() -> None:
    update = scored().model_copy(update={"band": "at-risk", "owner": "ana", "parent": "group"})
    assert AccountFilter(band="at-risk", owner="ana").admits(update)
    assert not AccountFilter(band="at-risk", owner="bo").admits(update)
    assert AccountFilter(top_level=False).admits(update)
    assert not AccountFilter(top_level=True).admits(update)
    assert not AccountFilter(rollup=True).admits(update)


def test_a_summary_gives_drivers_as_their_words() -> None:
    update = scored()
    assert update.drags
    assert summary(update).drags == [drag.text for drag in update.drags]


def test_a_cursor_is_only_one_the_api_gave_out() -> None:
    assert decode_cursor(encode_cursor(150)) == 150
    for bad in ("-1", "abc", "1" * 10):
        with pytest.raises(BadRequest, match="next_cursor"):
            decode_cursor(bad)


def test_since_takes_rfc_3339_or_posix_seconds_and_says_what_is_wrong() -> None:
    assert _since(None) == 0.0
    assert _since("1790000000.5") == 1790000000.5
    assert _since("2026-11-20T00:00:00Z") == 1795132800.0
    with pytest.raises(BadRequest, match="time zone"):
        _since("2026-11-20T00:00:00")
    with pytest.raises(BadRequest, match="RFC 3339"):
        _since("2026-11-20 00:00Z")  # ISO 8601, not RFC 3339


def test_a_limit_and_a_flag_are_checked() -> None:
    def request(query: str) -> object:
        return make_mocked_request("GET", f"/accounts?{query}")

    assert _limit(request(""), 50) == 50  # type: ignore[arg-type]
    assert _limit(request(f"limit={MAX_LIMIT}")) == MAX_LIMIT  # type: ignore[arg-type]
    for bad in ("0", f"{MAX_LIMIT + 1}", "ten", ""):
        with pytest.raises(BadRequest, match="limit must be"):
            _limit(request(f"limit={bad}"))  # type: ignore[arg-type]
    assert _either(request("rollup=TRUE"), "rollup") is True  # type: ignore[arg-type]
    assert _either(request(""), "rollup") is None  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match="rollup must be true or false"):
        _either(request("rollup=yes"), "rollup")  # type: ignore[arg-type]
