"""Reading changelog partitions straight from the broker: a table recovery without Faust's
per-record loop (``ChsRecovery`` in ``streams/worker/faust_overrides.py``; docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

READ_MAX_RECORDS = 10_000
"""Records handed on per fetch: applied, then the offsets read so far are noted."""


async def read_changelogs(
    consumer: AIOKafkaConsumer,
    ranges: Mapping[TopicPartition, tuple[int, int]],
    apply: Callable[[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]], None],
    read_to: Callable[[TopicPartition, int], None],
) -> None:
    """Read each partition from the first to the last offset of its range (both included)
    with ``consumer`` (started, in no group), handing its records on to ``apply`` in offset
    order and then telling ``read_to`` the offset every record up to which was applied.

    Both happen in one step, with no await between, so a reader cancelled at any await
    (a timeout, another rebalance) leaves ``read_to``'s last word true. Records past the
    range's end are not applied: whoever reads on does so from the last offset told.
    """
    left = dict(ranges)
    if not left:
        return
    consumer.assign(list(left))
    for tp, (first, _) in left.items():
        consumer.seek(tp, first)
    while left:
        fetched = await consumer.getmany(*left, timeout_ms=1_000, max_records=READ_MAX_RECORDS)
        for tp, records in fetched.items():
            last = left[tp][1]
            if records[-1].offset > last:
                records = [r for r in records if r.offset <= last]
            apply(tp, records)
            if records:
                read_to(tp, records[-1].offset)
        for tp in list(left):
            # Past compacted offsets and transaction markers, the position says what was read.
            position = await consumer.position(tp)
            last = left[tp][1]
            if position > last:
                read_to(tp, last)
                consumer.pause(tp)
                del left[tp]
