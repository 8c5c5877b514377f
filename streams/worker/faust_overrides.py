"""The worker's Faust classes: the app, its consumer and producer (faust-streaming's rebalance
and commit handling fixed, whole fetches handed to the scoring task), and the worker.

They override private methods of the exact releases in ``TESTED_RELEASES`` (pinned in
pyproject.toml); ``check_tested_releases`` keeps the worker from starting on others. Every
override of a Faust, mode or aiokafka internal lives here; each one, what it changes, and the
tests that prove it (unit: tests/unit/streams/worker/test_faust_overrides.py; integration: tests/
integration/):

- ``ChsConsumerThread._create_worker_consumer``: aiokafka's ``_fetch_max_wait_ms`` from the
  settings instead of Faust's fixed 1.5 s (unit: ..._fetches_with_the_configured_wait);
  ``ChsConsumer.recovering``: a short wait while a table recovers (unit: ..._fetches_briefly_
  while_a_table_recovers; bench/recovery.py).
- ``ChsConsumerThread._fetch_records`` and ``ChsConsumer._wait_next_records``: records fetched
  under an older assignment are dropped (unit: ..._fetched_under_an_older_assignment_...;
  test_scale_out.py, adding a worker).
- ``ChsConsumerThread.seek_to_committed`` and ``_seek_wait``: seeks noted per partition
  (count, assignment); an input partition's records count only from its seek in the current
  assignment, a changelog's from table recovery's last seek of it; input partitions without a
  commit read from their start (unit: ..._count_only_from_their_seek_
  to_the_commit_...; test_scale_out.py, adding a worker; bench/takeover.py with a standby).
- ``ChsConsumer._new_offset``: a gap's offsets acked already count once (unit: ..._taken_for_a_
  gap_are_committed_once; test_crash.py).
- ``ChsConsumer.records_waiting``: the records of a topic-partition not handed on yet, from
  Faust's read offsets (unit: ..._counts_the_records_not_handed_on; test_audit.py, outcomes
  before the history).
- ``ChsConsumer._drain_messages``: bulk hand-over of raw messages, commits left to the timer
  (test_crash.py, test_scale_out.py, test_pipeline.py).
- ``ChsProducer.send_soon``/``flush``: a flush waits for the records queued before it (unit:
  ..._a_flush_waits_for_the_records_queued_before_it...; test_crash.py).
- ``ChsProducer.batches``: the scoring task's records past Faust's buffer, straight to the
  aiokafka producer it starts (unit: tests/unit/streams/worker/test_batch_sender.py; every
  integration test that scores, test_crash.py).
- ``RawMessageTopic._compile_decode``/``decode``: raw messages, no Events (test_pipeline.py).
- ``CodecTable._serializer_from_type``: the table's codec (test_crash.py reads the changelog).
- ``ChsRecovery._build_offsets`` (with ``ChsTableManager.recovery``, ``ChsConsumerThread.
  changelog_consumer`` and ``CodecTable.apply_changelog_records``): a table's active changelog
  partitions read straight from the broker before Faust's recovery loop, which reads on from
  where that read stopped (unit: tests/unit/streams/worker/test_changelog_reader.py; every
  restart and takeover test: test_restart.py, test_crash.py, test_scale_out.py; bench/
  recovery.py).
- ``ChsApp.consumer_generation_id``/``_on_partitions_assigned``: a generation per assignment
  (unit: ..._gets_a_new_generation_even_if_the_broker_repeats_one; test_crash.py).
- ``ChsApp.FlowControlQueue`` and the tables' ``_changelog_queue``: stream buffers kept when
  the flow resumes, the recovery queue still cleared (unit: ..._keeps_what_the_stream_buffers_
  hold; test_crash.py, test_scale_out.py).
- ``ChsApp._new_transport`` and its ``TableManager``: the classes above.
- ``ChsApp.read_in_bulk``, ``scorable``, ``ack``, ``ready_checks``: the scoring task's raw
  input queue, the generation check and acknowledgement of its messages, recovery state for
  /readyz (test_pipeline.py, test_crash.py, test_operations.py).
- ``ChsWorker.on_setup_root_logger``: no DEBUG records on the hot path (unit: ..._keeps_debug_
  records_off_the_hot_path).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata
from typing import Any, TypeVar, cast

import aiokafka
import faust
from aiokafka import ConsumerRecord
from faust.serializers import codecs
from faust.stores.memory import Store as MemoryStore
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.consumer import CONSUMER_FETCHING, RecordMap
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, AppT, FutureMessage, Message, TransportT
from faust.types.transports import ConsumerT
from mode import Service, ServiceT
from mode.utils.queues import ThrowableQueue

from streams.worker.batch_sender import BatchSender
from streams.worker.changelog_reader import read_changelogs

log = logging.getLogger(__name__)

TESTED_RELEASES = {"faust-streaming": "0.15.3", "mode-streaming": "0.7.1", "aiokafka": "0.14"}
"""Distribution -> the release (or release series) whose internals the classes below override,
as tests/integration/faults/test_crash.py and test_scale_out.py prove them."""


class UntestedRelease(RuntimeError):
    """An installed dependency is not the release the worker's overrides were tested with."""


def check_tested_releases(installed: Callable[[str], str] = metadata.version) -> None:
    """Raise ``UntestedRelease`` unless every one of ``TESTED_RELEASES`` is installed."""
    wrong = []
    for name, tested in TESTED_RELEASES.items():
        try:
            version = installed(name)
        except metadata.PackageNotFoundError:
            version = "none"
        if version != tested and not version.startswith(tested + "."):
            wrong.append(f"{name} {version} (tested: {tested})")
    if wrong:
        raise UntestedRelease(
            "the worker overrides internals of faust-streaming, mode-streaming and aiokafka "
            "(streams/worker/faust_overrides.py) that only the tested releases are known to keep, "
            "and a crash or rebalance can lose or stall events on others; installed: "
            + ", ".join(wrong)
            + ". Install chs's pinned versions (pip install with the project's pyproject.toml), "
            "or run the crash and scale-out tests on the new ones and update TESTED_RELEASES."
        )


class ChsConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    """Faust's consumer thread, noting the assignment each fetch reads under, and fetching
    with the configured wait (``CHS_BROKER_FETCH_MAX_WAIT``)."""

    fetch_generation = 0
    seeks = 0
    """Seeks to the committed offsets so far."""
    fetch_seeks = 0
    """``seeks`` when the last fetch took its records from aiokafka's buffers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seeked: dict[TP, tuple[int, int]] = {}
        """Topic-partition -> its last seek: the assignment (``consumer_generation_id``) it
        began in, and the count of ``seeks`` it made."""

    def _create_worker_consumer(
        self, transport: aiokafka_driver.Transport
    ) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Faust passes a fixed 1.5 s; aiokafka reads the value when the consumer starts.
        wait = cast(ChsApp, self.app).broker_fetch_max_wait
        consumer._fetch_max_wait_ms = round(wait * 1000)
        return consumer

    def changelog_consumer(self) -> aiokafka.AIOKafkaConsumer:
        """A consumer in no group, on the worker consumer's servers and security, for
        ``ChsRecovery`` to read changelogs with (not started)."""
        conf = self.app.conf
        transport = cast(aiokafka_driver.Transport, self.transport)
        committed = self.consumer.in_transaction  # as the worker consumer reads
        return aiokafka.AIOKafkaConsumer(
            client_id=f"{conf.broker_client_id}-recovery",
            bootstrap_servers=aiokafka_driver.server_list(transport.url, transport.default_port),
            enable_auto_commit=False,
            isolation_level="read_committed" if committed else "read_uncommitted",
            max_partition_fetch_bytes=conf.consumer_max_fetch_size,
            fetch_max_wait_ms=round(RECOVERY_FETCH_MAX_WAIT * 1000),
            request_timeout_ms=int(conf.broker_request_timeout * 1000.0),
            **aiokafka_driver.credentials_to_aiokafka_auth(
                conf.broker_credentials, conf.ssl_context
            ),
        )

    def fetch_max_wait(self, seconds: float) -> None:
        """From the next fetch on, wait at most ``seconds`` on the broker (aiokafka's fetcher
        reads its value for each request; no-op before the consumer starts)."""
        consumer = self._consumer
        fetcher = getattr(consumer, "_fetcher", None)
        if fetcher is not None:
            fetcher._fetch_max_wait_ms = round(seconds * 1000)

    async def _fetch_records(
        self,
        consumer: aiokafka.AIOKafkaConsumer,
        active_partitions: set[TP],
        timeout: float | None = None,  # noqa: ASYNC109 - Faust's signature
        max_records: int | None = None,
    ) -> RecordMap:
        # Taken here, in the consumer thread where assignments change and where the fetch
        # really starts (Faust queues fetch requests to this thread; one may wait out a
        # whole rebalance before it runs).
        self.fetch_generation = self.app.consumer_generation_id
        records = await super()._fetch_records(
            consumer, active_partitions, timeout=timeout, max_records=max_records
        )
        # aiokafka takes the records from its buffers in the step that returns them here.
        self.fetch_seeks = self.seeks
        return records

    async def _seek_wait(
        self, consumer: aiokafka.AIOKafkaConsumer, partitions: Mapping[TP, int]
    ) -> None:
        """Faust's seek of the changelogs for table recovery, counted for ``ChsConsumer``
        (the count and the seeks in one step of this thread's loop)."""
        self._note_seeks(partitions)
        await super()._seek_wait(consumer, partitions)

    def _note_seeks(self, partitions: Iterable[TP]) -> None:
        """One more seek, of ``partitions``, in the current assignment."""
        self.seeks += 1
        generation = self.app.consumer_generation_id
        for tp in partitions:
            self.seeked[tp] = (generation, self.seeks)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        # Typed as Faust's; aiokafka's, like this one, also lists partitions without a commit.
        return cast(Mapping[TP, int], await self.call_thread(self._seek_to_committed))

    async def _seek_to_committed(self) -> dict[TP, int | None]:
        """aiokafka's ``seek_to_committed``, counting the seeks for ``ChsConsumer``, and
        seeking the input partitions without a commit to their start.

        aiokafka seeks each partition as its committed offset arrives, with fetches returning
        in between; here every seek and their count happen in one step of this thread's loop,
        so a fetch's records came out of the buffers either before all of them or after.

        aiokafka leaves a partition without a commit (or committed at 0) where it is. Faust
        and the worker drop records taken before a rebalance ended, counting on this seek to
        read them again: on such a partition they were lost. A worker that took over a
        partition whose first records arrived while its owner was dead lost them all (the
        takeover bench's probes, docs/reliability.md). The changelogs keep aiokafka's rule:
        table recovery places them itself.
        """
        consumer = self._ensure_consumer()
        changelogs = self.app.tables.changelog_topics
        committed = {tp: await consumer.committed(tp) for tp in consumer.assignment()}
        seeked, from_start = [], []
        for tp, offset in committed.items():
            if offset:
                consumer.seek(tp, offset)
            elif tp.topic in changelogs:
                continue
            else:
                from_start.append(tp)
            seeked.append(cast(TP, tp))
        self._note_seeks(seeked)
        if from_start:
            # Its first step, before any await, marks them for a reset: in this same step.
            await consumer.seek_to_beginning(*from_start)
        return cast(dict[TP, int | None], committed)


def _counts(
    seek: tuple[int, int] | None, changelog: bool, current: bool, generation: int, fetched: int
) -> bool:
    """Whether a fetch's records of a partition are handed on (``ChsConsumer``): ``seek`` is
    the partition's last (assignment, seek count), ``current`` whether the fetch began in
    this assignment, ``fetched`` the seek count when its records were taken."""
    if seek is None:
        return changelog and current  # an input partition counts only from its seek
    taken_after_seek = seek[1] <= fetched
    if changelog:
        # From table recovery's last seek of it, even in a fetch begun under an older
        # assignment once this one has seeked it: recovery places it once and reads on.
        return taken_after_seek and (current or seek[0] == generation)
    return taken_after_seek and current and seek[0] == generation


RECOVERY_FETCH_MAX_WAIT = 0.05
"""Seconds a fetch may wait on the broker while a table recovers (``ChsConsumer.recovering``)."""


class ChsConsumer(aiokafka_driver.Consumer):
    """Faust's Kafka consumer, never handing on records fetched under an older assignment.

    Faust stamps fetched records with the generation current when the fetch *returns*. A
    fetch started before a rebalance and returning after it carried old read positions under
    the new stamp: those records passed the stale-message check and were processed ahead of
    the replay from the committed offset. The replay was then either turned away by the
    offset fence as already seen (events lost) or dropped by Faust as behind its read offset
    (the partition's commits stalled for good). Both were caught by test_scale_out.py's
    add-a-worker case. Dropping them is safe: an assignment resets the read positions and
    ends with a seek to the committed offsets, both after the fetch began. What counts is
    when the fetch really started in the consumer thread, not when it was asked for: a
    request queued before a rebalance may run after its seek, and its records are current.

    Nor records of an input partition before it was seeked to its committed offset in the
    current assignment, nor those taken from aiokafka's buffers before that seek. Table
    recovery resumes the stream partitions and only then seeks them: a partition the worker
    kept through the rebalance is fetched in between from where it stopped. Handed on after
    the seek, those records looked like a jump over a gap, the replay from the commit was
    behind the read offset and skipped, and the next commit went over the gap; handed on
    before it, they raised the accounts' offset fences past the replay, which was then turned
    away as already applied (both: events lost on Apache Kafka when a worker was added,
    docs/dev-broker.md). Dropping them is safe: the seek moves the position back to the
    commit, so they are read again.

    A changelog's records count from table recovery's last seek of it, even in a fetch begun
    under an older assignment: recovery seeks each changelog once and reads on, so records
    taken after that seek and dropped were never read again, and the accounts they held
    recovered without them (a state part lost on a takeover, docs/reliability.md).
    """

    def recovering(self, recovering: bool) -> None:
        """While a table recovers, fetches wait at most ``RECOVERY_FETCH_MAX_WAIT`` on the
        broker; then the configured wait again.

        aiokafka keeps one fetch per broker in flight, for the partitions with nothing left
        in its buffers: once those are the idle ones (input partitions without news, Faust's
        leader topic), the broker holds the fetch for the whole wait, and the changelog
        partitions being recovered are fetched again only after it (docs/performance.md).
        """
        configured = cast(ChsApp, self.app).broker_fetch_max_wait
        wait = min(configured, RECOVERY_FETCH_MAX_WAIT) if recovering else configured
        self._thread.fetch_max_wait(wait)

    _thread: ChsConsumerThread

    def changelog_consumer(self) -> aiokafka.AIOKafkaConsumer:
        return self._thread.changelog_consumer()

    def _new_consumer_thread(self) -> ChsConsumerThread:
        return ChsConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _wait_next_records(
        self,
        timeout: float,  # noqa: ASYNC109 - Faust's signature
    ) -> tuple[RecordMap | None, set[TP] | None]:
        records, active_partitions = await super()._wait_next_records(timeout)
        thread = self._thread
        if not records:
            return records, active_partitions
        generation, changelogs = self.app.consumer_generation_id, self.app.tables.changelog_topics
        current = thread.fetch_generation == generation
        fetched, seeked = thread.fetch_seeks, thread.seeked
        return {
            tp: found
            for tp, found in records.items()
            if _counts(seeked.get(tp), tp.topic in changelogs, current, generation, fetched)
        }, active_partitions

    def _new_offset(self, tp: TP) -> int | None:
        """Faust's next offset to commit, with a gap's offsets counted once.

        Faust notes a gap when a partition's offsets jump (compaction, transaction markers)
        and, when committing, adds the gap's offsets to the list of acked ones without
        looking whether they are there already. When a seek to the committed offsets lands
        while records fetched before it are still being handed on (table recovery resumes
        the partitions first), the jump back then forward again is taken for a gap over
        offsets already processed and acked: each then sat twice in the sorted list, and
        Faust, which commits up to the end of the first run of consecutive numbers, advanced
        that partition's commit by one offset per commit interval (test_crash.py stalled on
        it). Faust also chops the gap one short of its end, merging its last offset again
        at the next commit, and leaves the gap's offsets out of its index of acked ones.
        """
        acked = self._acked[tp]
        gap = self._gap[tp]
        if acked and gap:
            merged = set(acked)
            for interval in gap.overlap(0, max(acked)):
                merged.update(range(interval.begin, interval.end))
            gap.chop(0, max(merged) + 1)
            acked[:] = sorted(merged)
            # Indexed like acked offsets, so that a later ack of one is not listed twice.
            self._acked_index[tp].update(merged)
        offset: int | None = super()._new_offset(tp)
        return offset

    def records_waiting(self, tp: TP) -> int | None:
        """Records of ``tp`` not handed on yet, as of its last fetch; None before a fetch told
        where it ends. Right after a seek the read offset is the next one to read, not the
        last one read: it counts one short then."""
        if tp not in self.assignment():
            return 0  # not read here (any more): it holds nothing back
        end = self.highwater(tp)
        if end is None:
            return None
        read = self._read_offset.get(tp)
        return max(0, end - (0 if read is None else read + 1))

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        """Faust's loop handing fetched messages on, with a short way for bulk topics.

        Faust awaits, per message, a race between the conductor's callback and the flow's
        suspension, which costs more than scoring the message (docs/performance.md). A
        message of a topic registered with ``ChsApp.read_in_bulk`` goes straight onto its
        channel's queue instead while the flow is on (otherwise, in a rebalance, it takes
        Faust's way); a changelog record is handed to the callback without the race while
        the flow is on and the tables' changelog queue has room (the race cost a fifth of a
        restart, docs/performance.md). A full queue makes this loop wait for room, so
        fetching stops until the scoring task catches up: plain back-pressure rather than
        Faust's pause and resume of the partition (docs/reliability.md). Read offsets and
        gaps are kept as in Faust's loop. Commits are left to Faust's commit timer
        (``broker_commit_interval``): Faust's loop also commits every ``broker_commit_every``
        acks and stops fetching until that commit is done, delaying every event behind it.
        """
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        acks_enabled_for = self.app.topics.acks_enabled_for
        bulk = cast(ChsApp, self.app).bulk_queues
        flowing = self.app.flow_control.is_active
        changelogs = cast(TableManager, self.app.tables).changelog_queue
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                fetched = getmany(timeout=1.0)
                await self.sleep(0)
                if self.should_stop:
                    continue
                async for tp, message in fetched:
                    since_yield += 1
                    if since_yield > BULK_YIELD_EVERY:
                        # The reader gets the loop: what is queued so far is its batch.
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset, read = message.offset, get_read_offset(tp)
                    if read is not None and offset < read:
                        continue  # behind the read position: already handed on
                    if read and offset - read > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, read + 1, offset)
                    queue = bulk.get(tp.topic)
                    if queue is None and flowing() and not changelogs.full():
                        # A table's changelog record (the only other topic the conductor
                        # reads) with room in the recovery's queue: the callback cannot
                        # block, so no race with a rebalance is needed.
                        await callback(message)
                    elif queue is None or not flowing():
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                    else:
                        message.incref(1)  # as the conductor does for its one channel
                        if queue.full():
                            # Wait for room; a rebalance ends the wait (the message is then
                            # read again from the committed offset, as in Faust's way).
                            await self.wait_first(queue.put(message), self.suspend_flow.wait())
                        else:
                            queue.force_put_nowait(message)
                    set_read_offset(tp, offset)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if not self.transport.app.should_stop:
                raise
        except asyncio.CancelledError:
            if not self.transport.app.should_stop:
                raise
        except Exception:
            # Faust runs this loop in a future nobody awaits: unlogged, its end would pass
            # unnoticed while the worker stops reading.
            log.exception("The consumer's drain loop failed")
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)


BULK_YIELD_EVERY = 100
"""Messages handed on between two yields to the event loop: the most a batch can hold when
the reader keeps up (about 25 ms of scoring), so latency stays low under a backlog."""


class ChsProducer(aiokafka_driver.Producer):
    """Faust's Kafka producer, whose flush waits for the records queued before it, with the
    scoring task's batches beside its buffer (``streams/worker/batch_sender.py``)."""

    _newest: FutureMessage | None = None
    _batches: BatchSender | None = None

    @property
    def batches(self) -> BatchSender:
        """The scoring task's outputs and changelog records, in batches past the buffer."""
        if self._batches is None:
            self._batches = BatchSender(self._running_producer)
        return self._batches

    def _running_producer(self) -> aiokafka.AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("The producer is not started")
        return self._producer

    def send_soon(self, fut: FutureMessage) -> None:
        self._newest = fut
        super().send_soon(fut)

    async def flush(self) -> None:
        """Return once every record queued so far is delivered (or failed); raise if a
        batch failed, so the commit that follows never covers a lost record.

        Faust flushes the producer before each commit, but its buffer's flush waits for
        the buffer to be empty, giving up after 0.1 s without a send. Under a backlog it
        gave up with thousands of records left, so a commit could cover inputs whose table
        changelog records were unsent (lost in a crash). Under a steady load it waited for
        a buffer that never empties: commits took up to 5 s, the drain loop (which commits
        every ``broker_commit_every`` acks) waited with them, and an alert's p99 latency
        passed a second (bench/alert_latency.py). The buffer hands records to aiokafka one
        at a time, in order, so once the newest queued so far is delivered every earlier
        one is in aiokafka's hands, and aiokafka's flush waits for those (and for the
        batches, handed to it before their inputs are acknowledged).
        """
        newest = self._newest
        if newest is not None and not newest.done():
            await asyncio.wait([newest])
        if self._producer is not None:
            await self._producer.flush()
        for transaction_producer in self._transaction_producers.values():
            await transaction_producer.flush()
        if self._batches is not None:
            self._batches.raise_failure()


def batch_sender(app: AppT) -> BatchSender:
    """The app's batch sender (its producer's)."""
    return cast(ChsProducer, app.producer).batches


class RawMessageTopic(faust.Topic):
    """A topic whose channel delivers each raw ``Message`` (no ``Event``, no decoding: the
    scoring task parses the bytes itself, ``streams.pipeline.account_step``).

    Faust's ``Topic._compile_decode`` sets ``decode`` per instance, to one that builds an
    ``Event`` from the deserialized key and value; this class keeps its own ``decode``.
    Proved by every test that scores events through the worker (tests/integration/
    test_pipeline.py).
    """

    def _compile_decode(self) -> None:
        """Faust sets ``decode`` per instance here; the class's own is kept instead."""

    async def decode(self, message: Message, *, propagate: bool = False) -> Any:
        return message


KT = TypeVar("KT")
VT = TypeVar("VT")


class CodecTable(faust.Table[KT, VT]):
    """A table with raw bytes keys and values in the codec named by ``value_codec``.

    Faust's ``Table._serializer_from_type`` derives the codecs from ``key_type`` and
    ``value_type`` (Faust Records only) at construction, when it also declares the changelog
    topic; naming the codec here is the one place that reaches the store, the changelog writes
    and the recovery reads alike. Proved by tests/integration/faults/test_crash.py, which reads the
    changelog back as the codec writes it, and by every restart test's recovery.
    """

    value_codec: str

    def _serializer_from_type(self, typ: object) -> str:
        return "raw" if typ is bytes else self.value_codec

    def apply_changelog_records(
        self, partition: int, records: Iterable[ConsumerRecord[bytes, bytes]]
    ) -> None:
        """Changelog records read by ``ChsRecovery`` into the memory store, as its own
        ``apply_changelog_batch`` does with Faust's events: raw keys, values through the
        codec, None deleting, each key's partition noted (the store drops the keys of
        partitions no longer active when recovery completes)."""
        store = cast(MemoryStore[KT, VT], self.data)
        data, key_partition = store.data, store._key_partition
        loads = codecs.get_codec(self.value_codec).loads
        for record in records:
            key = record.key
            if record.value is None:
                data.pop(key, None)
                key_partition.pop(key, None)
            else:
                data[key] = loads(record.value)
                key_partition[key] = partition


class ChsRecovery(Recovery):
    """Faust's table recovery, with the active changelog partitions read straight from the
    broker by a consumer of their own (``read_changelogs``) before Faust's loop starts.

    Faust's loop costs about 100 us per record (a task per record to wait on its queue,
    each record through the worker consumer's queues): 12 s of a 100,000-account restart
    whose changelog a plain consumer reads in 0.6 s (docs/performance.md). The override
    reads from the offsets Faust starts at to its highwaters and moves those offsets on as
    it goes; Faust finds nothing left and skips its loop. Whatever the direct read did not
    get to (cut short by Faust's request timeout, or a rebalance) Faust reads on from the
    offsets it was told, as before. Standby partitions keep Faust's loop.
    Proved by every restart and takeover test's recovery (test_crash.py, test_scale_out.py,
    bench/recovery.py) and tests/unit/streams/worker/test_changelog_reader.py.
    """

    async def _build_offsets(
        self, consumer: ConsumerT, tps: set[TP], destination: Counter[TP], title: str
    ) -> None:
        await super()._build_offsets(consumer, tps, destination, title)
        if title != "active":
            return
        highwaters = self.active_highwaters
        ranges = {
            aiokafka.TopicPartition(tp.topic, tp.partition): (destination[tp] + 1, highwaters[tp])
            for tp in tps
            if isinstance(self.tp_to_table.get(tp), CodecTable) and destination[tp] < highwaters[tp]
        }
        if not ranges:
            return

        def apply(
            tp: aiokafka.TopicPartition, records: Sequence[ConsumerRecord[bytes, bytes]]
        ) -> None:
            table = cast(CodecTable[Any, Any], self.tp_to_table[TP(tp.topic, tp.partition)])
            table.apply_changelog_records(tp.partition, records)

        def read_to(tp: aiokafka.TopicPartition, offset: int) -> None:
            destination[TP(tp.topic, tp.partition)] = offset

        began = time.monotonic()
        reader = cast(ChsConsumer, consumer).changelog_consumer()
        try:
            await reader.start()
            await read_changelogs(reader, ranges, apply, read_to)
        except Exception as error:  # Faust's loop reads on from the offsets told
            log.warning(
                "Reading the changelogs directly failed (%s: %s); Faust's recovery reads on",
                type(error).__name__,
                error,
            )
        else:
            log.info(
                "Read %d changelog partitions directly in %.1f s",
                len(ranges),
                time.monotonic() - began,
            )
        finally:
            await reader.stop()


class ChsTableManager(TableManager):
    """Faust's table manager with ``ChsRecovery`` as its recovery service."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = ChsRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


class ChsTransport(aiokafka_driver.Transport):
    Consumer = ChsConsumer
    Producer = ChsProducer


class ChsApp(faust.App):
    """faust.App with fixes to faust-streaming's (0.15) rebalance handling and commits.

    Without them a worker (re)started or rebalanced with a backlog loses messages or stalls
    on them (docs/dev-broker.md, docs/reliability.md):

    1. ``consumer_generation_id`` changes on every partition assignment. Faust stamps each
    fetched message with it and drops work from an older generation: stale messages, and a
    table recovery that a newer rebalance overtook. It takes the number from the group
    coordinator, which a broker may repeat (the dev broker does), and then resumes a stale
    recovery in the middle of the next rebalance. Faust only compares these numbers with
    each other, so a local count of assignments keeps its meaning on every broker.

    2. Stream buffers are not emptied when the flow resumes (``FlowControlQueue``).

    3. Records fetched under an older assignment are dropped (``ChsConsumer``).

    4. A commit waits until every record queued before it is sent (``ChsProducer``).

    5. A gap's offsets acked already are counted once when committing (``ChsConsumer``).

    6. An input partition's records count only from its seek to the committed offset in the
    current assignment, and input partitions without a commit are read from their start
    (``ChsConsumerThread``, ``ChsConsumer``).
    """

    _assignments = 0

    def __init__(self, *args: Any, broker_fetch_max_wait: float = 1.5, **kwargs: Any) -> None:
        """``broker_fetch_max_wait``: seconds a worker's fetch may wait on the broker for new
        records (Faust fixes it at 1.5 s; ``CHS_BROKER_FETCH_MAX_WAIT``)."""
        super().__init__(*args, TableManager=ChsTableManager, **kwargs)
        self.broker_fetch_max_wait = broker_fetch_max_wait
        self.bulk_queues: dict[str, ThrowableQueue[Message]] = {}
        """Topic name -> the queue of the one channel reading it raw (``read_in_bulk``)."""
        # The table recovery's own queue of changelog records keeps Faust's clearing: a
        # standby's records still queued when its partition turns active must not be
        # applied before the replay from the start (the replay would skip every lower
        # offset). Faust creates the queue lazily; made here, with faust.App's factory.
        self.tables._changelog_queue = faust.App.FlowControlQueue(  # type: ignore[attr-defined]
            self, maxsize=self.conf.stream_buffer_maxsize, clear_on_resume=True
        )

    def read_in_bulk(self, topic: RawMessageTopic) -> ThrowableQueue[Message]:
        """Subscribe to ``topic`` now (before the worker joins the group) and let the consumer
        put its raw messages straight onto the returned queue (``ChsConsumer._drain_messages``):
        the queue must be their only reader."""
        channel = topic.__aiter__()
        queue = cast(ThrowableQueue[Message], channel.queue)
        for name in topic.topics:
            self.bulk_queues[name] = queue
        return queue

    def scorable(self, batch: list[Message], owned: frozenset[int]) -> tuple[list[Message], int]:
        """The messages of ``batch`` that may be scored now, tracked for acknowledgement
        (``ack``), and how many were of a partition no longer owned."""
        consumer = self.consumer
        generation = self.consumer_generation_id
        flowing = self.flowing
        kept, moved = [], 0
        for message in batch:
            if not flowing or message.generation_id != generation:
                # Fetched before a rebalance: read again from the last commit (as Faust's own
                # streams drop them).
                continue
            if message.partition not in owned:
                # Defence in depth: a partition now another worker's must not be written.
                moved += 1
                continue
            consumer.track_message(message)
            kept.append(message)
        return kept, moved

    @property
    def flowing(self) -> bool:
        """False from the start of a rebalance (Faust then waits for the inputs being
        handled to be acknowledged) until its end."""
        return bool(self.flow_control.is_active())

    def ack(self, message: Message) -> None:
        """``message`` handled: its offset may be committed once those before it are."""
        message.ack(self.consumer)

    def ready_checks(self) -> dict[str, bool]:
        """Whether the worker has joined its group and recovered its tables."""
        recovery = self.tables.recovery  # type: ignore[attr-defined]
        return {
            "joined_group": self.consumer_generation_id > 0 and not self.rebalancing,
            "recovery_done": recovery.completed.is_set(),
        }

    @property
    def consumer_generation_id(self) -> int:
        return self._assignments

    @consumer_generation_id.setter
    def consumer_generation_id(self, generation: int) -> None:
        # Faust's aiokafka driver sets this once per assignment, then awaits the handler below.
        self._assignments += 1

    async def _on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        # The driver passes the coordinator's number on; table recovery compares it with ours.
        await super()._on_partitions_assigned(assigned, self.consumer_generation_id)

    def _new_transport(self) -> TransportT:
        return ChsTransport(self.conf.broker_consumer, self)

    def FlowControlQueue(
        self, maxsize: int | None = None, *, clear_on_resume: bool = False
    ) -> ThrowableQueue[Any]:
        # (Stream and channel buffers; the changelog queue is made in __init__.)
        # Faust asks for every stream buffer to be emptied whenever the flow resumes, so that
        # nothing fetched before a rebalance is processed after it. But table recovery resumes
        # the stream partitions and seeks them to the committed offsets *before* it resumes
        # the flow: messages fetched in between were emptied out unacked, with the read offset
        # already past them, and the group's commits stalled behind them (or faust counted
        # them as a gap and committed past them: lost). Kept instead, they are processed;
        # stale ones are dropped by the generation check above; anything read twice is
        # absorbed by the state's offset fence.
        return super().FlowControlQueue(maxsize, clear_on_resume=False)


GC_YOUNG_THRESHOLD = 50_000
"""Allocations between two collections of the youngest generation (Python's default: 700):
an event's few hundred short-lived objects are freed by reference counting, and the default
promoted them into generations whose collections walk the whole table (docs/performance.md)."""


class ChsWorker(faust.Worker):
    """faust.Worker that leaves the root logger at the configured level, and collects
    garbage less often.

    Faust's terminal spinner puts the root logger at DEBUG (it ticks on every record) and
    filters in the handlers, so every ``log.debug`` of aiokafka and Faust on the per-message
    path would build a LogRecord only to drop it (docs/performance.md).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        logger.setLevel(level)
