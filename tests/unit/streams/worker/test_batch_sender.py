from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import murmur2

from streams.worker.batch_sender import BatchSender


class FakeBatch:
    """aiokafka's ``BatchBuilder`` as the sender uses it: full after ``capacity`` records."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = []

    def append(
        self, *, timestamp: None, key: bytes | None, value: bytes | None, headers: Any
    ) -> object | None:
        if len(self.records) >= self.capacity:
            return None
        self.records.append((key, value, headers))
        return object()


class FakeProducer:
    """The aiokafka producer's batch API; each batch's delivery is settled by the test."""

    def __init__(self, partitions: int = 4, capacity: int = 100) -> None:
        self.partitions, self.capacity = partitions, capacity
        self.sent: list[tuple[str, int, FakeBatch, asyncio.Future[object]]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.capacity)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> Any:
        await asyncio.sleep(0)  # aiokafka may wait here for the partition's last batch
        delivery = asyncio.get_running_loop().create_future()
        self.sent.append((topic, partition, batch, delivery))
        return delivery

    def deliver_all(self) -> None:
        for *_, delivery in self.sent:
            if not delivery.done():
                delivery.set_result("metadata")


def sender_over(producer: FakeProducer) -> BatchSender:
    return BatchSender(lambda: cast(AIOKafkaProducer, producer))


def kafka_partition(key: bytes, partitions: int) -> int:
    """The Java client's default partitioner (what Faust's producer used before)."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


async def test_records_go_out_as_one_batch_per_partition_in_the_order_added() -> None:
    producer = FakeProducer(partitions=4)
    sender = sender_over(producer)
    for i in range(40):
        sender.add("chs.scores", f"acct-{i % 10}".encode(), f"v{i}".encode())
    sender.add("changelog", b"acct-1", b"state", partition=2)
    assert producer.sent == []  # nothing goes before send
    assert sender.queued == 41
    await sender.send()
    assert sender.queued == 0
    scores = [(p, b) for topic, p, b, _ in producer.sent if topic == "chs.scores"]
    assert len(scores) == len({p for p, _ in scores})  # one batch per partition
    for partition, batch in scores:
        keys = {key for key, _, _ in batch.records}
        assert all(kafka_partition(cast(bytes, k), 4) == partition for k in keys)
        values = [int(cast(bytes, v)[1:]) for _, v, _ in batch.records]
        assert values == sorted(values)  # the order added, per partition
    assert sum(len(b.records) for _, b in scores) == 40
    assert [(t, p) for t, p, _, _ in producer.sent if t == "changelog"] == [("changelog", 2)]


async def test_a_full_batch_is_sent_and_the_next_one_started() -> None:
    producer = FakeProducer(partitions=1, capacity=3)
    sender = sender_over(producer)
    for i in range(7):
        sender.add("t", None, f"{i}".encode(), partition=0)
    await sender.send()
    assert [[v for _, v, _ in b.records] for _, _, b, _ in producer.sent] == [
        [b"0", b"1", b"2"],
        [b"3", b"4", b"5"],
        [b"6"],
    ]


async def test_a_delivery_is_done_once_every_batch_of_its_round_is_delivered() -> None:
    producer = FakeProducer(partitions=1, capacity=2)
    sender = sender_over(producer)
    first = sender.add("t", b"a", b"1", headers=[("chs-erased", b"1")])
    sender.add("t", b"a", b"2")
    sender.add("t", b"a", b"3")
    await sender.send()
    producer.sent[0][3].set_result("metadata")
    await asyncio.sleep(0)
    assert not first.done()  # the round's second batch is not delivered yet
    producer.deliver_all()
    await asyncio.wait_for(first, 1)
    assert producer.sent[0][2].records[0][2] == [("chs-erased", b"1")]
    sender.raise_failure()  # nothing failed


async def test_a_failed_batch_fails_its_round_and_the_next_flush() -> None:
    producer = FakeProducer(partitions=2)
    sender = sender_over(producer)
    delivery = sender.add("t", b"a", b"1")
    await sender.send()
    producer.sent[0][3].set_exception(MessageSizeTooLargeError())
    with pytest.raises(MessageSizeTooLargeError):
        await asyncio.wait_for(delivery, 1)
    with pytest.raises(MessageSizeTooLargeError):
        sender.raise_failure()


async def test_a_failure_nobody_awaits_is_still_kept_for_the_flush() -> None:
    producer = FakeProducer(partitions=1)
    sender = sender_over(producer)
    sender.add("changelog", b"a", b"state", partition=0)  # a state record: nobody awaits it
    await sender.send()
    producer.sent[0][3].set_exception(MessageSizeTooLargeError())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert isinstance(sender.failure, MessageSizeTooLargeError)


async def test_two_sends_at_once_keep_a_partition_in_order() -> None:
    producer = FakeProducer(partitions=1, capacity=1)
    sender = sender_over(producer)
    for i in range(3):
        sender.add("t", None, f"a{i}".encode(), partition=0)
    first = asyncio.create_task(sender.send())
    await asyncio.sleep(0)  # the first send is waiting inside send_batch
    for i in range(3):
        sender.add("t", None, f"b{i}".encode(), partition=0)
    await asyncio.gather(first, sender.send())
    values = [b.records[0][1] for _, _, b, _ in producer.sent]
    assert values == [b"a0", b"a1", b"a2", b"b0", b"b1", b"b2"]
