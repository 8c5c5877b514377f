from __future__ import annotations

import asyncio

from scoring.events import Event, EventKind, PaymentStatus
from scoring.state import AccountState, SourcePosition
from streams.pipeline.account_step import Applied, Skipped, SkipReason
from streams.pipeline.batching import batches
from streams.pipeline.clock import EventClock
from streams.pipeline.window_step import WindowFolds
from tests.factories import feature, login, payment
from tests.unit.streams.pipeline.test_account_step import processor

AGGREGATES = {"days", "active_users", "features", "unpaid_invoices", "events_applied"}


def message(event: Event, offset: int) -> tuple[EventKind, bytes, bytes, SourcePosition]:
    payload = event.model_dump_json(exclude={"kind"}).encode()
    return event.kind, event.account_id.encode(), payload, SourcePosition("t", 0, offset)


def nothing_stored(key: bytes) -> AccountState | None:
    return None


def no_day_settled(key: bytes, applied: Applied) -> None:
    raise AssertionError("no input of a later day in this window")


def history() -> list[Event]:
    return [
        login(account="acme", days=-3, user="u1"),
        feature(account="acme", days=-2),
        login(account="globex", days=-2, user="u7"),
        payment(account="acme", days=-1, status=PaymentStatus.FAILED),
        login(account="acme", days=0, user="u2"),
    ]


def test_each_account_is_rescored_once_per_batch_after_all_its_inputs() -> None:
    table: dict[bytes, AccountState] = {}
    batch = WindowFolds(processor(), table.get, no_day_settled)
    events = history()
    for offset, event in enumerate(events):
        batch.add(*message(event, offset))
    settled = dict(batch.settle())
    assert set(settled) == {b"acme", b"globex"}
    acme = settled[b"acme"]
    assert acme.state.events_applied == 4
    assert acme.update is not None
    assert acme.update.event_id == events[-1].event_id  # the last input triggered it
    assert table == {}  # the caller writes the table


def test_a_batch_ends_where_one_input_at_a_time_ends() -> None:
    one_at_a_time: dict[bytes, AccountState] = {}
    proc = processor()
    events = history()
    for offset, event in enumerate(events):
        proc.process(one_at_a_time, *message(event, offset))
    batch = WindowFolds(processor(), nothing_stored, no_day_settled)
    for offset, event in enumerate(events):
        batch.add(*message(event, offset))
    batched = dict(batch.settle())
    for key, state in one_at_a_time.items():
        assert batched[key].state.model_dump(include=AGGREGATES) == state.model_dump(
            include=AGGREGATES
        )
        published, expected = batched[key].state.published, state.published
        assert published is not None
        assert expected is not None
        assert published.score == expected.score


def test_an_input_read_twice_in_a_batch_counts_once() -> None:
    batch = WindowFolds(processor(), nothing_stored, no_day_settled)
    first = message(login(account="acme"), 7)
    batch.add(*first)
    again = batch.add(*first)
    assert isinstance(again, Skipped)
    assert again.reason is SkipReason.REDELIVERED
    [(_, applied)] = batch.settle()
    assert applied.state.events_applied == 1


def test_a_failed_payment_in_the_middle_of_a_batch_still_raises_its_alert() -> None:
    table: dict[bytes, AccountState] = {}
    proc = processor()
    warm_up = [login(account="acme", days=-40 + day) for day in range(40)]
    for offset, event in enumerate(warm_up):
        proc.process(table, *message(event, offset))
    batch = WindowFolds(proc, table.get, no_day_settled)
    failed = payment(account="acme", days=0, status=PaymentStatus.FAILED)
    batch.add(*message(failed, 100))
    batch.add(*message(login(account="acme", days=0), 101))
    [(_, applied)] = batch.settle()
    assert [alert.trigger for alert in applied.alerts if "critical" in alert.rule] == [
        failed.event_id
    ]


async def test_batches_take_what_has_arrived_up_to_the_limit() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(5):
        queue.put_nowait(n)
    taken = batches(queue, limit=3)
    assert await anext(taken) == [0, 1, 2]
    assert await anext(taken) == [3, 4]
    waiting = asyncio.ensure_future(anext(taken))
    await asyncio.sleep(0)
    assert not waiting.done()
    queue.put_nowait(5)
    assert await waiting == [5]


def test_a_batch_across_days_keeps_each_days_closing_score_as_one_input_at_a_time() -> None:
    """Under a backlog a batch spans days of event time: an input of a later day first
    settles the account's inputs of the day before, so the closing score of every day (what
    the live audit judges by) is the one an input at a time would have left."""
    events: list[Event] = []
    for day in range(-12, 1):
        events.append(login(account="acme", days=day, user=f"u{day % 3}"))
        events.append(feature(account="acme", days=day + 0.1, name=f"f{day % 4}"))
        if day % 3 == 0:
            events.append(login(account="globex", days=day, user="u9"))
    wall = lambda: events[-1].occurred_ts  # noqa: E731 - the replay ends now
    one_at_a_time: dict[bytes, AccountState] = {}
    single = processor(EventClock(wall))
    for offset, event in enumerate(events):
        single.process(one_at_a_time, *message(event, offset))
    settled: list[tuple[bytes, Applied]] = []
    batch = WindowFolds(
        processor(EventClock(wall)),
        nothing_stored,
        lambda key, applied: settled.append((key, applied)),
    )
    for offset, event in enumerate(events):
        batch.add(*message(event, offset))
    settled += batch.settle()
    states = {key: applied.state for key, applied in settled}
    for key, state in one_at_a_time.items():
        assert states[key].history == state.history
        published, reference = states[key].published, state.published
        assert published is not None
        assert reference is not None
        assert (published.score, published.band) == (reference.score, reference.band)
    # acme: once per day of its inputs; globex: once per day it had one.
    assert [key for key, _ in settled].count(b"acme") == 13
    assert [key for key, _ in settled].count(b"globex") == 5


async def test_an_idle_wait_yields_an_empty_batch_only_while_asked_to() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    holding = [True]
    taken = batches(queue, limit=3, idle=lambda: 0.01 if holding[0] else None)
    assert await anext(taken) == []  # nothing arrived: the held messages get their turn
    holding[0] = False
    waiting = asyncio.ensure_future(anext(taken))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # nothing held: it waits for input
    queue.put_nowait(7)
    assert await waiting == [7]
