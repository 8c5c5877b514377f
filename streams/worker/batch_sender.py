"""Records to the broker as multi-record batches per topic-partition (aiokafka's batch API),
bypassing Faust's producer buffer: no awaited send, no ``FutureMessage`` per record.

``add`` queues a record without waiting; ``send`` hands everything queued so far to the
producer, one batch per topic-partition (more when a batch fills), in the order added. Once
``send`` returns the producer holds every record, so its ``flush`` (before each commit,
``ChsProducer.flush``) waits for them. A record's delivery is its send round's: done once
every batch of its topic in that round is delivered, failed if any was not. A failed round
is also kept in ``failure``: the next flush raises it, so no commit covers a lost record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

Headers = list[tuple[str, bytes]]


@dataclass(slots=True)
class _Round:
    """The records of one topic queued since the last ``send``, and their delivery."""

    delivered: asyncio.Future[None]
    records: list[tuple[bytes | None, bytes | None, Headers, int | None]] = field(
        default_factory=list
    )


class BatchSender:
    """Batches per topic-partition through ``producer()`` (the running aiokafka producer)."""

    def __init__(self, producer: Callable[[], AIOKafkaProducer]) -> None:
        self._producer = producer
        self._queued: dict[str, _Round] = {}
        self._sending = asyncio.Lock()
        self._partitioner = DefaultPartitioner()
        self.failure: BaseException | None = None
        """The first delivery that failed, if any: the worker must stop."""

    def add(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        partition: int | None = None,
        headers: Headers | None = None,
    ) -> asyncio.Future[None]:
        """Queue a record (on ``partition``, or the producer's partition for ``key``); its
        delivery is returned. Nothing goes to the broker before ``send``."""
        queued = self._queued.get(topic)
        if queued is None:
            queued = self._queued[topic] = _Round(asyncio.get_running_loop().create_future())
        queued.records.append((key, value, headers or [], partition))
        return queued.delivered

    @property
    def queued(self) -> int:
        """Records added and not handed to the producer yet."""
        return sum(len(queued.records) for queued in self._queued.values())

    async def send(self) -> None:
        """Hand every queued record to the producer, as batches per topic-partition in the
        order added. Waits while the producer still holds an earlier batch of a partition
        (aiokafka keeps one per partition): the back-pressure."""
        async with self._sending:  # two rounds of one partition must not interleave
            queued, self._queued = self._queued, {}
            for topic, round_ in queued.items():
                deliveries = await self._send_round(topic, round_)
                gathered = asyncio.gather(*deliveries)
                gathered.add_done_callback(partial(self._delivered, round_))

    async def _send_round(self, topic: str, round_: _Round) -> list[asyncio.Future[Any]]:
        producer = self._producer()
        partitions = sorted(await producer.partitions_for(topic))
        open_batches: dict[int, Any] = {}
        deliveries: list[asyncio.Future[Any]] = []
        for key, value, headers, partition in round_.records:
            if partition is None:
                partition = self._partitioner(key, partitions, partitions)
            batch = open_batches.get(partition)
            if batch is not None and _appended(batch, key, value, headers):
                continue
            if batch is not None:  # full: send it, start the next
                deliveries.append(await producer.send_batch(batch, topic, partition=partition))
            batch = open_batches[partition] = producer.create_batch()
            _appended(
                batch, key, value, headers
            )  # a batch takes its first record whatever its size
        for partition, batch in open_batches.items():
            deliveries.append(await producer.send_batch(batch, topic, partition=partition))
        return deliveries

    def _delivered(self, round_: _Round, gathered: asyncio.Future[list[Any]]) -> None:
        error = gathered.exception() if not gathered.cancelled() else asyncio.CancelledError()
        if error is None:
            round_.delivered.set_result(None)
            return
        if self.failure is None:
            self.failure = error
        round_.delivered.set_exception(error)
        round_.delivered.exception()  # the failure is kept above; unawaited rounds stay quiet

    def raise_failure(self) -> None:
        """Raise the first failed delivery, if any."""
        if self.failure is not None:
            raise self.failure


def _appended(batch: Any, key: bytes | None, value: bytes | None, headers: Headers) -> bool:
    return batch.append(timestamp=None, key=key, value=value, headers=headers) is not None
