"""`python -m bench.suspects [VARIANT ...]`: our worker on the throughput backlog with one
setting changed at a time, on one local Apache Kafka (docs/performance.md, "each suspect
measured apart"). Each variant is its own consumer group with its own output topics, so each
reads the whole backlog; it prints one table row per variant as it finishes."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from bench.output_bytes import output_bytes
from bench.stack import dev_services, metric_sums, start_worker
from bench.throughput import PARTITIONS, SETTLE_SECONDS, drained_rate, first_input_read
from bench.workload import create_event_topics, produce, realistic_events
from streams.ops.local_broker import BrokerKind
from streams.settings import Settings
from streams.worker.topics import ensure_topics

VARIANTS: dict[str, dict[str, object]] = {
    "production settings": {},
    "producer batches 16 KiB, no linger": {
        "producer_max_batch_size": 16_384,
        "producer_linger_seconds": 0.0,
    },
    "producer batches 16 KiB": {"producer_max_batch_size": 16_384},
    "no linger": {"producer_linger_seconds": 0.0},
    "batches of at most 100 inputs": {"input_batch_max": 100},
    "one batch per window (no windows)": {"window_max_inputs": 1},
    "windows of at most 10,000 inputs": {"window_max_inputs": 10_000},
    "windows of at most 100,000 inputs or 15 s": {
        "window_max_inputs": 100_000,
        "window_max_seconds": 15.0,
    },
    "fetches wait at most 1.5 s on the broker": {"broker_fetch_max_wait": 1.5},
    "fetches wait at most 0.05 s on the broker": {"broker_fetch_max_wait": 0.05},
    "windows of at most 200,000 inputs or 30 s": {
        "window_max_inputs": 200_000,
        "window_max_seconds": 30.0,
    },
}

OUTPUT_TOPICS = ("scores", "alerts", "alerts_dlq", "dlq", "rollup", "peers", "audit")
"""The topics a worker writes: each variant gets its own."""


def window_figures(member: Settings) -> tuple[float, float]:
    """Inputs per window and the scoring task's seconds per input, from the worker's metrics."""
    found = metric_sums(
        member,
        "chs_window_inputs_sum",
        "chs_window_inputs_count",
        "chs_window_handling_seconds_sum",
    )
    if found is None:
        raise RuntimeError(f"worker on port {member.web_port} does not answer")
    inputs, windows, seconds = found
    return inputs / windows, seconds / inputs


def variant_settings(settings: Settings, index: int, change: dict[str, object]) -> Settings:
    topics = {
        f"topic_{name}": f"{getattr(settings, f'topic_{name}')}.v{index}" for name in OUTPUT_TOPICS
    }
    return settings.model_copy(update={"app_id": f"chs-v{index}", **topics, **change})


def main(names: list[str]) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        dev_services(
            Path(tmp), kind=BrokerKind.KAFKA, topic_partitions=PARTITIONS, clock="event"
        ) as (settings, _),
    ):
        events = realistic_events()
        asyncio.run(create_event_topics(settings))
        asyncio.run(produce(settings, events))
        total = len(events)
        print("| variant | events/s | inputs per window | µs per input | changelog records "
              "per input | ScoreUpdates per input | bytes per input |")  # fmt: skip
        print("|---|---|---|---|---|---|---|")
        for index, name in enumerate(names):
            member = variant_settings(settings, index, VARIANTS[name])
            asyncio.run(ensure_topics(member))
            member, process = start_worker(member, f"worker-v{index}", Path(tmp))
            try:
                rate = asyncio.run(drained_rate(member, total, process, first_input_read(member)))
                per_window, seconds = window_figures(member)
                time.sleep(SETTLE_SECONDS)
                written = asyncio.run(output_bytes(member))
            finally:
                process.stop()
            print(
                f"| {name} | {rate:,.0f} | {per_window:,.0f} | {seconds * 1e6:,.0f} | "
                f"{written.changelog_records / total:.2f} | "
                f"{written.scores_records / total:.2f} | {written.total / total:,.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    chosen = sys.argv[1:] or list(VARIANTS)
    unknown = [name for name in chosen if name not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    main(chosen)
