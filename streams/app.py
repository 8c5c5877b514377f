"""The Faust app: topics, the account table and the agents. Thin glue around the core.

Path of one event: event topic -> ``score_events`` (validate, fold, rescore) -> the table
(changelog) and, when the score moved, ``chs.scores`` -> ``write_score_view`` -> Redis.
Invalid messages go to ``chs.events.dlq`` with their original key and bytes and the reason
in headers.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import faust
from faust.serializers import codecs

from scoring.model import ScoringModel
from scoring.score import ScoreUpdate
from scoring.state import AccountState, SourcePosition
from streams.processing import Applied, Rejected, process_message
from streams.redis_view import ScoreView
from streams.settings import Settings

log = logging.getLogger(__name__)

SCORE_VIEW_BATCH = 500
SCORE_VIEW_WITHIN = 0.2
"""Seconds a partial batch of score updates waits before it is written to Redis."""


class AccountStateCodec(codecs.Codec):
    """Table values are ``AccountState`` in memory and compact JSON in the changelog."""

    def _dumps(self, obj: Any) -> bytes:
        assert isinstance(obj, AccountState)
        return obj.model_dump_json(exclude_defaults=True).encode()

    def _loads(self, s: bytes) -> Any:
        return AccountState.model_validate_json(s)


ACCOUNT_STATE_CODEC = "chs_account_state"
codecs.register(ACCOUNT_STATE_CODEC, AccountStateCodec())


class AccountTable(faust.Table[bytes, AccountState]):
    """Account id (raw bytes) -> AccountState; our codec in the changelog and on recovery.

    Faust derives a table's codecs from ``key_type``/``value_type`` (Faust Records only) at
    construction, when it also declares the changelog topic; naming our codec here is the one
    place that reaches the store, the changelog writes and the recovery reads alike.
    """

    def _serializer_from_type(self, typ: object) -> str:
        return "raw" if typ is bytes else ACCOUNT_STATE_CODEC


def dlq_headers(reason_code: str, reason: str, source: SourcePosition) -> list[tuple[str, bytes]]:
    return [
        ("chs-reason-code", reason_code.encode()),
        ("chs-reason", reason.encode()),
        ("chs-source-topic", source.topic.encode()),
        ("chs-source-partition", str(source.partition).encode()),
        ("chs-source-offset", str(source.offset).encode()),
    ]


def create_app(settings: Settings, model: ScoringModel) -> faust.App:
    app = faust.App(
        settings.app_id,
        broker=settings.broker_url,
        store="memory://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.broker_session_timeout,
        broker_rebalance_timeout=settings.broker_session_timeout,
        broker_heartbeat_interval=settings.broker_heartbeat_interval,
        producer_max_batch_size=settings.producer_max_batch_size,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
    )
    kinds = settings.event_topics

    def raw_topic(*names: str) -> faust.TopicT:
        return app.topic(
            *names,
            partitions=settings.topic_partitions,
            key_serializer="raw",
            value_serializer="raw",
        )

    events_topic = raw_topic(*kinds)
    scores_topic = raw_topic(settings.topic_scores)
    dlq_topic = raw_topic(settings.topic_dlq)
    accounts = AccountTable(
        app,
        name="accounts",
        default=None,
        partitions=settings.topic_partitions,
        key_type=bytes,
        beacon=app.tables.beacon,
    )
    app.tables.add(accounts)

    @app.agent(events_topic)
    async def score_events(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            message = event.message
            source = SourcePosition(message.topic, message.partition, message.offset)
            outcome = process_message(
                accounts,
                model,
                kinds.get(message.topic),
                event.key,
                event.value,
                source,
                datetime.now(UTC),
            )
            if isinstance(outcome, Rejected):
                error = outcome.error
                log.warning(
                    "Rejected %s/%d@%d: %s", source.topic, source.partition, source.offset, error
                )
                await dlq_topic.send(
                    key=event.key,
                    value=event.value,
                    headers=dlq_headers(error.code.value, error.reason, source),
                )
            elif isinstance(outcome, Applied) and outcome.update is not None:
                update = outcome.update
                await scores_topic.send(key=event.key, value=update.model_dump_json().encode())

    view = ScoreView.from_url(settings.redis_url)

    @app.agent(scores_topic)
    async def write_score_view(stream: faust.StreamT[bytes]) -> None:
        async for batch in stream.take(SCORE_VIEW_BATCH, within=SCORE_VIEW_WITHIN):
            await view.write([ScoreUpdate.model_validate_json(value) for value in batch])

    return app
