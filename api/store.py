"""Reads of the Redis read model that the worker writes (``readmodel/redis_view.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import cast

import redis.asyncio as aioredis

from alerts.alert import Alert
from api.models import AccountSummary, DailyScore
from readmodel.redis_view import (
    ALERTS,
    ALL_ACCOUNTS,
    AUDIT,
    NO_SEGMENT,
    account_key,
    band_key,
    history_key,
    parent_key,
    parse_history_member,
    read_update,
    segment_key,
    update_from_view,
)
from scoring.audit_report import AuditReport
from scoring.update import ScoreUpdate

EPOCH = date(1970, 1, 1)
SCAN_CHUNK = 200
"""Accounts read per round trip while filtering a page."""


@dataclass(frozen=True)
class AccountFilter:
    band: str | None = None
    segment: str | None = None
    owner: str | None = None
    parent: str | None = None
    """Only the children of this account."""
    top_level: bool | None = None
    """Only accounts without a parent (True), or only those with one (False)."""
    rollup: bool | None = None
    """Only parents scored as roll-ups (True), or only the others (False)."""

    def admits(self, update: ScoreUpdate) -> bool:
        return (
            (self.band is None or update.band == self.band)
            and (self.segment is None or (update.segment or NO_SEGMENT) == self.segment)
            and (self.owner is None or update.owner == self.owner)
            and (self.parent is None or update.parent == self.parent)
            and (self.top_level is None or (update.parent is None) == self.top_level)
            and (self.rollup is None or (update.rollup is not None) == self.rollup)
        )

    def ranking(self) -> str:
        """The sorted set to walk: the narrowest one the filter names."""
        if self.parent is not None:
            return parent_key(self.parent)
        if self.band is not None:
            return band_key(self.band)
        if self.segment is not None:
            return segment_key(self.segment)
        return ALL_ACCOUNTS


SUMMARY_FIELDS = set(AccountSummary.model_fields) - {"drivers", "drags", "history"}
"""What a summary takes from the ScoreUpdate as it is; drivers and drags become their words."""


def summary(update: ScoreUpdate, history: list[DailyScore] | None = None) -> AccountSummary:
    return AccountSummary(
        **update.model_dump(include=SUMMARY_FIELDS),
        drivers=[driver.text for driver in update.drivers],
        drags=[drag.text for drag in update.drags],
        history=history,
    )


def _daily(members: list[bytes]) -> list[DailyScore]:
    return [
        DailyScore(day=EPOCH + timedelta(days=day), score=score)
        for day, score in map(parse_history_member, members)
    ]


class ReadModel:
    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client

    async def ping(self) -> bool:
        return bool(await self._client.ping())

    async def account(self, account_id: str) -> ScoreUpdate | None:
        return await read_update(self._client, account_id)

    async def known(self, account_id: str) -> bool:
        """Whether the account has a score (without reading it)."""
        return bool(await self._client.exists(account_key(account_id)))

    async def accounts(
        self, where: AccountFilter, limit: int, offset: int
    ) -> tuple[list[ScoreUpdate], int | None]:
        """Up to ``limit`` accounts, lowest score first, from position ``offset`` of the
        ranking; and the position to go on from (None: no more)."""
        found: list[ScoreUpdate] = []
        ranking = where.ranking()
        while len(found) < limit:
            ids = cast(
                list[bytes], await self._client.zrange(ranking, offset, offset + SCAN_CHUNK - 1)
            )
            if not ids:
                return found, None
            pipe = self._client.pipeline(transaction=False)
            for account in ids:
                pipe.hgetall(account_key(account.decode()))
            for fields in await pipe.execute():
                offset += 1
                if fields:
                    update = update_from_view(fields)
                    if where.admits(update):
                        found.append(update)
                        if len(found) == limit:
                            break
        more = await self._client.zcard(ranking) > offset
        return found, offset if more else None

    async def histories(self, account_ids: list[str]) -> list[list[DailyScore]]:
        pipe = self._client.pipeline(transaction=False)
        for account in account_ids:
            pipe.zrange(history_key(account), 0, -1)
        return [_daily(members) for members in await pipe.execute()]

    async def alerts(self, since: float, limit: int) -> list[Alert]:
        members = cast(
            list[bytes],
            await self._client.zrevrangebyscore(ALERTS, "+inf", since, start=0, num=limit),
        )
        return [Alert.model_validate_json(member) for member in members]

    async def audit(self) -> AuditReport | None:
        """The live audit's latest figures (None: the worker has published none yet)."""
        raw = await self._client.get(AUDIT)
        return None if raw is None else AuditReport.model_validate_json(raw)

    async def close(self) -> None:
        await self._client.aclose()
