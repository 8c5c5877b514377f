"""`make bench`: run every benchmark and write BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import alert_latency, history_cost, recovery, rollup_cost, takeover, throughput
from streams.ops.local_broker import BrokerKind


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {cpu}, {os.cpu_count()} cores, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"commit {commit or 'uncommitted'}. Command: `make bench`."
    )


def section(title: str, report: Callable[[], str]) -> str:
    """A section's report; a section that fails says so, and the others are still written
    (a run takes half an hour)."""
    try:
        text = report()
    except Exception as error:
        text = f"## {title}\n\nThis section failed in this run: {type(error).__name__}: {error}"
    sys.stdout.write(text + "\n\n")
    sys.stdout.flush()
    return text


def main() -> None:
    rates = throughput.measure(BrokerKind.KAFKA)
    dev = throughput.measure(BrokerKind.TANSU)
    sections = [
        section("Throughput", lambda: throughput.report(rates, dev)),
        # At half the measured maximum, as the performance targets put it (and a quarter).
        section("Latency", lambda: alert_latency.report(rates.worker)),
        section("Memory and recovery", recovery.report),
        section("Cost per event", history_cost.report),
        section("Roll-ups", rollup_cost.report),
        section("Scale-out", takeover.report),
    ]
    text = "\n\n".join(["# Benchmarks", machine(), *sections]) + "\n"
    Path("BENCHMARKS.md").write_text(text)


if __name__ == "__main__":
    main()
