"""`make bench`: run every benchmark and write BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench import alert_latency, history_cost, recovery, takeover, throughput


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


def main() -> None:
    rates = throughput.measure()
    sections = [
        throughput.report(rates),
        # At half the measured maximum, as the performance targets put it (and a quarter).
        alert_latency.report(rates.worker),
        recovery.report(),
        history_cost.report(),
        takeover.report(),
    ]
    text = "\n\n".join(["# Benchmarks", machine(), *sections]) + "\n"
    Path("BENCHMARKS.md").write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
