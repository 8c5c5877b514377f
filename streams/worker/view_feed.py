"""The Redis view as a projection of ``chs.scores`` and ``chs.alerts``.

Its own consumer (group ``<app_id>-view``, ``consumer_loop``) reads what the scoring task
published and commits each partition's offset only once the view has written what it read.
The view therefore ends with each account's last update on ``chs.scores``, whatever crashed
when (docs/reliability.md). While Redis is away the consumer pauses and keeps what it read,
latest per account; nothing is committed until Redis has it.
"""

from __future__ import annotations

import logging
from typing import Protocol

from aiokafka import TopicPartition
from pydantic import ValidationError

from alerts.alert import Alert
from streams.settings import Settings
from streams.wire import ERASED_HEADER
from streams.worker.consumer_loop import ConsumerLoop, Fetched, Round

log = logging.getLogger(__name__)

MAX_RECORDS = 5_000
"""Records read per round (one Redis round trip and one commit each)."""
FETCH_MIN_BYTES = 4 * 1024 * 1024
"""Few large fetches: the broker answers once this much is there or after
``CHS_VIEW_FETCH_MAX_WAIT`` (the view may lag ``chs.scores`` that long), not once per update:
every fetch costs the broker (docs/performance.md)."""


class ViewWriter(Protocol):
    """The read model's port (``readmodel.redis_view.ScoreView``)."""

    def add_published(self, encoded: bytes) -> None: ...
    def remove(self, account_id: str, erased_at: float | None = None) -> None: ...
    def add_alert(self, alert: Alert) -> None: ...
    async def flush(self) -> bool: ...
    async def close(self) -> None: ...


class ViewFeed:
    def __init__(self, settings: Settings, view: ViewWriter) -> None:
        self._settings = settings
        self._view = view
        self._read: dict[TopicPartition, int] = {}
        """Partition -> the offset to commit once the view has written what was read."""

    def take(self, records: Fetched) -> int:
        """Queue ``records`` on the view; the number of them."""
        scores, view = self._settings.topic_scores, self._view
        taken = 0
        for tp, batch in records.items():
            for record in batch:
                taken += 1
                self._read[tp] = record.offset + 1
                try:
                    if tp.topic == scores and record.value is None and record.key is not None:
                        # A withdrawn score: it churned, or it was erased.
                        erased = any(name == ERASED_HEADER for name, _ in record.headers or ())
                        # The tombstone's time (ms) is when the worker erased the account.
                        at = record.timestamp / 1000 if erased else None
                        view.remove(record.key.decode(), at)
                    elif tp.topic == scores:
                        view.add_published(record.value or b"")
                    else:
                        view.add_alert(Alert.model_validate_json(record.value or b""))
                except ValidationError as error:
                    # Only the worker writes these topics: a record of another shape is a bug
                    # elsewhere, not a reason to stop the view.
                    log.error(
                        "Left out of the view: %s@%d is not a valid %s (%d errors)",
                        tp,
                        record.offset,
                        "score update" if tp.topic == scores else "alert",
                        error.error_count(),
                    )
        return taken

    def read_positions(self) -> dict[TopicPartition, int]:
        """The offsets to commit once the view is written, and forget them."""
        read, self._read = self._read, {}
        return read

    async def sink(self, received: Round) -> bool:
        """Queue the round on the view, write it, commit; False while Redis is away (read
        nothing more until it is back: the broker keeps it)."""
        if not self.take(received.fetched) and not self._read:
            return True
        if not await self._view.flush():
            return False
        await received.commit(self.read_positions())
        return True

    async def run(self) -> None:
        """Read, write the view, commit; until cancelled."""
        settings = self._settings
        loop = ConsumerLoop(
            settings,
            "view",
            [settings.topic_scores, settings.topic_alerts],
            group=f"{settings.app_id}-view",
            max_records=MAX_RECORDS,
            fetch_max_wait_ms=round(settings.view_fetch_max_wait * 1000),
            fetch_min_bytes=FETCH_MIN_BYTES,
        )
        try:
            await loop.run(self.sink)
        finally:
            await self._view.close()
