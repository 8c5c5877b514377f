from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError

from streams.settings import Settings
from streams.worker.consumer_loop import ConsumerLoop, Fetched, Round, each_record

SCORES = TopicPartition("chs.scores", 0)
MOVED = TopicPartition("chs.scores", 1)


def record(tp: TopicPartition, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, b"k", b"v", None, 1, 1, ())


class FakeConsumer:
    """Hands out scripted fetches, then cancels the loop; records what the loop did."""

    def __init__(self, fetches: list[Fetched], **options: Any) -> None:
        self.options = options
        self.fetches = fetches
        self.owned = {SCORES}
        self.paused_tps: set[TopicPartition] = set()
        self.pauses = 0
        self.commits: list[dict[TopicPartition, int]] = []
        self.refuse_commits = False
        self.subscribed: list[str] = []
        self.stopped = False
        self.paused_at_fetch: list[bool] = []

    def subscribe(self, topics: list[str], listener: object = None) -> None:
        self.subscribed = topics

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.stopped = True

    async def getmany(self, timeout_ms: int, max_records: int | None) -> Fetched:
        self.paused_at_fetch.append(bool(self.paused_tps))
        if not self.fetches:
            raise asyncio.CancelledError
        return self.fetches.pop(0)

    def assignment(self) -> set[TopicPartition]:
        return set(self.owned)

    def pause(self, *tps: TopicPartition) -> None:
        self.pauses += 1
        self.paused_tps |= set(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused_tps -= set(tps)

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if self.refuse_commits:
            raise CommitFailedError("rebalanced")
        self.commits.append(dict(offsets))


async def run(fetches: list[Fetched], sink: Any, refuse_commits: bool = False) -> FakeConsumer:
    """Run a loop of group ``g`` over a fake consumer until the fetches run out."""
    made: list[FakeConsumer] = []

    def make(**options: Any) -> FakeConsumer:
        made.append(FakeConsumer(fetches, **options))
        made[-1].refuse_commits = refuse_commits
        return made[-1]

    loop = ConsumerLoop(Settings(), "test", ["chs.scores"], group="g", make_consumer=make)
    with pytest.raises(asyncio.CancelledError):
        await loop.run(sink)
    return made[0]


async def test_a_round_commits_only_the_partitions_still_owned() -> None:
    async def sink(received: Round) -> bool:
        assert received.owns(SCORES)
        assert not received.owns(MOVED)
        await received.commit({SCORES: 5, MOVED: 10})
        return True

    consumer = await run([{SCORES: [record(SCORES, 4)], MOVED: [record(MOVED, 9)]}], sink)
    assert consumer.commits == [{SCORES: 5}]
    assert consumer.stopped
    assert consumer.subscribed == ["chs.scores"]


async def test_a_commit_refused_by_a_rebalance_does_not_stop_the_loop() -> None:
    rounds = 0

    async def sink(received: Round) -> bool:
        nonlocal rounds
        rounds += 1
        await received.commit({SCORES: rounds})
        return True

    fetches: list[Fetched] = [{SCORES: [record(SCORES, 0)]}, {SCORES: [record(SCORES, 1)]}]
    consumer = await run(fetches, sink, refuse_commits=True)
    assert rounds == 2
    assert consumer.commits == []


async def test_a_held_sink_pauses_the_consumer_until_it_takes_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("streams.worker.consumer_loop.HOLD_SECONDS", 0)
    answers = [False, False, True]

    async def sink(received: Round) -> bool:
        return answers.pop(0)

    consumer = await run([{SCORES: [record(SCORES, 0)]}, {}, {}], sink)
    # Fetching goes on while held (the group must not take the member for dead), paused.
    assert consumer.paused_at_fetch == [False, True, True, False]
    assert consumer.pauses == 2


def test_a_group_consumer_commits_by_hand_and_one_of_no_group_has_no_group_settings() -> None:
    settings = Settings(broker_session_timeout=12)
    grouped = ConsumerLoop(settings, "g", ["t"], group="app-view", fetch_min_bytes=7)
    alone = ConsumerLoop(settings, "b", ["t"])
    assert grouped._options["group_id"] == "app-view"
    assert grouped._options["enable_auto_commit"] is False
    assert grouped._options["session_timeout_ms"] == 12_000
    assert grouped._options["fetch_min_bytes"] == 7
    assert alone._options["group_id"] is None
    assert "session_timeout_ms" not in alone._options
    assert alone._options["auto_offset_reset"] == "earliest"


async def test_each_record_hands_every_record_in_order_then_calls_after() -> None:
    seen: list[int] = []
    rounds: list[int] = []
    sink = each_record(lambda r: seen.append(r.offset), lambda: rounds.append(len(seen)))
    fetched = {SCORES: [record(SCORES, 1), record(SCORES, 2)], MOVED: [record(MOVED, 7)]}
    assert await sink(Round(FakeConsumer([]), fetched, "t")) is True
    assert seen == [1, 2, 7]
    assert rounds == [3]
