"""Clients of Kafka and Redis as the settings say: credentials and TLS in one place, for Faust
and for every plain aiokafka client of the project (CLI, demo, alert delivery, bench)."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import faust
import redis.asyncio as aioredis
from aiokafka.errors import KafkaConnectionError
from aiokafka.helpers import create_ssl_context
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from faust.types.auth import CredentialsT
from redis.exceptions import AuthenticationError, AuthorizationError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.settings import Settings

T = TypeVar("T")


def broker_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.broker_security_protocol.endswith("SSL"):
        return None
    key_password = settings.broker_ssl_key_password
    context: ssl.SSLContext = create_ssl_context(
        cafile=str(settings.broker_ssl_cafile) if settings.broker_ssl_cafile else None,
        certfile=str(settings.broker_ssl_certfile) if settings.broker_ssl_certfile else None,
        keyfile=str(settings.broker_ssl_keyfile) if settings.broker_ssl_keyfile else None,
        password=key_password.get_secret_value() if key_password else None,
    )
    return context


def broker_credentials(settings: Settings) -> CredentialsT | None:
    """What Faust's ``broker_credentials`` takes (None: plaintext, no authentication)."""
    context = broker_ssl_context(settings)
    protocol = settings.broker_security_protocol
    if protocol.startswith("SASL_"):
        password = settings.broker_sasl_password
        assert settings.broker_sasl_username is not None  # checked by Settings
        assert password is not None
        return faust.SASLCredentials(
            username=settings.broker_sasl_username,
            password=password.get_secret_value(),
            mechanism=settings.broker_sasl_mechanism,
            ssl_context=context,
        )
    if protocol == "SSL":
        assert context is not None
        return faust.SSLCredentials(context)
    return None


def kafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for an aiokafka producer, consumer or admin client: the servers and
    the same security Faust uses."""
    auth = credentials_to_aiokafka_auth(broker_credentials(settings))
    return {"bootstrap_servers": settings.bootstrap_servers, **auth}


def redis_client(settings: Settings, timeout: float = 5.0) -> aioredis.Redis:
    url = settings.redis_url.get_secret_value()
    tls: dict[str, Any] = {}
    if url.startswith("rediss://") and settings.redis_ssl_cafile is not None:
        tls["ssl_ca_certs"] = str(settings.redis_ssl_cafile)
    return aioredis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, **tls
    )


class CredentialsRefused(Exception):
    """A service refused the configured credentials: the message names the setting, never
    the secret."""


async def check_redis_credentials(settings: Settings) -> None:
    """Fail fast on credentials Redis refuses; a Redis that is merely down is not an error
    here (scoring goes on without it, and the view catches up)."""
    client = redis_client(settings, timeout=3)
    try:
        await client.ping()
    except (AuthenticationError, AuthorizationError) as error:
        raise CredentialsRefused(
            f"Redis refused the credentials in CHS_REDIS_URL ({type(error).__name__}): "
            "check the user and password in it (or in CHS_REDIS_URL_FILE)"
        ) from None
    except ResponseError as error:
        if "NOAUTH" not in str(error):
            raise
        raise CredentialsRefused(
            "Redis wants a password and CHS_REDIS_URL has none: "
            "redis://:PASSWORD@host:port/db (or a user: redis://USER:PASSWORD@...)"
        ) from None
    except (RedisError, OSError):
        pass  # down or unreachable: reported by /readyz and the logs, not fatal
    finally:
        await client.aclose()


class Unreachable(RuntimeError):
    """An operator command could not reach the broker or Redis: one line, no traceback."""


def redis_location(settings: Settings) -> str:
    """The Redis URL without its password, for messages."""
    parts = urlsplit(settings.redis_url.get_secret_value())
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{host}{port}", parts.path, "", ""))


_HOW = "(after make run: . .run/env)"


def reaching(settings: Settings, work: Coroutine[Any, Any, T]) -> T:
    """Run an operator command's ``work``; a broker or Redis it cannot reach raises
    ``Unreachable`` naming what it tried and the setting that says where (aiokafka's own
    log lines about it would only say the same first, in its words)."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        return asyncio.run(work)
    except (RedisConnectionError, RedisTimeoutError) as error:
        raise Unreachable(
            f"cannot reach Redis at {redis_location(settings)} ({error.__class__.__name__}): "
            f"set CHS_REDIS_URL {_HOW}"
        ) from None
    except KafkaConnectionError:
        raise Unreachable(
            f"cannot reach the broker at {settings.broker_url}: set CHS_BROKER_URL {_HOW}"
        ) from None
