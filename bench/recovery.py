"""Memory and recovery with 100,000 accounts: the worker's peak RSS, the bytes of state per
account (its encoded table value, as in the changelog), and how long a restarted worker takes
until it is ready (its table restored from the changelog).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.stack import dev_services, peak_rss, readiness, start_worker
from bench.workload import produce
from scoring.events import LoginEvent
from streams.settings import Settings
from streams.worker.connections import kafka_options
from streams.worker.state_records import account_key_is_valid, account_of
from streams.worker.topics import ensure_topics, group_lag

ACCOUNTS = 100_000
PARTITIONS = 8


@dataclass(frozen=True)
class StateFigures:
    accounts: int
    peak_rss: int
    state_bytes: float
    ready_after_restart: float


async def _state_sizes(settings: Settings) -> list[int]:
    """The encoded size of every account's state: its latest input record and parts."""
    topic = f"{settings.app_id}-accounts-changelog"
    consumer = AIOKafkaConsumer(**kafka_options(settings))
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        sizes: dict[bytes, int] = {}
        behind = set(partitions)
        while behind:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                sizes.update((r.key or b"", len(r.value or b"")) for r in records)
            behind = {tp for tp in behind if await consumer.position(tp) < ends[tp]}
        per_account: dict[bytes, int] = defaultdict(int)
        for key, size in sizes.items():
            per_account[key if account_key_is_valid(key) else account_of(key)] += size
        return list(per_account.values())
    finally:
        await consumer.stop()


def measure() -> StateFigures:
    with (
        tempfile.TemporaryDirectory() as tmp,
        dev_services(Path(tmp), topic_partitions=PARTITIONS) as (settings, services),
    ):
        logs = Path(tmp)
        asyncio.run(ensure_topics(settings))
        member, worker = start_worker(settings, "worker", logs)
        services.append(worker)
        now = datetime.now(UTC)
        events = [
            LoginEvent(event_id=f"e{i}", account_id=f"acct-{i}", occurred_at=now, user_id="u")
            for i in range(ACCOUNTS)
        ]
        asyncio.run(produce(settings, events))
        while asyncio.run(group_lag(member, list(member.event_topics))) > 0:
            time.sleep(1)
        rss = peak_rss(worker.process.pid)
        sizes = asyncio.run(_state_sizes(member))
        worker.stop()
        began = time.monotonic()
        restarted, process = start_worker(member, "worker-restarted", logs)
        services.append(process)
        while not readiness(restarted):
            time.sleep(0.1)
        ready = time.monotonic() - began
        return StateFigures(len(sizes), rss, statistics.mean(sizes), ready)


def report() -> str:
    figures = measure()
    return "\n".join(
        [
            "## Memory and recovery with 100,000 accounts",
            "",
            f"`bench/recovery.py`: one worker (Apache Kafka 3.9.0, {PARTITIONS} partitions) "
            f"scores one login for each of {ACCOUNTS:,} accounts; then it is stopped and "
            "started again, and restores its table from the changelog.",
            "",
            "| accounts in the table | worker peak RSS | state per account (encoded) | "
            "restarted worker ready after |",
            "|---|---|---|---|",
            f"| {figures.accounts:,} | {figures.peak_rss / 2**20:,.0f} MiB | "
            f"{figures.state_bytes:,.0f} B | {figures.ready_after_restart:.1f} s |",
            "",
            "State per account here is an account with one day of activity; a busy account "
            "with 90 days of buckets and full user and feature maps encodes larger (see the "
            "cost-per-event table). Ready includes joining the group and replaying the "
            "changelog (compacted by the broker once its cleaner has run).",
        ]
    )


if __name__ == "__main__":
    print(report())
