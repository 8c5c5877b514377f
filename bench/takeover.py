"""Scale-out on Apache Kafka: takeover time after a kill -9, and throughput per worker count.

Takeover: two workers share the accounts (one event each, so every account has a table
entry); one is killed with kill -9 and, at that moment, one fresh event per partition it
scored is produced. Takeover time is from the kill to the last of those events' score
updates on ``chs.scores``: it includes noticing the death (the session timeout), the
rebalance, restoring the partitions' table data (none left to restore with a standby), and
scoring.

Throughput: a backlog of demo events is produced, then one or two workers read it; the rate
counts from the moment the workers have split the partitions: the inputs they fold after it,
over the time to the last window they settle (``group_rate``).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner

from bench.stack import dev_services, metric_sums, start_worker, wait_split
from bench.workload import failed_payment_probe
from scoring.events import LoginEvent
from scoring.update import ScoreUpdate
from streams.ops.demo import DemoOptions, history_events
from streams.ops.devstack import QUICK_FAILOVER
from streams.settings import Settings
from streams.worker.connections import kafka_options
from streams.worker.event_producer import EventProducer
from streams.worker.topics import ensure_topics, group_lag

PARTITIONS = 8
TAKEOVER_ACCOUNTS = (10_000, 100_000)
THROUGHPUT_EVENTS = 150_000
THROUGHPUT_RUNS = 3
"""Runs per worker count: about one run in four came out a third slower, in any version
(docs/performance.md); the median is reported, the range beside it."""


def _login(account: str, event_id: str) -> LoginEvent:
    return LoginEvent(
        event_id=event_id, account_id=account, occurred_at=datetime.now(UTC), user_id="u1"
    )


async def _load(settings: Settings, accounts: int) -> None:
    async with EventProducer(settings) as producer:
        for i in range(accounts):
            await producer.send(_login(f"acct-{i}", f"load-{i}"))
        await producer.flush()


async def _wait_consumed(settings: Settings, within: float) -> float:
    """Seconds until the group has committed every event produced so far."""
    began = time.monotonic()
    async with asyncio.timeout(within):
        while await group_lag(settings, list(settings.event_topics)) > 0:  # noqa: ASYNC110
            await asyncio.sleep(0.25)
    return time.monotonic() - began


def _probe_accounts(partitions: set[int], total: int) -> dict[str, int]:
    """One existing account per partition in ``partitions`` (the producer's partitioner)."""
    chosen: dict[int, str] = {}
    for i in range(total):
        account = f"acct-{i}"
        partition = DefaultPartitioner()(account.encode(), list(range(PARTITIONS)), None)
        if partition in partitions and partition not in chosen:
            chosen[partition] = account
            if len(chosen) == len(partitions):
                break
    return {account: partition for partition, account in chosen.items()}


async def _scored_again(
    settings: Settings, probes: dict[str, int], kill: Callable[[], None]
) -> float:
    """Kill (``kill()``), produce the probes, and time until each has a score update."""
    consumer = AIOKafkaConsumer(
        settings.topic_scores,
        **kafka_options(settings),
        auto_offset_reset="latest",
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    await consumer.getmany(timeout_ms=500)  # position at the end before the kill
    try:
        waiting = set(probes)
        began = time.monotonic()
        await asyncio.to_thread(kill)
        async with EventProducer(settings) as producer:
            for account in probes:
                await producer.send(failed_payment_probe(account, f"probe-{account}"))
            await producer.flush()
        async with asyncio.timeout(600):
            while waiting:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for record in records:
                        waiting.discard(
                            ScoreUpdate.model_validate_json(record.value or b"").account_id
                        )
        return time.monotonic() - began
    finally:
        await consumer.stop()


def takeover(accounts: int, standbys: int) -> tuple[float, float]:
    """Seconds from kill -9 to the killed worker's partitions scored again; and load time."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        dev_services(
            Path(tmp),
            **QUICK_FAILOVER,
            topic_partitions=PARTITIONS,
            table_standby_replicas=standbys,
        ) as (
            settings,
            services,
        ),
    ):
        logs = Path(tmp)
        asyncio.run(ensure_topics(settings))
        members = []
        for name in ("survivor", "victim"):
            member, process = start_worker(settings, name, logs)
            services.append(process)
            members.append(member)
        owned = wait_split(members, PARTITIONS)
        began = time.monotonic()
        asyncio.run(_load(settings, accounts))
        asyncio.run(_wait_consumed(settings, within=1800))
        load_seconds = time.monotonic() - began
        time.sleep(5)  # standbys catch up with the changelog's tail
        victim = services[-1]
        probes = _probe_accounts(owned[1], accounts)
        seconds = asyncio.run(_scored_again(settings, probes, victim.kill))
        return seconds, load_seconds


def throughput(workers: int) -> float:
    """Events per second a group of ``workers`` works through a backlog of demo events."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        dev_services(Path(tmp), **QUICK_FAILOVER, topic_partitions=PARTITIONS, clock="event") as (
            settings,
            services,
        ),
    ):
        logs = Path(tmp)
        asyncio.run(ensure_topics(settings))
        options = DemoOptions(accounts=1_000, history_days=45, seed=5)
        events = history_events(options, time.time())[:THROUGHPUT_EVENTS]

        async def produce() -> None:
            async with EventProducer(settings) as producer:
                for event in events:
                    await producer.send(event)
                await producer.flush()

        asyncio.run(produce())
        members = []
        for n in range(workers):
            member, process = start_worker(settings, f"worker-{n}", logs)
            services.append(process)
            members.append(member)
        wait_split(members, PARTITIONS)
        return asyncio.run(group_rate(settings, members, within=1800))


def _progress(members: list[Settings]) -> tuple[float, float]:
    """Inputs folded and inputs settled so far, summed over the workers (a window of ticks
    alone settles none)."""
    folded = settled = 0.0
    for member in members:
        found = metric_sums(member, "chs_events_consumed_total", "chs_window_inputs_sum")
        if found is None:
            raise RuntimeError(f"worker on port {member.web_port} stopped answering")
        folded, settled = folded + found[0], settled + found[1]
    return folded, settled


async def group_rate(settings: Settings, members: list[Settings], within: float) -> float:
    """Inputs/s the group scores from now until its backlog is committed: the inputs folded
    after now, over the time to the last window settled. Not the time to the last commit,
    which comes up to Faust's commit interval (2.8 s) later, nor the lag left now, which
    counts inputs scored but not committed yet: either swung two-worker runs by half
    (docs/performance.md)."""
    topics = list(settings.event_topics)
    folded, settled = await asyncio.to_thread(_progress, members)
    began = ended = time.monotonic()
    async with asyncio.timeout(within):
        while True:
            lag = await group_lag(settings, topics)
            now_folded, now_settled = await asyncio.to_thread(_progress, members)
            if now_settled != settled:
                settled, ended = now_settled, time.monotonic()
            if lag == 0:
                break
            await asyncio.sleep(0.1)
    if ended == began:
        raise RuntimeError("no window was settled after the workers split the partitions")
    return (now_folded - folded) / (ended - began)


def report() -> str:
    rows = []
    for accounts in TAKEOVER_ACCOUNTS:
        cells = []
        for standbys in (0, 1):
            seconds, _ = takeover(accounts, standbys)
            cells.append(f"{seconds:.1f} s")
        rows.append(f"| {accounts:,} | {cells[0]} | {cells[1]} |")
    rates = {
        workers: sorted(throughput(workers) for _ in range(THROUGHPUT_RUNS)) for workers in (1, 2)
    }
    return "\n".join(
        [
            "## Scale-out: takeover and throughput",
            "",
            "`bench/takeover.py`, on Apache Kafka 3.9.0 with production client settings but a "
            f"6 s session timeout and 1 s heartbeat (a dead worker noticed in seconds), "
            f"{PARTITIONS} partitions. "
            "Takeover: two workers hold the accounts (one event each); one is killed with "
            "kill -9 and one fresh event per partition it scored is produced at once; the time "
            "runs from the kill to the last of those events' score updates on `chs.scores`. It "
            "includes noticing the death (up to the session timeout), the rebalance, restoring "
            "the partitions' table data (`CHS_TABLE_STANDBY_REPLICAS`), and scoring.",
            "",
            "| accounts | takeover, no standby | takeover, 1 standby |",
            "|---|---|---|",
            *rows,
            "",
            "A standby does not shorten the takeover: with Faust's in-memory table store the "
            "new owner replays the partition's changelog from the start (the store reports no "
            "persisted offset, the standby's position is not carried over, and the store drops "
            "non-active partitions' keys after each recovery). What remains is the session "
            "timeout, the rebalance and the replay, which grows with the changelog until the "
            "broker's cleaner compacts it.",
            "",
            f"Throughput: a backlog of {THROUGHPUT_EVENTS:,} demo events (1,000 accounts) read "
            "by one and by two workers on this machine's two cores, which they share with the "
            "broker; counted from the moment the workers split the partitions, the inputs "
            f"folded after it over the time to the last window settled; {THROUGHPUT_RUNS} runs "
            "each, the median and every run.",
            "",
            "| workers | events/s (median) | runs |",
            "|---|---|---|",
            *(
                f"| {workers} | {statistics.median(runs):,.0f} | "
                + ", ".join(f"{rate:,.0f}" for rate in runs)
                + " |"
                for workers, runs in rates.items()
            ),
            "",
            "What limits it: our scoring work per account settled (1,000 accounts: a "
            "backlog's window of thousands of inputs folds many per account before settling "
            "each once, so this figure is well above the 10,000-account one of the "
            "throughput section), and two workers plus the broker on two cores.",
        ]
    )


if __name__ == "__main__":
    print(report())
