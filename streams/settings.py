"""The one settings object, read from the environment (prefix ``CHS_``) once at start-up."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from scoring.events import EventKind
from scoring.update import PUBLISH_MIN_DELTA
from streams.pipeline.account_step import Control, TopicRole
from streams.wire import TopicSpec

SECRETS = (
    "broker_sasl_password",
    "broker_ssl_key_password",
    "redis_url",
    "slack_webhook_url",
    "slack_routes",
    "api_token",
)
"""Settings that may be read from a file named by ``CHS_<NAME>_FILE`` (Docker and
Kubernetes mount secrets as files)."""


class SecretFiles(PydanticBaseSettingsSource):
    """``CHS_<NAME>_FILE=/run/secrets/x``: the secret is the file's content (trailing newline
    dropped). ``CHS_<NAME>`` itself wins when both are set."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        variable = f"CHS_{field_name.upper()}_FILE"
        path = os.environ.get(variable)
        if field_name not in SECRETS or not path:
            return None, field_name, False
        try:
            return Path(path).read_text().rstrip("\n"), field_name, False
        except OSError as error:
            raise ValueError(f"{variable}: cannot read {path}: {error.strerror}") from None

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                values[key] = json.loads(value) if name == "slack_routes" else value
        return values


class Settings(BaseSettings):
    """Every knob of the worker, the demo and the dev stack. See README.md for the list."""

    model_config = SettingsConfigDict(env_prefix="CHS_", extra="ignore", frozen=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, SecretFiles(settings_cls), dotenv_settings)

    app_id: str = Field(default="chs", description="Kafka consumer group and table prefix")
    broker_url: str = Field(default="kafka://localhost:9092", description="comma-separated")
    broker_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="how every Kafka client of the project connects"
    )
    broker_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    broker_sasl_username: str | None = None
    broker_sasl_password: SecretStr | None = None
    broker_ssl_cafile: Path | None = Field(default=None, description="CA bundle (PEM)")
    broker_ssl_certfile: Path | None = Field(default=None, description="client certificate")
    broker_ssl_keyfile: Path | None = Field(default=None, description="client key")
    broker_ssl_key_password: SecretStr | None = None
    redis_url: SecretStr = Field(
        default=SecretStr("redis://localhost:6379/0"),
        description="redis:// or rediss:// (TLS); may hold a user and password: a secret",
    )
    redis_ssl_cafile: Path | None = Field(default=None, description="CA bundle for rediss://")
    web_host: str = Field(default="127.0.0.1", description="bind address of the worker's web")
    web_port: int = Field(default=6066, ge=1, le=65535)
    data_dir: Path = Field(default=Path(".chs-data"), description="the worker's local data")
    api_host: str = Field(default="127.0.0.1", description="bind address of `chs api`")
    api_port: int = Field(default=8080, ge=1, le=65535, description="port of `chs api`")
    api_token: SecretStr | None = Field(
        default=None,
        description="bearer token `chs api` requires on everything but /healthz (unset: open)",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    topic_partitions: int = Field(default=8, ge=1, description="partitions of every topic")
    topic_replication: int = Field(default=1, ge=1)
    create_topics: bool = Field(default=True, description="create missing topics at start")

    topic_login: str = "chs.events.login"
    topic_feature_use: str = "chs.events.feature_use"
    topic_ticket: str = "chs.events.ticket"
    topic_payment: str = "chs.events.payment"
    topic_survey: str = "chs.events.survey"
    topic_accounts: str = Field(default="chs.accounts", description="account attributes")
    topic_overrides: str = Field(default="chs.overrides", description="CSM overrides")
    topic_rollup: str = Field(
        default="chs.rollup", description="internal: children's scores, keyed by their parent"
    )
    topic_scores: str = "chs.scores"
    topic_dlq: str = "chs.events.dlq"
    topic_alerts: str = "chs.alerts"
    topic_alerts_dlq: str = Field(default="chs.alerts.dlq", description="undeliverable alerts")
    topic_peers: str = Field(
        default="chs.peers", description="internal: each partition's peer sketches (compacted)"
    )
    topic_outcomes: str = Field(
        default="chs.outcomes", description="churn, renewal, downgrade and expansion outcomes"
    )
    topic_audit: str = Field(
        default="chs.audit", description="internal: each partition's audit book (compacted)"
    )
    audit_window_days: int = Field(
        default=180,
        ge=30,
        le=3650,
        description="churns of the last this many days count in the live audit",
    )
    audit_ship_seconds: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="how often a worker ships its audit books and publishes the figures",
    )
    shadow_model_files: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="model files evaluated beside the live model for the audit only "
        "(comma-separated)",
    )
    peers_ship_seconds: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="how often a worker ships its partitions' peer sketches when they changed",
    )

    alert_rules_file: Path | None = Field(default=None, description="alert rules YAML")
    slack_webhook_url: SecretStr | None = Field(
        default=None, description="default Slack incoming webhook; unset: alerts go to the log"
    )
    slack_routes: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='JSON: {"severity:critical": URL, "segment:enterprise": URL}',
    )
    slack_rate_per_second: float = Field(default=1.0, gt=0)
    slack_burst: int = Field(default=3, ge=1)
    slack_max_attempts: int = Field(default=5, ge=1, description="tries on 5xx and timeouts")
    slack_timeout_seconds: int = Field(default=10, ge=1)
    slack_retry_base_seconds: float = Field(default=0.5, gt=0)
    alert_dedup_days: float = Field(default=7.0, gt=0, description="remember delivered alerts")

    model_file: Path | None = Field(default=None, description="scoring model YAML")
    clock: Literal["wall", "event"] = Field(
        default="wall", description="scoring time: wall clock, or newest event time (replays)"
    )
    dev_broker: Literal["tansu", "kafka"] = Field(
        default="tansu",
        description="the broker chs dev starts: the dev broker (no Java) or Apache Kafka",
    )
    event_order: bool = Field(
        default=False,
        description="with the event clock: score the topic-partitions in event-time order "
        "(replays on many partitions; docs/audit.md, which says what is still open)",
    )
    publish_min_delta: float = Field(
        default=PUBLISH_MIN_DELTA,
        ge=0,
        le=100,
        description="a score that moved fewer points (nothing else changed) is not published",
    )
    max_future_seconds: float = Field(
        default=600.0, ge=0, description="events further ahead of the wall clock go to the DLQ"
    )
    max_event_bytes: int = Field(
        default=65_536, ge=256, description="larger messages go to the DLQ unread"
    )
    table_standby_replicas: int = Field(
        default=0,
        ge=0,
        description="other workers that keep a copy of each table partition; with Faust's "
        "in-memory store they do not shorten a takeover (docs/operations.md)",
    )
    timer_interval: float = Field(
        default=1.0,
        gt=0,
        description="seconds an idle worker waits before re-evaluating due accounts",
    )
    timer_batch: int = Field(
        default=2000, ge=1, description="most due accounts re-evaluated at the end of one window"
    )

    # Kafka client tuning. Production keeps Faust's defaults; `chs dev` and the tests lower
    # them for the dev broker (Tansu), see docs/dev-broker.md.
    broker_session_timeout: float = Field(default=60.0, gt=0, description="seconds")
    broker_heartbeat_interval: float = Field(default=3.0, gt=0, description="seconds")
    broker_rebalance_timeout: float = Field(
        default=60.0, gt=0, description="seconds a rebalance may take before members are dropped"
    )
    broker_fetch_max_wait: float = Field(
        default=1.5,
        gt=0,
        description="seconds a fetch may wait on the broker for new records (Faust's value)",
    )
    view_fetch_max_wait: float = Field(
        default=0.5,
        gt=0,
        le=30,
        description="seconds the Redis view's consumer of chs.scores waits to fetch more at once",
    )
    producer_max_batch_size: int = Field(
        default=262_144, ge=1, description="bytes per producer batch (per partition)"
    )
    producer_linger_seconds: float = Field(
        default=0.005, ge=0, description="wait this long to fill a producer batch"
    )
    broker_max_poll_records: int | None = Field(
        default=None, ge=1, description="most records one fetch hands over (None: no limit)"
    )
    stream_buffer_maxsize: int = Field(
        default=4096, ge=1, description="messages buffered per stream before fetching pauses"
    )
    input_batch_max: int = Field(
        default=1000,
        ge=1,
        description="most input messages folded at once (the scoring task yields to the event "
        "loop between batches)",
    )
    window_max_inputs: int = Field(
        default=100_000,
        ge=1,
        description="most input messages in one window under a backlog (each account settled, "
        "published and written once per window)",
    )
    window_max_seconds: float = Field(
        default=15.0,
        gt=0,
        description="longest a window stays open under a backlog (its outputs wait for it)",
    )
    state_write_seconds: float = Field(
        default=2.0,
        ge=0,
        description="under a live load, how long the states of settled windows are held before "
        "being written, each account once (their outputs are sent at once; their inputs are "
        "committed once the states are written); 0 writes every window's",
    )

    @field_validator(
        "api_token",
        "slack_webhook_url",
        "broker_sasl_password",
        "broker_ssl_key_password",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # docker compose passes ${VAR:-} through as an empty string: that means "not set".
        return None if value == "" else value

    @field_validator("slack_routes")
    @classmethod
    def _route_names(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name in value:
            kind, _, target = name.partition(":")
            if kind not in ("severity", "segment") or not target:
                raise ValueError(f"route {name!r} must be 'severity:<level>' or 'segment:<name>'")
        return value

    @field_validator("broker_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        for url in value.split(","):
            if not url.strip().startswith("kafka://"):
                raise ValueError(f"broker URL must start with kafka://, got {url.strip()!r}")
        return value

    @model_validator(mode="after")
    def _broker_security_complete(self) -> Settings:
        if self.broker_security_protocol.startswith("SASL_") and not (
            self.broker_sasl_username and self.broker_sasl_password
        ):
            raise ValueError(
                f"CHS_BROKER_SECURITY_PROTOCOL={self.broker_security_protocol} needs "
                "CHS_BROKER_SASL_USERNAME and CHS_BROKER_SASL_PASSWORD (or _FILE)"
            )
        for name in ("broker_ssl_cafile", "broker_ssl_certfile", "broker_ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"CHS_{name.upper()}: no such file: {path}")
        if (self.broker_ssl_certfile is None) != (self.broker_ssl_keyfile is None):
            raise ValueError("CHS_BROKER_SSL_CERTFILE and CHS_BROKER_SSL_KEYFILE go together")
        return self

    @field_validator("shadow_model_files", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _distinct_topics(self) -> Settings:
        names = [topic.name for topic in self.topics]
        if len(set(names)) != len(names):
            raise ValueError(f"topic names must be distinct, got {names}")
        return self

    @property
    def topics(self) -> tuple[TopicSpec, ...]:
        """Every project topic: the one list the others derive from."""
        return (
            TopicSpec(self.topic_login, EventKind.LOGIN),
            TopicSpec(self.topic_feature_use, EventKind.FEATURE_USE),
            TopicSpec(self.topic_ticket, EventKind.TICKET),
            TopicSpec(self.topic_payment, EventKind.PAYMENT),
            TopicSpec(self.topic_survey, EventKind.SURVEY),
            # Attributes are snapshots: only the last per account matters.
            TopicSpec(self.topic_accounts, Control.ACCOUNTS, compacted=True),
            TopicSpec(self.topic_overrides, Control.OVERRIDES),
            TopicSpec(self.topic_outcomes, Control.OUTCOMES),
            TopicSpec(self.topic_rollup, Control.ROLLUP),
            # A score is the latest (a churned or erased account's tombstone removes it).
            TopicSpec(self.topic_scores, compacted=True),
            TopicSpec(self.topic_dlq),
            TopicSpec(self.topic_alerts),
            TopicSpec(self.topic_alerts_dlq),
            TopicSpec(self.topic_peers, books=True, compacted=True),
            TopicSpec(self.topic_audit, books=True, compacted=True),
        )

    @property
    def input_roles(self) -> dict[str, TopicRole]:
        """Topic name -> what the scoring task reads it as: all co-partitioned, keyed by
        account_id."""
        return {topic.name: topic.role for topic in self.topics if topic.role is not None}

    @property
    def event_topics(self) -> dict[str, EventKind]:
        """Topic name -> the kind of event it carries."""
        roles = self.input_roles.items()
        return {name: role for name, role in roles if isinstance(role, EventKind)}

    @property
    def input_topics(self) -> list[str]:
        return list(self.input_roles)

    def topic_for(self, kind: EventKind) -> str:
        return next(topic for topic, k in self.event_topics.items() if k is kind)

    @property
    def bootstrap_servers(self) -> list[str]:
        """``host:port`` list for plain aiokafka clients."""
        return [url.strip().removeprefix("kafka://") for url in self.broker_url.split(",")]
