"""The score API over a real Redis, filled by the worker's own writer (``ScoreView``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from alerts.alert import Alert
from alerts.config import Severity
from api.app import MAX_LIMIT, create_api
from api.store import ReadModel
from readmodel.redis_view import (
    ScoreView,
    account_key,
    band_key,
    history_key,
    parent_key,
    segment_key,
)
from scoring.audit import Tally
from scoring.audit_report import build_report
from scoring.score import RollupInfo
from scoring.scoring_model import RollupMethod, default_model
from scoring.update import ScoreUpdate
from streams.ops.devstack import free_port
from tests.factories import scored
from tests.unit.alerts.delivery.test_slack import alert as template_alert
from tests.unit.readmodel.test_redis_view import older_view_fields

pytestmark = pytest.mark.integration

DAY = timedelta(days=1)
T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)
TOKEN = "s3cret-token"
Client = TestClient[web.Request, web.Application]


def put(view: ScoreView, update: ScoreUpdate) -> None:
    """Queue ``update`` on the view as the worker's view feed does (its JSON on chs.scores)."""
    view.add_published(update.model_dump_json().encode())


def update(account: str, score: float, band: str, **fields: object) -> ScoreUpdate:
    return scored().model_copy(
        update={"account_id": account, "score": score, "band": band, "as_of": T0, **fields}
    )


BOOK = [
    update("globex", 21.5, "critical", owner="ana", segment="enterprise"),
    update("initech", 35.0, "critical", owner="bo"),
    update("acme", 52.0, "at-risk", owner="ana"),
    update("umbrella", 58.5, "at-risk", owner="bo", segment="enterprise"),
    update("hooli", 81.0, "healthy", owner="ana"),
]


AUDIT = build_report(
    {
        (default_model().version, 30, "*"): Tally(
            churners=40, above=31.2, bottom=12.0, survivors=8000
        )
    },
    {"churned": 40, "renewed": 120},
    [default_model().version],
    180,
    T0,
)


def alert(n: int, at: datetime) -> Alert:
    return template_alert(Severity.CRITICAL, "enterprise").model_copy(
        update={"alert_id": f"a{n}", "account_id": "globex", "occurred_at": at, "trigger": f"e{n}"}
    )


async def fill(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    model = default_model()
    view = ScoreView(client, model.band_labels, [segment.name for segment in model.segments])
    # globex fell over three days (all written in one flush, as in a replay): it was
    # healthy, then at-risk, now critical.
    for days_ago, score, band in ((2, 75.0, "healthy"), (1, 45.0, "at-risk")):
        put(view, update("globex", score, band, as_of=T0 - days_ago * DAY, segment="enterprise"))
    for entry in BOOK:
        put(view, entry)
        put(view, entry)  # written twice: the same read model
    for n in range(3):
        view.add_alert(alert(n, T0 - (3 - n) * DAY))
    assert await view.flush()
    await view.write_audit(AUDIT.model_dump_json())
    await client.aclose()


async def client_for(redis_url: str, token: str | None) -> Client:
    app = create_api(
        ReadModel(aioredis.Redis.from_url(redis_url)),
        default_model(),
        SecretStr(token) if token else None,
    )
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


@pytest.fixture
async def api(private_redis: str) -> AsyncIterator[Client]:
    await fill(private_redis)
    client = await client_for(private_redis, None)
    try:
        yield client
    finally:
        await client.close()


async def get(api: Client, path: str, status: int = 200) -> Any:
    response = await api.get(path)
    assert response.status == status, await response.text()
    return await response.json()


def ids(page: Any) -> list[str]:
    return [item["account_id"] for item in page["items"]]


async def test_an_account_is_its_latest_score_update(api: Client) -> None:
    body = await get(api, "/accounts/globex")
    assert ScoreUpdate.model_validate(body) == BOOK[0]


async def test_an_unknown_account_is_a_404_that_says_so(api: Client) -> None:
    body = await get(api, "/accounts/nobody", 404)
    assert body == {"error": "no account 'nobody' has a score"}
    await get(api, "/accounts/nobody/history", 404)


async def test_accounts_come_lowest_score_first_and_filter(api: Client) -> None:
    assert ids(await get(api, "/accounts")) == ["globex", "initech", "acme", "umbrella", "hooli"]
    assert ids(await get(api, "/accounts?band=critical")) == ["globex", "initech"]
    # globex left the at-risk and healthy sets when it moved on.
    assert ids(await get(api, "/accounts?band=at-risk")) == ["acme", "umbrella"]
    assert ids(await get(api, "/accounts?segment=enterprise")) == ["globex", "umbrella"]
    assert ids(await get(api, "/accounts?segment=default")) == ["initech", "acme", "hooli"]
    assert ids(await get(api, "/accounts?owner=ana")) == ["globex", "acme", "hooli"]
    assert ids(await get(api, "/accounts?band=at-risk&owner=bo")) == ["umbrella"]
    first = (await get(api, "/accounts?limit=1"))["items"]
    assert isinstance(first, list)
    assert first[0]["drivers"] == [d.text for d in BOOK[0].drivers]


async def test_an_account_leaves_the_band_and_segment_it_moved_out_of(
    api: Client, private_redis: str
) -> None:
    client = aioredis.Redis.from_url(private_redis)
    model = default_model()
    view = ScoreView(client, model.band_labels, [segment.name for segment in model.segments])
    put(view, update("hooli", 30.0, "critical", owner="ana", segment="enterprise"))
    put(view, update("globex", 60.0, "at-risk", owner="ana"))
    assert await view.flush()  # a later write than the book's
    # Out of the sets themselves, not only filtered out of the answers.
    assert await client.zrange(band_key("healthy"), 0, -1) == []
    assert await client.zrange(segment_key("enterprise"), 0, -1) == [b"hooli", b"umbrella"]
    await client.aclose()
    assert ids(await get(api, "/accounts?band=critical")) == ["hooli", "initech"]
    assert ids(await get(api, "/accounts?band=at-risk")) == ["acme", "umbrella", "globex"]
    assert ids(await get(api, "/accounts?band=healthy")) == []
    assert ids(await get(api, "/accounts?segment=enterprise")) == ["hooli", "umbrella"]
    assert ids(await get(api, "/accounts?segment=default")) == ["initech", "acme", "globex"]


async def test_a_withdrawn_account_leaves_every_ranking_and_its_own_keys(
    api: Client, private_redis: str
) -> None:
    client = aioredis.Redis.from_url(private_redis)
    model = default_model()
    view = ScoreView(client, model.band_labels, [segment.name for segment in model.segments])
    view.remove("umbrella")  # it churned
    assert await view.flush()
    assert not await client.exists(account_key("umbrella"))
    assert await client.zrange(segment_key("enterprise"), 0, -1) == [b"globex"]
    await client.aclose()
    await get(api, "/accounts/umbrella", 404)
    assert ids(await get(api, "/accounts?band=at-risk")) == ["acme"]
    assert "umbrella" not in ids(await get(api, "/accounts"))


async def test_the_audit_is_the_workers_latest_report(api: Client, private_redis: str) -> None:
    report = await get(api, "/audit")
    live = report["models"][0]
    lead = next(f for f in live["leads"] if f["lead_days"] == 30)
    assert (lead["churners"], lead["auc"], lead["lift"]) == (40, 0.78, 3.0)
    assert lead["note"] is None
    assert next(f for f in live["leads"] if f["lead_days"] == 90)["note"] == "no churner judged yet"
    client = aioredis.Redis.from_url(private_redis)
    await client.delete("chs:audit")
    await client.aclose()
    missing = await get(api, "/audit", 404)
    assert "no audit figures yet" in missing["error"]


async def test_an_account_hash_of_the_older_form_is_read_then_replaced(
    api: Client, private_redis: str
) -> None:
    client = aioredis.Redis.from_url(private_redis)
    older = update("acme", 40.0, "at-risk", owner="cy")
    await client.delete(account_key("acme"))
    await client.hset(account_key("acme"), mapping=older_view_fields(older))  # type: ignore[arg-type]
    assert ScoreUpdate.model_validate(await get(api, "/accounts/acme")) == older
    view = ScoreView(client)
    put(view, BOOK[2])
    assert await view.flush()
    stored = await client.hgetall(account_key("acme"))
    assert set(stored) == {b"update", b"score", b"band", b"segment", b"owner", b"parent"}
    await client.aclose()
    assert ScoreUpdate.model_validate(await get(api, "/accounts/acme")) == BOOK[2]


async def test_pages_follow_the_cursor_to_the_end(api: Client) -> None:
    seen, path = [], "/accounts?limit=2&owner=ana"
    while True:
        page = await get(api, path)
        assert len(ids(page)) <= 2
        seen += ids(page)
        if page["next_cursor"] is None:
            break
        path = f"/accounts?limit=2&owner=ana&cursor={page['next_cursor']}"
    assert seen == ["globex", "acme", "hooli"]


async def test_history_holds_one_closing_score_per_day(api: Client) -> None:
    body = await get(api, "/accounts/globex/history")
    assert body["days"] == [
        {"day": str((T0 - 2 * DAY).date()), "score": 75.0},
        {"day": str((T0 - DAY).date()), "score": 45.0},
        {"day": str(T0.date()), "score": 21.5},
    ]
    listed = (await get(api, "/accounts?band=critical&limit=1&history=true"))["items"]
    assert isinstance(listed, list)
    assert listed[0]["history"] == body["days"]


async def test_alerts_newest_first_since_a_time(api: Client) -> None:
    every = await get(api, "/alerts")
    assert [a["alert_id"] for a in every["alerts"]] == ["a2", "a1", "a0"]
    since = (T0 - 2 * DAY).isoformat().replace("+00:00", "Z")
    recent = await get(api, f"/alerts?since={since}")
    assert [a["alert_id"] for a in recent["alerts"]] == ["a2", "a1"]
    epoch = await get(api, f"/alerts?since={(T0 - DAY).timestamp()}")
    assert [a["alert_id"] for a in epoch["alerts"]] == ["a2"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("/accounts?band=purple", "band must be one of"),
        ("/accounts?segment=mars", "segment must be one of"),
        ("/accounts?limit=0", f"limit must be a whole number from 1 to {MAX_LIMIT}"),
        (f"/accounts?limit={MAX_LIMIT + 1}", "limit must be"),
        ("/accounts?limit=ten", "limit must be"),
        ("/accounts?cursor=bogus", "cursor is not one this API gave out"),
        ("/accounts?history=maybe", "history must be true or false"),
        ("/alerts?since=yesterday", "since must be an RFC 3339 time"),
        ("/alerts?since=2026-11-20T00:00:00", "since needs a time zone"),
    ],
)
async def test_bad_parameters_are_a_400_that_says_why(
    api: Client,
    query: str,
    message: str,
) -> None:
    body = await get(api, query, 400)
    assert isinstance(body["error"], str)
    assert body["error"].startswith(message)


async def test_the_openapi_description_names_every_route(api: Client) -> None:
    spec = await get(api, "/openapi.json")
    assert spec["openapi"] == "3.1.0"
    paths = spec["paths"]
    assert isinstance(paths, dict)
    assert set(paths) >= {"/accounts", "/accounts/{account_id}", "/alerts", "/audit", "/healthz"}
    schemas = spec["components"]
    assert isinstance(schemas, dict)
    assert {"ScoreUpdate", "AccountPage", "Problem"} <= set(schemas["schemas"])


async def test_a_token_guards_everything_but_health(private_redis: str) -> None:
    await fill(private_redis)
    guarded = await client_for(private_redis, TOKEN)
    try:
        for path in ("/accounts", "/accounts/globex", "/alerts", "/openapi.json", "/"):
            response = await guarded.get(path)
            assert response.status == 401, path
            assert response.headers["WWW-Authenticate"] == "Bearer"
        wrong = await guarded.get("/accounts", headers={"Authorization": "Bearer nope"})
        assert wrong.status == 401
        right = await guarded.get("/accounts", headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status == 200
        assert (await guarded.get("/healthz")).status == 200
        assert (await guarded.get(f"/?token={TOKEN}")).status == 200  # the page, from a link
        assert (await guarded.get("/static/app.js")).status == 200  # no data in it
    finally:
        await guarded.close()


async def test_without_redis_health_and_data_answer_503(tmp_path: Path) -> None:
    client = await client_for(f"redis://127.0.0.1:{free_port()}/0", None)
    try:
        assert (await client.get("/healthz")).status == 503
        body = await get(client, "/accounts", 503)
        assert "Redis" in str(body["error"])
    finally:
        await client.close()


async def test_parents_and_their_children_filter(api: Client, private_redis: str) -> None:
    client = aioredis.Redis.from_url(private_redis)
    model = default_model()
    view = ScoreView(client, model.band_labels, [segment.name for segment in model.segments])
    rolled_up = RollupInfo(
        method=RollupMethod.MRR_WEIGHTED, children=2, scored_children=2, own_score=False
    )
    put(view, update("holding", 40.0, "at-risk", rollup=rolled_up))
    put(view, update("holding-eu", 30.0, "critical", parent="holding"))
    put(view, update("holding-us", 70.0, "healthy", parent="holding"))
    assert await view.flush()
    await client.aclose()
    assert ids(await get(api, "/accounts?parent=holding")) == ["holding-eu", "holding-us"]
    [parent] = (await get(api, "/accounts?rollup=true"))["items"]
    assert parent["account_id"] == "holding"
    assert parent["rollup"]["scored_children"] == 2
    top = ids(await get(api, "/accounts?top_level=true"))
    assert "holding" in top
    assert "holding-eu" not in top
    assert ids(await get(api, "/accounts?top_level=false")) == ["holding-eu", "holding-us"]
    await get(api, "/accounts?top_level=maybe", 400)

    # The children are a ranking of their parent's: a child that moves or leaves goes out of it.
    client = aioredis.Redis.from_url(private_redis)
    view = ScoreView(client, model.band_labels, [segment.name for segment in model.segments])
    put(view, update("holding-us", 72.0, "healthy", parent="other"))
    view.remove("holding-eu")
    assert await view.flush()
    assert await client.zrange(parent_key("holding"), 0, -1) == []
    assert await client.zrange(parent_key("other"), 0, -1) == [b"holding-us"]
    await client.aclose()
    assert ids(await get(api, "/accounts?parent=holding")) == []
    assert ids(await get(api, "/accounts?parent=other")) == ["holding-us"]


async def test_an_erased_account_leaves_the_latest_alerts_too(
    api: Client, private_redis: str
) -> None:
    assert {a["account_id"] for a in (await get(api, "/alerts"))["alerts"]} == {"globex"}
    client = aioredis.Redis.from_url(private_redis)
    model = default_model()
    view = ScoreView(client, model.band_labels, [segment.name for segment in model.segments])
    view.add_alert(alert(9, T0).model_copy(update={"account_id": "hooli"}))
    view.remove("globex", erased_at=T0.timestamp())
    assert await view.flush()
    assert not await client.exists(account_key("globex"), history_key("globex"))
    assert await client.zscore("chs:rank:all", "globex") is None
    await client.aclose()
    await get(api, "/accounts/globex", 404)
    assert [a["account_id"] for a in (await get(api, "/alerts"))["alerts"]] == ["hooli"]

    # chs.alerts is read apart from chs.scores: an alert raised before the erasure may come
    # after its tombstone. It is dropped; one of a new account of that id (after) is kept.
    client = aioredis.Redis.from_url(private_redis)
    view = ScoreView(client, model.band_labels, [segment.name for segment in model.segments])
    view.remove("globex", erased_at=T0.timestamp())
    view.add_alert(alert(10, T0 - DAY))
    view.add_alert(alert(11, T0 + DAY))
    assert await view.flush()
    await client.aclose()
    alerts = (await get(api, "/alerts"))["alerts"]
    assert [(a["account_id"], a["alert_id"]) for a in alerts] == [
        ("globex", "a11"),
        ("hooli", "a9"),
    ]
