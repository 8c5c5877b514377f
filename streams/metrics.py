"""The worker's Prometheus metrics (prometheus-client, the default registry, served at
/metrics). Names carry the ``chs_`` prefix and base units; no label is unbounded (no account
ids). Metrics of the alerts package live beside their code and share the registry.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)

EVENTS_CONSUMED = Counter(
    "chs_events_consumed_total", "Input messages read by the scoring task, by kind", ["kind"]
)
EVENTS_REJECTED = Counter(
    "chs_events_rejected_total",
    "Input messages sent to the dead-letter topic, by reason",
    ["reason"],
)
EVENT_LAG = Histogram(
    "chs_event_lag_seconds",
    "From an event's occurred_at to its score being computed",
    buckets=LATENCY_BUCKETS,
)
BATCH_TIME = Histogram(
    "chs_batch_handling_seconds",
    "Time to fold, rescore and publish one batch of input messages",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BATCH_INPUTS = Histogram(
    "chs_batch_inputs",
    "Input messages per batch: one under light load, up to CHS_INPUT_BATCH_MAX when behind",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
SCORE_UPDATES = Counter("chs_score_updates_total", "ScoreUpdates published")
ACCOUNTS_BY_BAND = Gauge(
    "chs_accounts", "Accounts of this worker's partitions, by current band", ["band"]
)
ACCOUNTS_HELD = Gauge("chs_accounts_held", "Accounts in this worker's table partitions")
INPUTS_SKIPPED = Counter(
    "chs_inputs_skipped_total",
    "Valid inputs that changed nothing: redelivered (the offset fence), duplicate (same id), "
    "outdated (older attributes), no_account (tick for an unknown account), moved (its "
    "partition was handed to another worker)",
    ["reason"],
)
DLQ_RECORDS = Counter("chs_dlq_records_total", "Records written to a dead-letter topic", ["dlq"])
CONSUMER_LAG = Gauge(
    "chs_consumer_lag_messages",
    "Messages behind the end of each input partition, after the last one read",
    ["topic", "partition"],
)
LAST_EVENT = Gauge(
    "chs_last_event_processed_timestamp_seconds", "Wall-clock time the last input was handled"
)
REBALANCES = Counter("chs_rebalances_total", "Partition assignments completed (after recovery)")
TIMER_TICKS = Counter(
    "chs_reevaluations_scheduled_total", "Accounts sent for re-evaluation by the timer"
)
ALERTS_RAISED = Counter(
    "chs_alerts_total", "Alerts raised, by rule and severity", ["rule", "severity"]
)
PEER_BOOKS_SHIPPED = Counter(
    "chs_peer_books_shipped_total",
    "Partitions' peer sketches sent to the peers topic (at most one per partition per interval)",
)
