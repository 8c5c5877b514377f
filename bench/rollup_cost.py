"""Cost of a roll-up: one child's report at a parent of 10, 100 and 1,000 children.

Runs the worker's processor without Kafka (``streams.pipeline.account_step.Processor``: raw bytes ->
validate -> apply the report -> roll up -> explain -> ScoreUpdate) on copies of one parent,
each report a child's new score, and reports microseconds per report beside an event's on an
account of its own (``bench.history_cost``), the parent's state and its ScoreUpdate in bytes.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from bench.history_cost import NOW, _processor
from bench.history_cost import measure as event_cost
from scoring.rollup import ChildReport
from scoring.state import AccountState, SourcePosition
from streams.pipeline.account_step import Applied, Control
from streams.worker.state_records import StateWriter

CHILDREN = (10, 100, 1_000)
COPIES = 200
ROUNDS = 3
MRRS = (99, 499, 1999)


def _report(child: int, score: float, rng: random.Random, minutes: float) -> bytes:
    return (
        ChildReport(
            account_id="group",
            child_id=f"child-{child}",
            score=score,
            band=None,
            mrr=Decimal(rng.choice(MRRS)),
            at=NOW - timedelta(minutes=minutes),
            path=[f"child-{child}"],
        )
        .model_dump_json()
        .encode()
    )


def _parent(children: int) -> AccountState:
    """A parent holding ``children`` children's reports."""
    processor = _processor()
    states: dict[bytes, AccountState] = {}
    rng = random.Random(children)
    for i in range(children):
        payload = _report(i, rng.uniform(20, 95), rng, minutes=60)
        processor.process(states, Control.ROLLUP, b"group", payload, SourcePosition("r", 0, i))
    return states[b"group"]


@dataclass
class RollupCost:
    children: int
    micros_per_report: float
    published: float
    """Share of the reports that published a parent ScoreUpdate (it moved a point or more)."""
    update_bytes: float
    """A published parent ScoreUpdate (mean)."""
    state_bytes: int
    written_bytes: float
    """What the table's changelog gets after a report (``streams/worker/state_records.py``): the
    input record, the parts that changed and the child's record, mean."""


def measure(children: int) -> RollupCost:
    base = _parent(children)
    processor = _processor()
    rng = random.Random(7)
    timings, published, sizes, written = [], 0, [], []
    for round_ in range(ROUNDS):
        states = {
            f"g{k}".encode(): base.model_copy(update={"account_id": f"g{k}"}, deep=True)
            for k in range(COPIES)
        }
        writer = StateWriter()
        for key, state in states.items():  # what the changelog held before the report
            list(writer.records(key, state))
        messages = []
        for key in states:
            payload = _report(rng.randrange(children), rng.uniform(5, 95), rng, minutes=-1)
            messages.append((key, payload.replace(b'"group"', b'"' + key + b'"')))
        began = time.perf_counter()
        outcomes = [
            processor.process(
                states, Control.ROLLUP, key, payload, SourcePosition("r", 0, 10**6 + round_)
            )
            for key, payload in messages
        ]
        timings.append((time.perf_counter() - began) / COPIES * 1e6)
        for outcome in outcomes:
            assert isinstance(outcome, Applied), outcome
            if outcome.update is not None:
                published += 1
                sizes.append(len(outcome.update.model_dump_json()))
        written += [
            sum(len(value or b"") for _, value in writer.records(key, state))
            for key, state in states.items()
        ]
    return RollupCost(
        children,
        statistics.median(timings),
        published / (ROUNDS * COPIES),
        statistics.mean(sizes) if sizes else 0.0,
        len(base.model_dump_json(exclude_defaults=True)),
        statistics.mean(written),
    )


def report() -> str:
    alone = event_cost(10)
    lines = [
        "## Roll-ups",
        "",
        "One child's report at its parent (a new score), through the worker's processor "
        "without Kafka (`bench/rollup_cost.py`), beside one event on an account with 10 "
        f"events of history ({alone.micros_per_event:.0f} µs).",
        "",
        "| children | µs per report | x an event | reports publishing | parent update | "
        "parent state | changelog bytes per report |",
        "|---|---|---|---|---|---|---|",
    ]
    for children in CHILDREN:
        cost = measure(children)
        lines.append(
            f"| {children:,} | {cost.micros_per_report:,.0f} | "
            f"x{cost.micros_per_report / alone.micros_per_event:.1f} | "
            f"{cost.published:.0%} | {cost.update_bytes:,.0f} B | {cost.state_bytes:,} B | "
            f"{cost.written_bytes:,.0f} B |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
