from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from scoring.events import EventKind
from streams.settings import Settings
from streams.worker.topics import new_topic


def test_defaults_match_the_documented_contract() -> None:
    settings = Settings()
    assert settings.broker_url == "kafka://localhost:9092"
    assert settings.redis_url.get_secret_value() == "redis://localhost:6379/0"
    assert settings.web_host == "127.0.0.1"
    assert settings.event_topics["chs.events.feature_use"] is EventKind.FEATURE_USE
    assert settings.topic_for(EventKind.SURVEY) == "chs.events.survey"
    assert settings.topic_scores == "chs.scores"
    assert settings.topic_dlq == "chs.events.dlq"


def test_environment_overrides_with_chs_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHS_BROKER_URL", "kafka://k1:9092,kafka://k2:9093")
    monkeypatch.setenv("CHS_TOPIC_PARTITIONS", "12")
    monkeypatch.setenv("CHS_TOPIC_LOGIN", "acme.logins")
    settings = Settings()
    assert settings.bootstrap_servers == ["k1:9092", "k2:9093"]
    assert settings.topic_partitions == 12
    assert settings.topic_for(EventKind.LOGIN) == "acme.logins"


def test_bad_values_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHS_BROKER_URL", "localhost:9092")
    with pytest.raises(ValidationError, match="kafka://"):
        Settings()
    monkeypatch.setenv("CHS_BROKER_URL", "kafka://localhost:9092")
    monkeypatch.setenv("CHS_TOPIC_PARTITIONS", "0")
    with pytest.raises(ValidationError, match="topic_partitions"):
        Settings()


def test_topics_must_be_distinct(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHS_TOPIC_SURVEY", "chs.events.login")
    with pytest.raises(ValidationError, match="distinct"):
        Settings()


def test_readme_documents_every_variable() -> None:
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    documented = set(re.findall(r"`(CHS_[A-Z_]+)`", readme))
    variables = {f"CHS_{name.upper()}" for name in Settings.model_fields}
    assert variables - documented == set()
    assert documented - variables == set()


def test_an_empty_secret_from_the_environment_means_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHS_API_TOKEN", "")
    monkeypatch.setenv("CHS_SLACK_WEBHOOK_URL", "")
    settings = Settings()
    assert settings.api_token is None
    assert settings.slack_webhook_url is None


def test_every_topic_setting_is_in_the_registry_and_the_inputs_derive_from_it() -> None:
    settings = Settings(topic_ticket="acme.tickets")
    fields = {name for name in Settings.model_fields if name.startswith("topic_")}
    named = {getattr(settings, name) for name in fields - {"topic_partitions", "topic_replication"}}
    assert {topic.name for topic in settings.topics} == named
    roles = settings.input_roles
    assert roles["acme.tickets"] is EventKind.TICKET
    assert settings.input_topics == list(roles)
    assert set(settings.event_topics) == {
        topic for topic, role in roles.items() if isinstance(role, EventKind)
    }
    # Outputs are not read by the scoring task.
    assert not {settings.topic_scores, settings.topic_alerts, settings.topic_peers} & set(roles)


def test_books_have_one_partition_and_snapshots_are_compacted() -> None:
    settings = Settings(topic_partitions=12)
    shapes = {topic.name: new_topic(settings, topic) for topic in settings.topics}
    for name in (settings.topic_peers, settings.topic_audit):
        assert shapes[name].num_partitions == 1
    assert shapes[settings.topic_login].num_partitions == 12
    compacted = {name for name, t in shapes.items() if t.topic_configs}
    assert compacted == {
        settings.topic_peers,
        settings.topic_audit,
        settings.topic_accounts,
        settings.topic_scores,
    }
    assert all(
        t.topic_configs == {"cleanup.policy": "compact"}
        for name, t in shapes.items()
        if name in compacted
    )
