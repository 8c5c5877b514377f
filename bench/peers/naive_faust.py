"""The naive Faust baseline: per account, a count of events and the newest event time, with
one table write per event. Run as ``python -m bench.peers.naive_faust worker`` with the same
``CHS_*`` environment as the worker (broker, app id as the group, topics, dev settings).
"""

from __future__ import annotations

import json

import faust

from streams.settings import Settings

settings = Settings()
app = faust.App(
    f"{settings.app_id}",
    broker=settings.broker_url,
    store="memory://",
    datadir=str(settings.data_dir),
    topic_partitions=settings.topic_partitions,
    consumer_auto_offset_reset="earliest",
    broker_session_timeout=settings.broker_session_timeout,
    broker_rebalance_timeout=settings.broker_rebalance_timeout,
    broker_heartbeat_interval=settings.broker_heartbeat_interval,
    producer_max_batch_size=settings.producer_max_batch_size,
    web_port=settings.web_port,
    web_bind="127.0.0.1",
    web_host="127.0.0.1",
)
events = app.topic(*settings.event_topics, key_serializer="raw", value_serializer="raw")
per_account = app.Table("per-account", default=list, partitions=settings.topic_partitions)


@app.agent(events)
async def aggregate(stream: faust.StreamT[bytes]) -> None:
    async for event in stream.events():
        body = json.loads(event.value)
        count, newest = per_account[event.key] or [0, ""]
        per_account[event.key] = [count + 1, max(newest, body["occurred_at"])]


if __name__ == "__main__":
    app.main()
