"""What the worker wrote to Kafka: the bytes (keys and values) of every record on its scores,
alerts and table changelog topics, read back from the start once it is done."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.settings import Settings
from streams.worker.connections import kafka_options


@dataclass(frozen=True)
class OutputBytes:
    scores: int
    alerts: int
    changelog: int
    scores_records: int
    changelog_records: int

    @property
    def total(self) -> int:
        return self.scores + self.alerts + self.changelog

    def row(self, label: str, events: int) -> str:
        """A table row: bytes per input event, together and each."""
        per = [value / events for value in (self.total, self.scores, self.alerts, self.changelog)]
        return (
            f"| {label} | {events:,} | {per[0]:,.0f} | {per[1]:,.0f} | {per[2]:,.1f} | "
            f"{per[3]:,.0f} | {self.scores_records / events:.2f} | "
            f"{self.changelog_records / events:.2f} |"
        )


TABLE_HEADER = [
    "| workload | input events | bytes per input event | of which `chs.scores` | "
    "`chs.alerts` | table changelog | ScoreUpdates per event | changelog records per event |",
    "|---|---|---|---|---|---|---|---|",
]


def changelog_topic(settings: Settings) -> str:
    """Faust names a table's changelog ``{app id}-{table}-changelog``."""
    return f"{settings.app_id}-accounts-changelog"


async def _topic_bytes(settings: Settings, topic: str) -> tuple[int, int]:
    """Bytes of keys and values, and records, on ``topic`` from its start to its end now."""
    consumer = AIOKafkaConsumer(**kafka_options(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        if not tps:
            return 0, 0
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        size = records = 0

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        async with asyncio.timeout(600):
            while await behind():
                for batch in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                    for record in batch:
                        size += len(record.key or b"") + len(record.value or b"")
                        records += 1
        return size, records
    finally:
        await consumer.stop()


async def output_bytes(settings: Settings) -> OutputBytes:
    scores, score_records = await _topic_bytes(settings, settings.topic_scores)
    alerts, _ = await _topic_bytes(settings, settings.topic_alerts)
    changelog, changelog_records = await _topic_bytes(settings, changelog_topic(settings))
    return OutputBytes(scores, alerts, changelog, score_records, changelog_records)
