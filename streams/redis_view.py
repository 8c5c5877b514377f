"""The Redis read model: the latest ScoreUpdate of each account, under ``chs:account:{id}``.

The scoring agent adds each update it publishes; a timer writes what is pending in one
pipelined round trip, so scoring never waits on Redis. A failed write is logged (without
payloads) and counted, and kept for the next round.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import cast, get_args

import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from scoring.update import ScoreUpdate

log = logging.getLogger(__name__)

REDIS_WRITE_ERRORS = Counter(
    "chs_redis_write_errors_total", "Batches of score updates that failed to reach Redis"
)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def account_key(account_id: str) -> str:
    return f"chs:account:{account_id}"


def view_fields(update: ScoreUpdate) -> dict[str, str]:
    """The hash fields stored for an account: flat strings, readable with HGETALL."""
    data = update.model_dump(mode="json")
    return {name: _flat(value) for name, value in data.items()}


def _flat(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _is_text(name: str) -> bool:
    return ScoreUpdate.model_fields[name].annotation in (str, str | None)


def _optional(name: str) -> bool:
    return type(None) in get_args(ScoreUpdate.model_fields[name].annotation)


def _unflat(name: str, raw: str) -> object:
    if raw == "":
        return None if _optional(name) else raw
    if _is_text(name):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw  # a date-time, stored as its ISO text


def update_from_view(fields: Mapping[str, str]) -> ScoreUpdate:
    """Read back what ``view_fields`` stored."""
    known = ScoreUpdate.model_fields
    return ScoreUpdate.model_validate(
        {name: _unflat(name, raw) for name, raw in fields.items() if name in known}
    )


class ScoreView:
    """Writes score updates to Redis; never raises on a Redis outage.

    Updates that could not be written are kept, the latest per account (so at most one per
    account of this worker), and written with the next batch or ``flush``: when Redis is back,
    the view catches up without waiting for each account's next score change.
    """

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._pending: dict[str, ScoreUpdate] = {}

    @classmethod
    def from_url(cls, url: str) -> ScoreView:
        return cls(aioredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5))

    def add(self, update: ScoreUpdate) -> None:
        """Queue ``update`` for the next ``flush``; it replaces any older one of the account."""
        self._pending.pop(update.account_id, None)
        self._pending[update.account_id] = update

    async def flush(self) -> bool:
        """Write every pending update in one round trip; False if Redis refused, in which
        case they are kept for the next try."""
        if not self._pending:
            return True
        batch = list(self._pending.values())
        pipe = self._client.pipeline(transaction=False)
        for update in batch:
            fields = cast(Mapping[FieldT, EncodableT], view_fields(update))
            pipe.hset(account_key(update.account_id), mapping=fields)
        try:
            await pipe.execute()
        except (RedisError, OSError) as error:
            REDIS_WRITE_ERRORS.inc()
            log.warning(
                "Redis view write of %d updates failed (kept for a retry): %s",
                len(batch),
                type(error).__name__,
            )
            return False
        for update in batch:
            if self._pending.get(update.account_id) is update:
                del self._pending[update.account_id]
        return True

    async def read(self, account_id: str) -> ScoreUpdate | None:
        fields = await self._client.hgetall(account_key(account_id))
        if not fields:
            return None
        return update_from_view({_text(k): _text(v) for k, v in fields.items()})

    async def close(self) -> None:
        await self._client.aclose()
