"""Throughput, side by side on one workload: the raw consumer ceiling, a naive Faust agent,
the Quix Streams peer, and our worker end to end; the ratios between them.

Every contender reads the same 200,000 events (the demo's mix of the five kinds over 10,000
accounts), already on the dev broker's event topics, in its own consumer group, one process.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.ceiling import raw_consumer_rate
from bench.output_bytes import TABLE_HEADER, OutputBytes, output_bytes
from bench.stack import dev_services, metric_sums, peak_rss, start_worker
from bench.workload import ACCOUNTS, create_event_topics, produce, realistic_events
from streams.ops.devstack import ManagedProcess, free_port, settings_env, start_process
from streams.ops.local_broker import BrokerKind
from streams.settings import Settings
from streams.worker.topics import ensure_topics, group_lag

PARTITIONS = 8


@dataclass(frozen=True)
class Rates:
    events: int
    ceiling: float
    naive_faust: float
    quix: float | None
    quix_same_work: float | None
    worker: float
    written: OutputBytes


def _member(settings: Settings, group: str, logs: Path) -> Settings:
    return settings.model_copy(
        update={"app_id": group, "web_port": free_port(), "data_dir": logs / group}
    )


async def drained_rate(
    settings: Settings,
    total: int,
    process: ManagedProcess,
    started: Callable[[], bool] | None = None,
) -> float:
    """Events/s of a group until it has committed everything: from ``started()`` turning true
    (all the events over that time), else from its first commit (the events left then over
    the time since). Our worker commits once per window, so its clock starts at its first
    input read (``first_input_read``); the naive Faust agent commits as it goes."""
    topics = list(settings.event_topics)

    async def lag() -> int:
        if process.process.poll() is not None:
            raise RuntimeError(f"{process.name} exited: {process.log_tail(5)}")
        return await group_lag(settings, topics)

    async with asyncio.timeout(3600):
        if started is not None:
            while not await asyncio.to_thread(started):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            behind = total
        else:
            while (behind := await lag()) >= total:  # noqa: ASYNC110
                await asyncio.sleep(0.25)
        began = time.monotonic()
        while await lag() > 0:  # noqa: ASYNC110
            await asyncio.sleep(0.25)
    return behind / (time.monotonic() - began)


def first_input_read(settings: Settings) -> Callable[[], bool]:
    """Whether our worker has read an input (its ``chs_events_consumed_total``)."""

    def read() -> bool:
        found = metric_sums(settings, "chs_events_consumed_total")
        return found is not None and found[0] > 0

    return read


def naive_faust_rate(settings: Settings, total: int, logs: Path) -> float:
    member = _member(settings, "naive-faust", logs)
    command = [sys.executable, "-m", "bench.peers.naive_faust", "worker", "-l", "warn"]
    process = start_process("naive-faust", command, logs / "naive-faust.log", settings_env(member))
    try:
        return asyncio.run(drained_rate(member, total, process))
    finally:
        process.stop()


def quix_rate(settings: Settings, total: int, logs: Path, peer: str = "quix") -> float | None:
    """A Quix Streams peer's events/s (``bench/peers/{peer}.py``), as it reports it."""
    member = _member(settings, peer.replace("_", "-"), logs)
    env = {**settings_env(member), "CHS_BENCH_EVENTS": str(total)}
    log = logs / f"{peer}.log"
    process = start_process(peer, [sys.executable, "-m", f"bench.peers.{peer}"], log, env)
    try:
        process.process.wait(timeout=1800)
    finally:
        process.stop()
    found = re.search(r"quix[a-z ]*: (\d+) events/s", log.read_text())
    return float(found.group(1)) if found else None


SETTLE_SECONDS = 5.0
"""After the last commit, time for the changelog records queued before it to be counted."""


def worker_rate(settings: Settings, total: int, logs: Path) -> tuple[float, int, OutputBytes]:
    """Our worker end to end; also its peak RSS in bytes and what it wrote to Kafka."""
    member = _member(settings, "chs-worker", logs)
    asyncio.run(ensure_topics(member))
    member, process = start_worker(member, "chs-worker", logs)
    try:
        rate = asyncio.run(drained_rate(member, total, process, first_input_read(member)))
        rss = peak_rss(process.process.pid)
        time.sleep(SETTLE_SECONDS)
        return rate, rss, asyncio.run(output_bytes(member))
    finally:
        process.stop()


def measure(kind: BrokerKind = BrokerKind.KAFKA) -> Rates:
    """Every contender on a broker of ``kind`` (production client settings on Apache Kafka,
    the dev-broker work-arounds on Tansu)."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        dev_services(Path(tmp), kind=kind, topic_partitions=PARTITIONS, clock="event") as (
            settings,
            _,
        ),
    ):
        logs = Path(tmp)
        events = realistic_events()
        asyncio.run(create_event_topics(settings))
        asyncio.run(produce(settings, events))
        total = len(events)
        ceiling = asyncio.run(raw_consumer_rate(settings, total))
        naive = naive_faust_rate(settings, total, logs)
        quix = quix_rate(settings, total, logs)
        same_work = quix_rate(settings, total, logs, "quix_same_work")
        ours, _, written = worker_rate(settings, total, logs)
        return Rates(total, ceiling, naive, quix, same_work, ours, written)


def _rate(rate: float | None) -> str:
    return f"{rate:,.0f}" if rate else "did not finish (see its log)"


def report(rates: Rates, dev: Rates | None = None) -> str:
    """The contenders on Apache Kafka, and on the dev broker beside them (``dev``)."""

    def ratio(ours: float, other: float | None) -> str:
        return f"x{ours / other:.2f}" if other else "-"

    def cells(pick: Callable[[Rates], float | None]) -> str:
        kafka = f"{_rate(pick(rates))} | {ratio(rates.worker, pick(rates))}"
        if dev is None:
            return kafka
        return f"{kafka} | {_rate(pick(dev))} | {ratio(dev.worker, pick(dev))}"

    rows = [
        ("raw aiokafka consumer + `json.loads` (the ceiling)", lambda r: r.ceiling),
        (
            "naive Faust agent, one table write per event (`bench/peers/naive_faust.py`)",
            lambda r: r.naive_faust,
        ),
        ("Quix Streams 3, RocksDB state with changelog, a count (`bench/peers/quix.py`)",
         lambda r: r.quix),
        (
            "Quix Streams 3, **same work**: our scoring core (validate, fold, evaluate, "
            "publish decision) in its stateful processing, the state encoded per event "
            "(`bench/peers/quix_same_work.py`)",
            lambda r: r.quix_same_work,
        ),
        ("our worker, end to end (first input read to last commit)", lambda r: r.worker),
    ]  # fmt: skip
    header = "| contender | Apache Kafka 3.9.0: events/s | ours against it |"
    rule = "|---|---|---|"
    if dev is not None:
        header += " Tansu (dev broker): events/s | ours against it |"
        rule += "---|---|"
    return "\n".join(
        [
            "## Throughput, side by side",
            "",
            f"`bench/throughput.py`: {rates.events:,} events (the demo's mix of the five kinds "
            f"over {ACCOUNTS:,} accounts), on the event topics ({PARTITIONS} partitions) "
            "before anyone reads them; each contender is one process in its own consumer "
            "group on the same machine as the broker. On Apache Kafka every contender uses "
            "production client settings; on the dev broker, its work-arounds (one-record "
            "producer batches, short fetch waits: docs/dev-broker.md).",
            "",
            header,
            rule,
            *(f"| {name} | {cells(pick)} |" for name, pick in rows),
            "",
            "The naive Faust rate is the events left at its group's first commit over the "
            "time from that commit to the last; ours is every event over the time from its "
            "first input read to its last commit (it commits once per window: a clock "
            "started at its first commit or first ScoreUpdate would leave its first window "
            "out); the Quix peers report theirs from their first event to their last.",
            "",
            "### Bytes per input event",
            "",
            "What our worker wrote to Kafka for this workload (keys and values of every record "
            "on `chs.scores`, `chs.alerts` and its table's changelog, read back once it was "
            "done; Kafka's own record overhead is not counted). The alert-latency section "
            "below gives the same under a light live load.",
            "",
            *TABLE_HEADER,
            rates.written.row("throughput backlog (Apache Kafka)", rates.events),
        ]
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    print(report(measure()))
