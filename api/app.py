"""``chs api``: the score API and the at-risk page, reading the Redis read model.

JSON from pydantic models, described at ``/openapi.json``. When ``CHS_API_TOKEN`` is set,
everything but ``/healthz`` and the page's static files (which hold no data) needs
``Authorization: Bearer <token>``; the page itself also takes it as ``?token=`` so that a
CSM can open it from a link, and its script sends it on as a header.
"""

from __future__ import annotations

import hmac
import logging
import math
import re
from importlib import resources
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from pydantic import BaseModel, SecretStr
from redis.exceptions import RedisError

from api.models import AccountHistory, AccountPage, AlertList, Problem
from api.openapi import CURSOR, POSIX_SECONDS, RFC3339, openapi
from api.store import AccountFilter, ReadModel, summary
from readmodel.redis_view import NO_SEGMENT
from scoring.scoring_model import ScoringModel
from scoring.validation import NoTimeZone, parse_instant

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
PAGE = Path(str(resources.files("api").joinpath("page")))
OPEN_PATHS = ("/healthz", "/static/")


class BadRequest(Exception):
    """A parameter the API cannot use; the message tells the caller which and why."""


def answer(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        body=model.model_dump_json().encode(), status=status, content_type="application/json"
    )


def problem(status: int, message: str) -> web.Response:
    return answer(Problem(error=message), status)


def _param(request: web.Request, name: str) -> str | None:
    """A text parameter's value; None when it is absent or empty (``?band=``)."""
    return request.query.get(name) or None


def _limit(request: web.Request, default: int = DEFAULT_LIMIT) -> int:
    raw = request.query.get("limit")  # a number: an empty one is no number
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {raw!r}")
    return int(raw)


def encode_cursor(offset: int) -> str:
    return str(offset)


def decode_cursor(cursor: str) -> int:
    if re.fullmatch(CURSOR, cursor) is None:
        raise BadRequest("cursor is not one this API gave out: pass next_cursor unchanged")
    return int(cursor)


def _since(raw: str | None) -> float:
    if raw is None:
        return 0.0
    if re.fullmatch(POSIX_SECONDS, raw):
        return float(raw)
    unreadable = BadRequest(f"since must be an RFC 3339 time or POSIX seconds, not {raw!r}")
    try:
        moment = parse_instant(raw)
    except NoTimeZone:
        raise BadRequest("since needs a time zone, e.g. 2026-11-20T00:00:00Z") from None
    except ValueError:
        raise unreadable from None
    if re.fullmatch(RFC3339, raw) is None:  # other ISO 8601 forms: not what the API declares
        raise unreadable
    try:
        return moment.timestamp()
    except OverflowError:  # a zone offset past year 1 or 9999: before or after everything
        return -math.inf if moment.year < 1970 else math.inf


def _flag(request: web.Request, name: str) -> bool:
    return _either(request, name) or False


def _either(request: web.Request, name: str) -> bool | None:
    """A true-or-false parameter; None when absent."""
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw.lower() not in ("true", "false", "1", "0"):
        raise BadRequest(f"{name} must be true or false, not {raw!r}")
    return raw.lower() in ("true", "1")


class ScoreApi:
    """The handlers, with the model's band and segment names for checking filters."""

    def __init__(self, store: ReadModel, model: ScoringModel, secured: bool) -> None:
        self.store = store
        self.secured = secured
        """Whether a bearer token is required (the OpenAPI document says so only then)."""
        self.bands = model.band_labels
        self.segments = {segment.name for segment in model.segments} | {NO_SEGMENT}

    async def account(self, request: web.Request) -> web.Response:
        account_id = request.match_info["account_id"]
        update = await self.store.account(account_id)
        if update is None:
            return problem(404, f"no account {account_id!r} has a score")
        return answer(update)

    async def accounts(self, request: web.Request) -> web.Response:
        band, segment = _param(request, "band"), _param(request, "segment")
        if band is not None and band not in self.bands:
            raise BadRequest(f"band must be one of {sorted(self.bands)}, not {band!r}")
        if segment is not None and segment not in self.segments:
            raise BadRequest(f"segment must be one of {sorted(self.segments)}, not {segment!r}")
        where = AccountFilter(
            band=band,
            segment=segment,
            owner=_param(request, "owner"),
            parent=_param(request, "parent"),
            top_level=_either(request, "top_level"),
            rollup=_either(request, "rollup"),
        )
        cursor = _param(request, "cursor")
        offset = 0 if cursor is None else decode_cursor(cursor)
        with_history = _flag(request, "history")
        updates, next_offset = await self.store.accounts(where, _limit(request), offset)
        histories = (
            await self.store.histories([u.account_id for u in updates])
            if with_history
            else [None] * len(updates)
        )
        page = AccountPage(
            items=[summary(u, h) for u, h in zip(updates, histories, strict=True)],
            next_cursor=None if next_offset is None else encode_cursor(next_offset),
        )
        return answer(page)

    async def history(self, request: web.Request) -> web.Response:
        account_id = request.match_info["account_id"]
        if not await self.store.known(account_id):
            return problem(404, f"no account {account_id!r} has a score")
        [days] = await self.store.histories([account_id])
        return answer(AccountHistory(account_id=account_id, days=days))

    async def alerts(self, request: web.Request) -> web.Response:
        since = _since(_param(request, "since"))
        alerts = await self.store.alerts(since, _limit(request))
        return answer(AlertList(alerts=alerts))

    async def audit(self, request: web.Request) -> web.Response:
        report = await self.store.audit()
        if report is None:
            return problem(
                404,
                "no audit figures yet: the worker publishes them every "
                "CHS_AUDIT_SHIP_SECONDS once it runs",
            )
        return answer(report)

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(
            openapi(MAX_LIMIT, self.secured, sorted(self.bands), sorted(self.segments))
        )

    async def healthz(self, request: web.Request) -> web.Response:
        try:
            up = await self.store.ping()
        except (RedisError, OSError) as error:
            log.warning("Redis unreachable: %s", type(error).__name__)
            up = False
        return web.json_response({"redis": up}, status=200 if up else 503)

    async def page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE / "index.html")


def _token_guard(token: SecretStr) -> Middleware:
    expected = f"Bearer {token.get_secret_value()}".encode()
    page_token = token.get_secret_value().encode()

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(OPEN_PATHS):
            return await handler(request)
        given = request.headers.get("Authorization", "").encode()
        from_link = request.path == "/" and hmac.compare_digest(
            request.query.get("token", "").encode(), page_token
        )
        if not (hmac.compare_digest(given, expected) or from_link):
            response = problem(401, "a bearer token is needed: Authorization: Bearer <token>")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        return await handler(request)

    return guard


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BadRequest as error:
        return problem(400, str(error))
    except (RedisError, OSError) as error:
        log.warning("Redis unreachable: %s", type(error).__name__)
        return problem(503, "the read model (Redis) cannot be reached; try again shortly")


def create_api(store: ReadModel, model: ScoringModel, token: SecretStr | None) -> web.Application:
    middlewares: list[Middleware] = [_errors]
    if token is not None:
        middlewares.insert(0, _token_guard(token))
    app = web.Application(middlewares=middlewares)
    api = ScoreApi(store, model, secured=token is not None)
    app.router.add_get("/", api.page)
    app.router.add_get("/accounts", api.accounts)
    app.router.add_get("/accounts/{account_id}", api.account)
    app.router.add_get("/accounts/{account_id}/history", api.history)
    app.router.add_get("/alerts", api.alerts)
    app.router.add_get("/audit", api.audit)
    app.router.add_get("/openapi.json", api.openapi)
    app.router.add_get("/healthz", api.healthz)
    app.router.add_static("/static/", PAGE)

    async def close_store(app: web.Application) -> None:
        await store.close()

    app.on_cleanup.append(close_store)
    return app
