"""The worker's Faust app: its rebalance fixes and the account table's timer ownership."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import aiokafka
import pytest
from faust.transport.consumer import RecordMap
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, FutureMessage, PendingMessage, RecordMetadata

from alerts.config import default_rules
from scoring.scoring_model import default_model
from streams.pipeline.clock import WallClock
from streams.settings import Settings
from streams.worker.account_table import AccountTable
from streams.worker.app import create_app
from streams.worker.faust_overrides import (
    RECOVERY_FETCH_MAX_WAIT,
    TESTED_RELEASES,
    ChsApp,
    ChsConsumer,
    ChsProducer,
    ChsWorker,
    UntestedRelease,
    check_tested_releases,
)


def app(tmp_path: Path, **settings_changes: object) -> ChsApp:
    settings = Settings(data_dir=tmp_path, topic_partitions=4, **settings_changes)  # type: ignore[arg-type]
    created = create_app(settings, default_model(), default_rules(), WallClock())
    assert isinstance(created, ChsApp)
    return created


def chs_consumer(worker: ChsApp) -> ChsConsumer:
    consumer = worker.consumer
    assert isinstance(consumer, ChsConsumer)
    return consumer


def test_every_assignment_gets_a_new_generation_even_if_the_broker_repeats_one(
    tmp_path: Path,
) -> None:
    worker = app(tmp_path)
    seen = []
    for broker_generation in (1, 1, 2):
        worker.consumer_generation_id = broker_generation
        seen.append(worker.consumer_generation_id)
    assert seen == [1, 2, 3]


async def test_only_records_fetched_under_an_older_assignment_are_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = app(tmp_path)
    consumer = chs_consumer(worker)
    tp = TP("chs.events.login", 0)
    fetched_under: list[int] = []

    async def fetch(self: object, *_: object) -> tuple[RecordMap, set[TP]]:
        # As the consumer thread would: the fetch runs under some assignment, and a
        # rebalance may happen before the main thread sees the records.
        consumer._thread.fetch_generation = fetched_under.pop(0)
        return {tp: ["record"]}, {tp}

    monkeypatch.setattr(aiokafka_driver.Consumer, "_wait_next_records", fetch)
    worker.consumer_generation_id = 1
    consumer._thread.seeked[tp] = (1, 0)  # each assignment seeks the partition to its commit
    fetched_under.append(1)
    assert (await consumer._wait_next_records(1.0))[0] == {tp: ["record"]}
    # Fetched before the rebalance, seen after it: old read positions.
    fetched_under.append(1)
    worker.consumer_generation_id = 2
    consumer._thread.seeked[tp] = (2, 0)
    records, active = await consumer._wait_next_records(1.0)
    assert records == {}
    assert active == {tp}
    # Asked for before the rebalance but run after it: current, kept.
    fetched_under.append(2)
    assert (await consumer._wait_next_records(1.0))[0] == {tp: ["record"]}


class FakeKafkaConsumer:
    """aiokafka's consumer as ``seek_to_committed`` uses it."""

    def __init__(self, committed: dict[TP, int | None]) -> None:
        self.commits = committed
        self.positions: dict[TP, int] = {}

    def assignment(self) -> set[TP]:
        return set(self.commits)

    async def committed(self, tp: TP) -> int | None:
        await asyncio.sleep(0)  # a request to the coordinator: fetches may return meanwhile
        return self.commits[tp]

    def seek(self, tp: TP, offset: int) -> None:
        self.positions[tp] = offset

    async def seek_to_beginning(self, *partitions: TP) -> None:
        for tp in partitions:
            self.positions[tp] = 0
        await asyncio.sleep(0)  # aiokafka asks the broker where the start is


async def test_input_records_count_only_from_their_seek_to_the_commit_in_each_assignment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = app(tmp_path)
    consumer = chs_consumer(worker)
    thread = consumer._thread
    kept, never_committed = TP("chs.events.login", 0), TP("chs.events.login", 1)
    changelog = TP("chs-accounts-changelog", 0)
    kafka = FakeKafkaConsumer({kept: 1847, never_committed: None, changelog: None})
    monkeypatch.setattr(thread, "_ensure_consumer", lambda: kafka)

    async def in_thread(method: Callable[[], Awaitable[object]]) -> object:
        return await method()

    monkeypatch.setattr(thread, "call_thread", in_thread)
    fetched = {kept: ["kept"], never_committed: ["first"], changelog: ["state"]}
    taken_at: list[int] = []

    async def fetch(self: object, *_: object) -> tuple[RecordMap, set[TP]]:
        thread.fetch_generation = worker.consumer_generation_id
        thread.fetch_seeks = taken_at.pop(0)
        return dict(fetched), {kept}

    monkeypatch.setattr(aiokafka_driver.Consumer, "_wait_next_records", fetch)
    worker.consumer_generation_id = 1
    # Table recovery reads the changelog before any seek; the input partitions, resumed
    # before their seek, are fetched from where they stopped: not handed on.
    taken_at.append(thread.seeks)
    records, active = await consumer._wait_next_records(1.0)
    assert records == {changelog: ["state"]}
    assert active == {kept}
    taken_at.append(thread.seeks)  # taken before the seek, seen after it
    assert await thread.seek_to_committed() == {kept: 1847, never_committed: None, changelog: None}
    # An input partition without a commit is read from its start; a changelog, placed by
    # table recovery, is left where it is.
    assert kafka.positions == {kept: 1847, never_committed: 0}
    assert (await consumer._wait_next_records(1.0))[0] == {changelog: ["state"]}
    taken_at.append(thread.seeks)  # taken after the seek
    assert (await consumer._wait_next_records(1.0))[0] == fetched
    # The next assignment: nothing of the inputs until they are seeked again.
    worker.consumer_generation_id = 2
    taken_at.append(thread.seeks)
    assert (await consumer._wait_next_records(1.0))[0] == {changelog: ["state"]}
    await thread.seek_to_committed()
    taken_at.append(thread.seeks)
    assert (await consumer._wait_next_records(1.0))[0] == fetched


async def test_changelog_records_count_from_recoverys_seek_whenever_their_fetch_began(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = app(tmp_path)
    consumer = chs_consumer(worker)
    thread = consumer._thread
    changelog = TP(worker.tables["accounts"].changelog_topic.get_topic_name(), 3)
    kafka = FakeKafkaConsumer({changelog: None})
    monkeypatch.setattr(thread, "_ensure_consumer", lambda: kafka)

    async def in_thread(method: Callable[..., Awaitable[object]], *args: object) -> object:
        return await method(*args)

    async def position(tp: TP) -> int:
        return kafka.positions[tp]

    monkeypatch.setattr(thread, "call_thread", in_thread)
    monkeypatch.setattr(kafka, "position", position, raising=False)
    taken: list[tuple[int, int]] = []  # (assignment the fetch began in, seeks when taken)

    async def fetch(self: object, *_: object) -> tuple[RecordMap, set[TP]]:
        thread.fetch_generation, thread.fetch_seeks = taken.pop(0)
        return {changelog: ["record"]}, {changelog}

    monkeypatch.setattr(aiokafka_driver.Consumer, "_wait_next_records", fetch)
    worker.consumer_generation_id = 1
    await thread.seek_wait({changelog: 0})  # the first assignment's recovery
    taken.append((1, thread.seeks))
    assert (await consumer._wait_next_records(1.0))[0] == {changelog: ["record"]}
    began = worker.consumer_generation_id
    worker.consumer_generation_id = 2  # a rebalance while a fetch waits
    taken.append((began, thread.seeks))  # taken before this recovery's seek: an old position
    assert (await consumer._wait_next_records(1.0))[0] == {}
    before_seek = thread.seeks
    await thread.seek_wait({changelog: 0})  # this recovery replays the changelog from 0
    assert kafka.positions == {changelog: 0}
    taken.append((began, thread.seeks))  # the same fetch, taken after the seek: offset 0 on
    assert (await consumer._wait_next_records(1.0))[0] == {changelog: ["record"]}
    taken.append((began, before_seek))  # taken before the seek, seen after it
    assert (await consumer._wait_next_records(1.0))[0] == {}


def test_the_consumer_counts_the_records_not_handed_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = chs_consumer(app(tmp_path))
    tp, other = TP("chs.events.login", 0), TP("chs.events.login", 1)
    ends: dict[TP, int | None] = {tp: 120, other: None}
    monkeypatch.setattr(ChsConsumer, "highwater", lambda self, at: ends[at])
    monkeypatch.setattr(ChsConsumer, "assignment", lambda self: {tp, other})
    assert consumer.records_waiting(other) is None  # no fetch told where it ends
    assert consumer.records_waiting(TP("chs.events.login", 3)) == 0  # not read here
    assert consumer.records_waiting(tp) == 120  # none handed on, from the start
    consumer._read_offset[tp] = 99  # offsets 0-99 handed on
    assert consumer.records_waiting(tp) == 20
    consumer._read_offset[tp] = 119
    assert consumer.records_waiting(tp) == 0


async def test_offsets_acked_and_then_taken_for_a_gap_are_committed_once(
    tmp_path: Path,
) -> None:
    consumer = chs_consumer(app(tmp_path))
    tp = TP("chs.events.login", 0)

    def ack(*offsets: int) -> None:  # as Faust's ack() lists them
        consumer._acked[tp].extend(offsets)
        consumer._acked_index[tp].update(offsets)

    consumer._committed_offset[tp] = 100
    consumer._read_offset[tp] = 109
    ack(*range(100, 110))
    # A seek back to 100 lands while records fetched before it are handed on: 110 after
    # 100 is taken for a gap over 101-109, which were acked already.
    await consumer._add_gap(tp, 101, 110)
    ack(110, 111)
    assert consumer._new_offset(tp) == 112
    consumer._committed_offset[tp] = 112
    ack(*range(112, 120))
    assert consumer._new_offset(tp) == 120
    assert not consumer._gap[tp]


async def test_the_worker_consumer_fetches_with_the_configured_wait(tmp_path: Path) -> None:
    for seconds, expected_ms in ((1.5, 1500), (0.1, 100)):
        consumer = chs_consumer(app(tmp_path, broker_fetch_max_wait=seconds))
        transport = cast(aiokafka_driver.Transport, consumer.transport)
        kafka_consumer = consumer._thread._create_worker_consumer(transport)
        assert kafka_consumer._fetch_max_wait_ms == expected_ms


async def test_the_worker_consumer_fetches_briefly_while_a_table_recovers(tmp_path: Path) -> None:
    consumer = chs_consumer(app(tmp_path, broker_fetch_max_wait=1.5))
    thread = consumer._thread
    consumer.recovering(True)  # not started yet: nothing to change, nothing raised
    fetcher = SimpleNamespace(_fetch_max_wait_ms=1500)
    thread._consumer = cast(aiokafka.AIOKafkaConsumer, SimpleNamespace(_fetcher=fetcher))
    consumer.recovering(True)
    assert fetcher._fetch_max_wait_ms == round(RECOVERY_FETCH_MAX_WAIT * 1000)
    consumer.recovering(False)
    assert fetcher._fetch_max_wait_ms == 1500


def test_resuming_the_flow_keeps_what_the_stream_buffers_hold(tmp_path: Path) -> None:
    worker = app(tmp_path)
    buffer = worker.FlowControlQueue(maxsize=10, clear_on_resume=True)
    buffer.put_nowait("fetched after the seek")
    changelog = worker.tables.changelog_queue  # type: ignore[attr-defined]
    changelog.put_nowait("a standby's record from before the rebalance")
    worker.flow_control.resume()
    assert buffer.get_nowait() == "fetched after the seek"
    assert changelog.empty()  # Faust's clearing, kept for table recovery


async def test_the_timer_forgets_partitions_as_soon_as_a_rebalance_takes_them(
    tmp_path: Path,
) -> None:
    worker = app(tmp_path)
    table = worker.tables["accounts"]
    assert isinstance(table, AccountTable)
    for partition in range(4):
        table.ownership.schedule.set(partition, f"acct-{partition}".encode(), 100.0)
    changelog = table.changelog_topic.get_topic_name()
    kept = {TP("chs.events.login", 1), TP("chs.events.payment", 3)}
    standby = {TP(changelog, 0)}  # a warm copy is not scored: no timer for it
    revoked = {TP("chs.events.login", 0), TP("chs.events.login", 2)}
    await table.on_rebalance(kept | standby, revoked, set(), 2)
    due = table.ownership.schedule.pop_due(now=200.0, limit=10)
    assert sorted((partition, key) for partition, key, _ in due) == [
        (1, b"acct-1"),
        (3, b"acct-3"),
    ]


def test_the_worker_keeps_debug_records_off_the_hot_path() -> None:
    # Faust's spinner handler puts the root logger at DEBUG; the worker's hook puts it back
    # at the configured level. (Built without __init__: a real faust.Worker takes over the
    # terminal of the test process.)
    worker = ChsWorker.__new__(ChsWorker)
    worker.spinner = None
    root = logging.Logger("root-under-test", logging.DEBUG)
    worker.on_setup_root_logger(root, logging.WARNING)
    assert not root.isEnabledFor(logging.DEBUG)
    assert root.isEnabledFor(logging.WARNING)


async def test_a_flush_waits_for_the_records_queued_before_it_not_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer = app(tmp_path).producer
    assert isinstance(producer, ChsProducer)
    flushed_in_aiokafka = []

    class AIOKafkaProducer:
        async def flush(self) -> None:
            flushed_in_aiokafka.append(True)

    monkeypatch.setattr(producer, "_producer", AIOKafkaProducer())

    def record() -> FutureMessage:
        return FutureMessage(cast(PendingMessage, None))

    older, newest = record(), record()
    producer.send_soon(older)
    producer.send_soon(newest)
    flush = asyncio.ensure_future(producer.flush())
    await asyncio.sleep(0.3)  # Faust's own flush gives up after 0.1 s without a send
    assert not flush.done()  # the newest record queued before the flush is not sent yet
    producer.send_soon(record())  # queued while flushing: not waited for
    newest.set_result(cast(RecordMetadata, None))
    await asyncio.wait_for(flush, timeout=1)
    assert flushed_in_aiokafka == [True]  # then the records in aiokafka's hands


def test_the_worker_runs_only_on_the_releases_its_overrides_were_tested_with() -> None:
    tested = dict(TESTED_RELEASES)
    check_tested_releases(lambda name: tested[name])  # the pinned ones pass
    check_tested_releases(lambda name: "0.14.9" if name == "aiokafka" else tested[name])
    newer = {**tested, "faust-streaming": "0.15.4"}
    with pytest.raises(UntestedRelease, match=r"faust-streaming 0\.15\.4 \(tested: 0\.15\.3\)"):
        check_tested_releases(lambda name: newer[name])
    with pytest.raises(UntestedRelease, match=r"aiokafka 0\.140\.0"):
        check_tested_releases(lambda name: "0.140.0" if name == "aiokafka" else tested[name])


def test_the_installed_releases_are_the_tested_ones() -> None:
    check_tested_releases()  # what pyproject.toml pins is what is installed
