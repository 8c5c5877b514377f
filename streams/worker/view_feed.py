"""The Redis view as a projection of ``chs.scores`` and ``chs.alerts``.

Its own consumer (group ``<app_id>-view``) reads what the scoring task published and commits
each partition's offset only once the view has written what it read. The view therefore ends
with each account's last update on ``chs.scores``, whatever crashed when: a worker killed
before its timer wrote Redis used to leave an update out of the view for good (the scoring
task's state said it was published, so nothing published it again). While Redis is away the
consumer pauses and keeps what it read, latest per account; nothing is committed until Redis
has it. A plain aiokafka consumer, like alert delivery (``streams/worker/alert_delivery.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from pydantic import ValidationError

from alerts.alert import Alert
from streams.pipeline.batch_step import ERASED_HEADER
from streams.settings import Settings
from streams.worker.connections import kafka_options

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0
"""Wait between two tries to write the view while Redis is away."""
MAX_RECORDS = 5_000
"""Records read per round (one Redis round trip and one commit each)."""
FETCH_MIN_BYTES = 4 * 1024 * 1024
"""Few large fetches: the broker answers once this much is there or after
``CHS_VIEW_FETCH_MAX_WAIT`` (the view may lag ``chs.scores`` that long), not once per update.
Every fetch costs the broker: with the dev broker's one-record batches, fetching as soon as
there was anything cut the worker's throughput on a 60,000-event backlog from 1,784 to 1,027
events/s (Tansu at 120 % CPU), and a fetch every half second still made an alert's p99
latency 3.2 s at 650 events/s (0.5 s with a 2 s wait, the dev setting)."""

Fetched = Mapping[TopicPartition, Iterable[ConsumerRecord[bytes, bytes]]]
"""What one ``getmany`` returns: each partition's records."""


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

    async def run(self) -> None:
        """Read, write the view, commit; until cancelled."""
        settings = self._settings
        consumer = AIOKafkaConsumer(
            settings.topic_scores,
            settings.topic_alerts,
            **kafka_options(settings),
            group_id=f"{settings.app_id}-view",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=round(settings.view_fetch_max_wait * 1000),
            fetch_min_bytes=FETCH_MIN_BYTES,
            session_timeout_ms=int(settings.broker_session_timeout * 1000),
            heartbeat_interval_ms=int(settings.broker_heartbeat_interval * 1000),
        )
        try:
            await consumer.start()
            while True:
                records = await consumer.getmany(timeout_ms=1000, max_records=MAX_RECORDS)
                if not self.take(records) and not self._read:
                    continue
                if not await self._view.flush():
                    # Redis is away: read nothing more until it is back (the broker keeps it),
                    # but keep polling so that the group does not take this member for dead.
                    consumer.pause(*consumer.assignment())
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                consumer.resume(*consumer.paused())
                await self._commit(consumer, self.read_positions())
        finally:
            await consumer.stop()
            await self._view.close()

    @staticmethod
    async def _commit(consumer: AIOKafkaConsumer, positions: dict[TopicPartition, int]) -> None:
        owned = consumer.assignment()
        mine = {tp: offset for tp, offset in positions.items() if tp in owned}
        if not mine:
            return
        try:
            await consumer.commit(mine)
        except (IllegalStateError, CommitFailedError):
            # A rebalance moved a partition: its new owner reads it again from the last
            # commit, and writing an update twice changes nothing.
            log.info("View partitions moved to another worker during a write")
