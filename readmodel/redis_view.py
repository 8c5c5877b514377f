"""The Redis read model, which the score API and the at-risk page read (``api/``).

- ``chs:account:{id}``: hash, the account's latest ScoreUpdate as JSON (``update``, as published
  on ``chs.scores``) and, for reading at a glance, its ``score``, ``band``, ``segment`` and
  ``owner``;
- ``chs:rank:all``, ``chs:rank:band:{band}``, ``chs:rank:segment:{segment}``: sorted sets of
  account ids by score (an account is in its current band's and segment's set only);
- ``chs:rank:parent:{id}``: sorted set of a parent's children by score (an account is in its
  current parent's set only);
- ``chs:history:{id}``: sorted set of the daily closing score (``"day:score"`` by day number)
  for the last ``HISTORY_DAYS`` days;
- ``chs:alerts``: sorted set of the latest ``MAX_ALERTS`` alerts (their JSON, by time);
- ``chs:audit``: the live audit's latest figures (``scoring.audit_report.AuditReport`` JSON).

An account whose score is withdrawn (a tombstone on ``chs.scores``: it churned or was erased)
leaves the view: its hash, its history and every ranking; an erased one's alerts leave the
latest alerts too.

The view's own consumer of ``chs.scores`` and ``chs.alerts`` (``streams/worker/view_feed.py``) adds
each update and alert as it reads them and writes what is pending in one pipelined round trip,
so scoring never waits on Redis. Every write sets values (never increments), so writing an
update twice changes nothing. A failed write is logged (without payloads) and counted, and
kept for the next round.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from typing import cast, get_args

import redis.asyncio as aioredis
from prometheus_client import Counter
from pydantic import AwareDatetime, BaseModel, ConfigDict
from pydantic_core import to_json
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError
from redis.typing import EncodableT

from alerts.alert import Alert
from scoring.state import day_of
from scoring.update import ScoreUpdate

log = logging.getLogger(__name__)

REDIS_WRITE_ERRORS = Counter(
    "chs_redis_write_errors_total", "Batches of score updates that failed to reach Redis"
)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


HISTORY_DAYS = 90
MAX_ALERTS = 1000
NO_SEGMENT = "default"
"""The segment name in keys and filters of accounts that match no segment."""
MAX_ERASURES_REMEMBERED = 10_000
"""Erasures whose time the view keeps (in memory) to drop alerts raised before them."""
ALL_ACCOUNTS = "chs:rank:all"
ALERTS = "chs:alerts"
AUDIT = "chs:audit"


def account_key(account_id: str) -> str:
    return f"chs:account:{account_id}"


def band_key(band: str) -> str:
    return f"chs:rank:band:{band}"


def segment_key(segment: str | None) -> str:
    return f"chs:rank:segment:{segment or NO_SEGMENT}"


PARENT_RANKING = "chs:rank:parent:"


def parent_key(parent: str) -> str:
    return PARENT_RANKING + parent


def history_key(account_id: str) -> str:
    return f"chs:history:{account_id}"


GLANCE_FIELDS = ("score", "band", "segment", "owner", "parent")
"""Fields of the update also stored on their own in the account's hash (``HGET``)."""


class UpdateGlance(BaseModel):
    """What the view reads of a published ScoreUpdate's JSON: its keys and glance fields (the
    JSON itself is stored whole). Cheaper to read than the whole update."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    account_id: str
    score: float
    band: str
    segment: str | None
    owner: str | None
    parent: str | None = None
    as_of: AwareDatetime


def view_fields(update: UpdateGlance | ScoreUpdate, encoded: bytes) -> dict[str, str | bytes]:
    """The hash fields stored for an account: ``encoded`` (the update's JSON, as published)
    and the glance fields, readable with HGETALL."""
    fields: dict[str, str | bytes] = {"update": encoded}
    for name in GLANCE_FIELDS:
        fields[name] = _flat(getattr(update, name))
    return fields


def _flat(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else to_json(value).decode()


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


HashFields = (
    Mapping[str, str | bytes] | Mapping[bytes, bytes | str] | Mapping[bytes | str, bytes | str]
)
"""A hash as ``view_fields`` makes it, or as HGETALL returns it (bytes or text)."""


def update_from_view(fields: HashFields) -> ScoreUpdate:
    """Read back what ``view_fields`` stored (as HGETALL returns it, bytes or text)."""
    texts = {_text(name): _text(raw) for name, raw in fields.items()}
    if "update" in texts:
        return ScoreUpdate.model_validate_json(texts["update"])
    # A hash written before the update was stored whole: every field flat, nested ones as
    # JSON. Such a hash is read until the account's next score replaces it.
    known = ScoreUpdate.model_fields
    return ScoreUpdate.model_validate(
        {name: _unflat(name, raw) for name, raw in texts.items() if name in known}
    )


async def read_update(client: aioredis.Redis, account_id: str) -> ScoreUpdate | None:
    """The account's latest ScoreUpdate in the view (None: it has none)."""
    fields = await client.hgetall(account_key(account_id))
    return update_from_view(fields) if fields else None


def history_member(day: int, score: float) -> str:
    """A day's closing score in ``chs:history:{id}`` (whose scores are the day numbers)."""
    return f"{day}:{score}"


def parse_history_member(member: bytes | str) -> tuple[int, float]:
    day, _, score = _text(member).partition(":")
    return int(day), float(score)


WRITE_ACCOUNT = """
-- KEYS: the account's hash, its history. ARGV: the oldest day kept, the number of days, that
-- many (day, member) pairs, the account id, the parents' ranking prefix, its parent ('' for
-- none) and score, then the hash's (field, value) pairs.
local history = KEYS[2]
local days = tonumber(ARGV[2])
local at = 3
for _ = 1, days do
  redis.call('ZREMRANGEBYSCORE', history, ARGV[at], ARGV[at])
  redis.call('ZADD', history, ARGV[at], ARGV[at + 1])
  at = at + 2
end
redis.call('ZREMRANGEBYSCORE', history, '-inf', '(' .. ARGV[1])
local account, prefix, parent, score = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
at = at + 4
local old = redis.call('HGET', KEYS[1], 'parent')
if old and old ~= '' and old ~= parent then redis.call('ZREM', prefix .. old, account) end
if parent ~= '' then redis.call('ZADD', prefix .. parent, score, account) end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, at))
return 1
"""
"""One account's writes in one command: Redis answers each command, and reading four answers
per account was most of the view's cost. The hash is replaced, not merged, so no field of an
older form of it stays behind. The parent's ranking key is built in the script from the parent
the hash held (a single Redis, not a cluster: docs/api.md)."""

LEAVE_PARENT = """
-- KEYS: the account's hash. ARGV: the account id, the parents' ranking prefix.
local parent = redis.call('HGET', KEYS[1], 'parent')
if parent and parent ~= '' then return redis.call('ZREM', ARGV[2] .. parent, ARGV[1]) end
return 0
"""
"""A removed account out of its parent's ranking (read from its hash, before it goes)."""


ERASE_ALERTS = """
-- KEYS: the latest alerts. ARGV: the ids of the erased accounts.
local erased = {}
for _, account in ipairs(ARGV) do erased[account] = true end
local removed = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local ok, alert = pcall(cjson.decode, member)
  if ok and erased[alert['account_id']] then
    removed = removed + redis.call('ZREM', KEYS[1], member)
  end
end
return removed
"""
"""The alerts of erased accounts out of the latest alerts (``MAX_ALERTS`` at most to read)."""


def _rank(pipe: Pipeline, groups: dict[str, dict[str, float]], scores: dict[str, float]) -> None:
    """Each account of ``scores`` into the sorted set of its group and out of the others':
    two commands per group for a whole batch, not per account (Redis answers each command,
    and reading the answers was most of the worker's time spent on Redis)."""
    for key, members in groups.items():
        if members:
            pipe.zadd(key, cast(Mapping[str, float], members))
        if leaving := [account for account in scores if account not in members]:
            pipe.zrem(key, *leaving)


class ScoreView:
    """Writes score updates to Redis; never raises on a Redis outage.

    Updates that could not be written are kept, the latest per account (so at most one per
    account of this worker), and written with the next batch or ``flush``: when Redis is back,
    the view catches up without waiting for each account's next score change.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        bands: Collection[str] = (),
        segments: Collection[str | None] = (),
    ) -> None:
        """``bands``, ``segments``: every band label and segment of the model, so that an
        account leaves the sets of the ones it is no longer in."""
        self._client = client
        self._bands = set(bands)
        self._segments = {segment or NO_SEGMENT for segment in segments} | {NO_SEGMENT}
        self._write_account = client.register_script(WRITE_ACCOUNT)
        self._erase_alerts = client.register_script(ERASE_ALERTS)
        self._leave_parent = client.register_script(LEAVE_PARENT)
        self._pending: dict[str, tuple[UpdateGlance, bytes]] = {}
        """Account -> its latest update and the update's JSON."""
        self._closing: dict[str, dict[int, float]] = {}
        """Per account, day -> its last score that day, of the updates not yet written (an
        account moved through several days between two writes in a replay)."""
        self._alerts: list[Alert] = []
        self._removed: set[str] = set()
        """Accounts whose score was withdrawn, to take out of the view."""
        self._erased: set[str] = set()
        """Erased accounts (among the removed), whose alerts go too."""
        self._erased_at: dict[str, float] = {}
        """Recently erased account -> the erasure's time: an alert of it raised before, read
        after (``chs.alerts`` is not ordered with ``chs.scores``), is dropped."""

    def add_published(self, encoded: bytes) -> None:
        """Queue a ScoreUpdate as published on ``chs.scores`` (its JSON) for the next
        ``flush``; it replaces any older one of the account. Raises ``ValueError`` if
        ``encoded`` is not an update."""
        update = UpdateGlance.model_validate_json(encoded)
        self._removed.discard(update.account_id)
        self._pending.pop(update.account_id, None)
        self._pending[update.account_id] = (update, encoded)
        days = self._closing.setdefault(update.account_id, {})
        days[day_of(update.as_of.timestamp())] = update.score

    def remove(self, account_id: str, erased_at: float | None = None) -> None:
        """Queue the account's removal from the view (its score was withdrawn); erased at
        ``erased_at``: its alerts go too, and its alerts raised before that are dropped."""
        self._pending.pop(account_id, None)
        self._closing.pop(account_id, None)
        self._removed.add(account_id)
        if erased_at is not None:
            self._erased.add(account_id)
            self._erased_at.pop(account_id, None)
            self._erased_at[account_id] = erased_at
            if len(self._erased_at) > MAX_ERASURES_REMEMBERED:
                del self._erased_at[next(iter(self._erased_at))]
            self._alerts = [a for a in self._alerts if not self._before_erasure(a)]

    def _before_erasure(self, alert: Alert) -> bool:
        erased_at = self._erased_at.get(alert.account_id)
        return erased_at is not None and alert.occurred_at.timestamp() <= erased_at

    async def write_audit(self, report: str) -> None:
        """The audit's latest figures; a failure is logged, and the next ones come soon."""
        try:
            await self._client.set(AUDIT, report)
        except (RedisError, OSError) as error:
            REDIS_WRITE_ERRORS.inc()
            log.warning("Redis write of the audit figures failed: %s", type(error).__name__)

    def add_alert(self, alert: Alert) -> None:
        """Queue ``alert`` for the next ``flush`` (only the latest ``MAX_ALERTS`` are kept, in
        Redis and here while Redis is away)."""
        if self._erased_at and self._before_erasure(alert):
            return
        if len(self._alerts) >= MAX_ALERTS:
            del self._alerts[0]
        self._alerts.append(alert)

    async def flush(self) -> bool:
        """Write every pending update in one round trip; False if Redis refused, in which
        case they are kept for the next try."""
        if not self._pending and not self._alerts and not self._removed:
            return True
        removed = list(self._removed)
        erased = list(self._erased)
        batch = list(self._pending.values())
        closing = {u.account_id: self._closing.get(u.account_id, {}) for u, _ in batch}
        alerts = self._alerts
        pipe = self._client.pipeline(transaction=False)
        scores = {update.account_id: update.score for update, _ in batch}
        bands: dict[str, dict[str, float]] = {band: {} for band in self._bands}
        segments: dict[str, dict[str, float]] = {segment: {} for segment in self._segments}
        for update, encoded in batch:
            await self._write_update(pipe, update, encoded, closing[update.account_id])
            bands.setdefault(update.band, {})[update.account_id] = update.score
            segment = update.segment or NO_SEGMENT
            segments.setdefault(segment, {})[update.account_id] = update.score
        if scores:
            pipe.zadd(ALL_ACCOUNTS, cast(Mapping[str, float], scores))
            _rank(pipe, {band_key(band): members for band, members in bands.items()}, scores)
            _rank(pipe, {segment_key(seg): members for seg, members in segments.items()}, scores)
        if removed:
            for account in removed:
                await self._leave_parent([account_key(account)], [account, PARENT_RANKING], pipe)
            pipe.delete(*(key(a) for a in removed for key in (account_key, history_key)))
            for ranking in [
                ALL_ACCOUNTS,
                *map(band_key, self._bands),
                *map(segment_key, self._segments),
            ]:
                pipe.zrem(ranking, *removed)
        if erased:  # before the new alerts: those of a new account of that id stay
            await self._erase_alerts([ALERTS], erased, pipe)
        if alerts:
            pipe.zadd(ALERTS, {a.model_dump_json(): a.occurred_at.timestamp() for a in alerts})
            pipe.zremrangebyrank(ALERTS, 0, -MAX_ALERTS - 1)
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
        for written in batch:
            account = written[0].account_id
            if self._pending.get(account) is written:
                del self._pending[account]
                self._closing.pop(account, None)
        del self._alerts[: len(alerts)]
        self._removed.difference_update(removed)
        self._erased.difference_update(erased)
        return True

    async def _write_update(
        self, pipe: Pipeline, update: UpdateGlance, encoded: bytes, days: dict[int, float]
    ) -> None:
        """The account's own keys: its hash and its history (the rankings are per batch)."""
        account = update.account_id
        oldest_kept = day_of(update.as_of.timestamp()) - HISTORY_DAYS + 1
        args: list[EncodableT] = [oldest_kept, len(days)]
        for day, score in days.items():
            args += (day, history_member(day, score))
        args += (account, PARENT_RANKING, update.parent or "", update.score)
        for field in view_fields(update, encoded).items():
            args += field
        # Queued on the pipeline (which loads the script first if Redis lacks it).
        await self._write_account([account_key(account), history_key(account)], args, pipe)

    async def read(self, account_id: str) -> ScoreUpdate | None:
        return await read_update(self._client, account_id)

    async def close(self) -> None:
        await self._client.aclose()
