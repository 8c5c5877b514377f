"""Kafka and Redis client configuration from the settings, for each security protocol."""

from __future__ import annotations

import socket
import ssl
import subprocess
from pathlib import Path

import certifi
import faust
import pytest
from aiokafka import AIOKafkaConsumer
from pydantic import SecretStr, ValidationError

from streams.settings import Settings
from streams.worker.connections import (
    Unreachable,
    broker_credentials,
    kafka_options,
    reaching,
    redis_client,
)

PASSWORD = "kafka-pass-123"


def sasl(protocol: str, **changes: object) -> Settings:
    return Settings(
        broker_security_protocol=protocol,
        broker_sasl_mechanism="SCRAM-SHA-512",
        broker_sasl_username="chs",
        broker_sasl_password=SecretStr(PASSWORD),
        **changes,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def client_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and its key, as a client would present them."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "client.pem", folder / "client.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=chs-test", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_plaintext_is_the_default() -> None:
    settings = Settings()
    assert broker_credentials(settings) is None
    assert kafka_options(settings) == {
        "bootstrap_servers": ["localhost:9092"],
        "security_protocol": "PLAINTEXT",
    }


def test_sasl_plaintext_passes_mechanism_user_and_password() -> None:
    options = kafka_options(sasl("SASL_PLAINTEXT"))
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "chs"
    assert options["sasl_plain_password"] == PASSWORD
    assert options["ssl_context"] is None


def test_sasl_ssl_verifies_the_brokers_with_the_ca_file() -> None:
    settings = sasl("SASL_SSL", broker_ssl_cafile=Path(certifi.where()))
    credentials = broker_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    options = kafka_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.cert_store_stats()["x509_ca"] > 0


def test_ssl_with_a_client_certificate(client_pair: tuple[Path, Path]) -> None:
    cert, key = client_pair
    settings = Settings(
        broker_security_protocol="SSL",
        broker_ssl_cafile=Path(certifi.where()),
        broker_ssl_certfile=cert,
        broker_ssl_keyfile=key,
    )
    assert isinstance(broker_credentials(settings), faust.SSLCredentials)
    options = kafka_options(settings)
    assert options["security_protocol"] == "SSL"
    assert isinstance(options["ssl_context"], ssl.SSLContext)


def test_incomplete_security_settings_are_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="CHS_BROKER_SASL_USERNAME"):
        Settings(broker_security_protocol="SASL_SSL")
    with pytest.raises(ValidationError, match="CHS_BROKER_SSL_CAFILE: no such file"):
        Settings(broker_security_protocol="SSL", broker_ssl_cafile=Path("/nowhere/ca.pem"))


def test_rediss_urls_get_the_ca_file() -> None:
    settings = Settings(
        redis_url=SecretStr("rediss://:pw@redis.example:6380/0"),
        redis_ssl_cafile=Path(certifi.where()),
    )
    client = redis_client(settings)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["ssl_ca_certs"] == certifi.where()
    assert kwargs["password"] == "pw"


def test_secrets_are_read_from_files_and_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_file = tmp_path / "kafka-password"
    secret_file.write_text(PASSWORD + "\n")
    url_file = tmp_path / "redis-url"
    url_file.write_text("redis://:redis-pass-456@cache:6379/0\n")
    monkeypatch.setenv("CHS_BROKER_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("CHS_BROKER_SASL_USERNAME", "chs")
    monkeypatch.setenv("CHS_BROKER_SASL_PASSWORD_FILE", str(secret_file))
    monkeypatch.setenv("CHS_REDIS_URL_FILE", str(url_file))
    settings = Settings()
    assert settings.broker_sasl_password is not None
    assert settings.broker_sasl_password.get_secret_value() == PASSWORD
    assert settings.redis_url.get_secret_value() == "redis://:redis-pass-456@cache:6379/0"
    shown = f"{settings!r} {settings} {settings.model_dump()} {settings.model_dump_json()}"
    assert PASSWORD not in shown
    assert "redis-pass-456" not in shown
    # The variable itself wins over the file.
    monkeypatch.setenv("CHS_REDIS_URL", "redis://other:6379/0")
    assert Settings().redis_url.get_secret_value() == "redis://other:6379/0"


def test_an_unreadable_secret_file_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHS_API_TOKEN_FILE", "/nowhere/token")
    with pytest.raises(ValueError, match="CHS_API_TOKEN_FILE: cannot read /nowhere/token"):
        Settings()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when the block ends


async def ping_redis(settings: Settings) -> None:
    client = redis_client(settings, timeout=2)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def start_consumer(settings: Settings) -> None:
    consumer = AIOKafkaConsumer("t", **kafka_options(settings))
    try:
        await consumer.start()
    finally:
        await consumer.stop()


def test_an_unreachable_redis_or_broker_is_one_line_naming_the_url_and_the_setting() -> None:
    port = closed_port()
    settings = Settings(
        redis_url=SecretStr(f"redis://:{PASSWORD}@127.0.0.1:{port}/0"),
        broker_url=f"kafka://127.0.0.1:{port}",
    )
    with pytest.raises(Unreachable) as redis_down:
        reaching(settings, ping_redis(settings))
    message = str(redis_down.value)
    assert f"cannot reach Redis at redis://127.0.0.1:{port}/0" in message
    assert "CHS_REDIS_URL" in message
    assert PASSWORD not in message
    with pytest.raises(Unreachable) as broker_down:
        reaching(settings, start_consumer(settings))
    assert str(broker_down.value) == (
        f"cannot reach the broker at kafka://127.0.0.1:{port}: set CHS_BROKER_URL "
        "(after make run: . .run/env)"
    )
