"""A small aiokafka producer of events, keyed by account_id, for the demo and the tests."""

from __future__ import annotations

from types import TracebackType

from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from scoring.events import Event
from streams.settings import Settings
from streams.worker.connections import kafka_options


class EventProducer:
    """Sends events to the topic of their kind. Use as ``async with EventProducer(s) as p``."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer = AIOKafkaProducer(
            **kafka_options(settings),
            linger_ms=5,
            max_batch_size=settings.producer_max_batch_size,
            acks="all",
        )

    async def __aenter__(self) -> EventProducer:
        await self._producer.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._producer.stop()

    async def send(self, event: Event) -> None:
        """Queue one event on its kind's topic; it is on the broker after ``flush``."""
        await self.send_model(self._settings.topic_for(event.kind), event.account_id, event)

    async def send_model(self, topic: str, account_id: str, value: BaseModel) -> None:
        """Queue any input model (attributes, overrides) keyed by its account."""
        body = value.model_dump_json(exclude={"kind"}, exclude_none=True).encode()
        await self.send_raw(topic, account_id.encode(), body)

    async def send_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Queue arbitrary bytes, e.g. a malformed message in a test."""
        await self._producer.send(topic, value=value, key=key)

    async def send_tombstone(
        self, topic: str, account_id: str, headers: list[tuple[str, bytes]]
    ) -> None:
        """Queue a tombstone (no value) keyed by the account, e.g. its erasure."""
        await self._producer.send(topic, value=None, key=account_id.encode(), headers=headers)

    async def flush(self) -> None:
        await self._producer.flush()
