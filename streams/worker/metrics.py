"""The worker's Prometheus metrics (prometheus-client, the default registry, served at
/metrics). Names carry the ``chs_`` prefix and base units; no label is unbounded (no account
ids). Metrics of the alerts package live beside their code and share the registry.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from alerts.alert import Alert
from scoring.audit_report import AuditReport
from scoring.update import ScoreUpdate

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
WINDOW_TIME = Histogram(
    "chs_window_handling_seconds",
    "Time to fold, rescore and publish the input messages of one window",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WINDOW_INPUTS = Histogram(
    "chs_window_inputs",
    "Input messages per window: one batch under light load, up to CHS_WINDOW_MAX_INPUTS "
    "when behind",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000),
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
    "partition was handed to another worker), churned (its account churned), erased (older "
    "than its account's erasure)",
    ["reason"],
)
ACCOUNTS_ERASED = Counter(
    "chs_accounts_erased_total", "Accounts erased by a tombstone on the accounts topic"
)
CHILD_REPORTS = Counter(
    "chs_child_reports_total", "Children's reports sent to their parents' roll-ups"
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
PARTS_NOT_RECOVERED = Counter(
    "chs_recovery_parts_missing_total",
    "State parts named by an account's input record but not read back by a recovery",
)
TIMER_TICKS = Counter(
    "chs_reevaluations_scheduled_total", "Due accounts re-evaluated (at the end of a window)"
)
ALERTS_RAISED = Counter(
    "chs_alerts_total", "Alerts raised, by rule and severity", ["rule", "severity"]
)
PEER_BOOKS_SHIPPED = Counter(
    "chs_peer_books_shipped_total",
    "Partitions' peer sketches sent to the peers topic (at most one per partition per interval)",
)
OUTCOMES = Counter(
    "chs_outcomes_total", "Outcomes applied (churned, renewed, downgraded, expanded)", ["outcome"]
)
AUDIT_RECORDS_SHIPPED = Counter(
    "chs_audit_records_shipped_total",
    "Records of this worker's audit books sent to the audit topic (changed days and results)",
)
MODEL_AUC = Gauge(
    "chs_model_auc",
    "Live audit, whole base: chance that a churner's score lead_days before its churn was "
    "below a survivor's (0.5 = a coin); absent until a churner is judged",
    ["lead_days", "model", "role"],
)
MODEL_LIFT = Gauge(
    "chs_model_lift",
    "Live audit, whole base: churn rate of the lowest-scored tenth lead_days before, against "
    "the average (1 = no better than chance)",
    ["lead_days", "model", "role"],
)
MODEL_CHURNERS = Gauge(
    "chs_model_churners",
    "Live audit: churners behind chs_model_auc and chs_model_lift (at least 30 to trust them)",
    ["lead_days", "model", "role"],
)


def show_audit(report: AuditReport) -> None:
    """The audit's figures as gauges (every worker shows the whole base's)."""
    for gauge in (MODEL_AUC, MODEL_LIFT, MODEL_CHURNERS):
        gauge.clear()  # a model no longer evaluated leaves no stale series
    for model in report.models:
        for lead in model.leads:
            labels = (str(lead.lead_days), model.model_version, model.role)
            MODEL_CHURNERS.labels(*labels).set(lead.churners)
            if lead.auc is not None and lead.lift is not None:
                MODEL_AUC.labels(*labels).set(lead.auc)
                MODEL_LIFT.labels(*labels).set(lead.lift)


class PrometheusMetrics:
    """The scoring step's counts as the metrics above
    (``streams.pipeline.window_step.StepMetrics``)."""

    def consumed(self, role: str) -> None:
        EVENTS_CONSUMED.labels(role).inc()

    def rejected(self, code: str) -> None:
        EVENTS_REJECTED.labels(code).inc()
        DLQ_RECORDS.labels("events").inc()

    def skipped(self, reason: str) -> None:
        INPUTS_SKIPPED.labels(reason).inc()

    def event_lag(self, seconds: float) -> None:
        EVENT_LAG.observe(seconds)

    def outcome(self, outcome: str) -> None:
        OUTCOMES.labels(outcome).inc()

    def published(self, update: ScoreUpdate) -> None:
        """Keep the accounts-by-band gauges in step with published scores."""
        if update.previous_band is None:
            ACCOUNTS_HELD.inc()
        elif update.previous_band != update.band:
            ACCOUNTS_BY_BAND.labels(update.previous_band).dec()
        if update.previous_band != update.band:
            ACCOUNTS_BY_BAND.labels(update.band).inc()
        SCORE_UPDATES.inc()

    def erased(self) -> None:
        ACCOUNTS_ERASED.inc()

    def reported(self) -> None:
        CHILD_REPORTS.inc()

    def withdrawn(self, band: str | None) -> None:
        """A churned or erased account leaves the accounts-by-band gauges."""
        if band is not None:
            ACCOUNTS_BY_BAND.labels(band).dec()
            ACCOUNTS_HELD.dec()

    def alerted(self, alert: Alert) -> None:
        ALERTS_RAISED.labels(alert.rule, alert.severity.value).inc()

    def consumer_lag(self, topic: str, partition: int, behind: int) -> None:
        CONSUMER_LAG.labels(topic, str(partition)).set(behind)

    def ticked(self) -> None:
        TIMER_TICKS.inc()

    def window(self, inputs: int, seconds: float, wall: float) -> None:
        if inputs:
            LAST_EVENT.set(wall)
        WINDOW_INPUTS.observe(inputs)
        WINDOW_TIME.observe(seconds)
