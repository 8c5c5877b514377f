"""The Quix Streams peer: the same per-account count and newest event time, in Quix Streams'
RocksDB state with its changelog. Run as ``python -m bench.peers.quix`` with the ``CHS_*``
environment; it stops after ``CHS_BENCH_EVENTS`` events and prints the events/s from its
first event to its last.
"""

from __future__ import annotations

import os
import time
from typing import Any

from quixstreams import Application, State

from streams.settings import Settings


def quix_application() -> tuple[Settings, Application, int]:
    """The settings, a Quix Streams application as the ``CHS_*`` environment describes it,
    and the events to stop after (``CHS_BENCH_EVENTS``)."""
    settings = Settings()
    app = Application(
        broker_address=",".join(settings.bootstrap_servers),
        consumer_group=settings.app_id,
        auto_offset_reset="earliest",
        state_dir=str(settings.data_dir / "quix-state"),
        loglevel="WARNING",
    )
    return settings, app, int(os.environ["CHS_BENCH_EVENTS"])


def main() -> None:
    settings, app, expected = quix_application()
    seen = {"n": 0, "first": 0.0}

    def count(value: dict[str, Any], state: State[str, Any]) -> None:
        if seen["n"] == 0:
            seen["first"] = time.monotonic()
        aggregate = state.get("aggregate", [0, ""])
        state.set("aggregate", [aggregate[0] + 1, max(aggregate[1], value["occurred_at"])])
        seen["n"] += 1
        if seen["n"] >= expected:
            print(f"quix: {expected / (time.monotonic() - seen['first']):.0f} events/s", flush=True)
            app.stop()

    for name in settings.event_topics:
        app.dataframe(app.topic(name, value_deserializer="json")).update(count, stateful=True)
    app.run()


if __name__ == "__main__":
    main()
