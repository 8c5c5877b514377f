"""The "same work" Quix Streams peer: our scoring core (validate, fold, evaluate, publish
decision and explanation: ``streams.pipeline.account_step.Processor``) in Quix Streams' stateful
processing, each account's state records (``streams/worker/state_records.py``) written to its
RocksDB state (and so its changelog) after every event, as our table's changelog is per
batch. Beside ``bench/peers/quix.py`` (a count), it separates what our core costs from what
the framework costs. ScoreUpdates are built but not produced. Run as
``python -m bench.peers.quix_same_work`` with the ``CHS_*`` environment; it stops after
``CHS_BENCH_EVENTS`` events and prints the events/s from its first event to its last.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from quixstreams import State

from alerts.config import default_rules
from bench.peers.quix import quix_application
from scoring.scoring_model import default_model
from scoring.state import AccountState, SourcePosition
from scoring.update import Rescorer
from streams.pipeline.account_step import Processor, TopicRole
from streams.pipeline.clock import EventClock
from streams.worker.state_records import StateWriter


def main() -> None:
    settings, app, expected = quix_application()
    processor = Processor(
        Rescorer(default_model()), default_rules(), EventClock(), settings.max_future_seconds
    )
    states: dict[bytes, AccountState] = {}
    writer = StateWriter()
    """The accounts' states in memory, as our worker's table keeps them; Quix's state holds
    their encoding (restored from its changelog after a restart)."""
    seen = {"n": 0, "first": 0.0}

    def scorer(topic: str, role: TopicRole) -> Callable[..., None]:
        offsets = iter(range(10**12))

        def score(
            value: bytes, key: bytes, timestamp: int, headers: Any, state: State[str, str]
        ) -> None:
            if seen["n"] == 0:
                seen["first"] = time.monotonic()
            source = SourcePosition(topic, 0, next(offsets))
            processor.process(states, role, key, value, source)
            account = states.get(key)
            if account is not None:
                for record, encoded in writer.records(key, account):
                    # Quix's state serialises values as JSON: the record as text.
                    if encoded is None:
                        state.delete(record.decode("latin-1"))
                    else:
                        state.set(record.decode("latin-1"), encoded.decode("latin-1"))
            seen["n"] += 1
            if seen["n"] >= expected:
                rate = expected / (time.monotonic() - seen["first"])
                print(f"quix same work: {rate:.0f} events/s", flush=True)
                app.stop()

        return score

    for name, role in settings.event_topics.items():
        topic = app.topic(name, key_deserializer="bytes", value_deserializer="bytes")
        app.dataframe(topic).update(scorer(name, role), stateful=True, metadata=True)
    app.run()


if __name__ == "__main__":
    main()
