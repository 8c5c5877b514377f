"""A local Apache Kafka broker for tests, benchmarks and developers: the official 3.9.0 jars
(the release in docker-compose.yml), one KRaft node on loopback ports, its storage formatted
in a folder of its own.

The jars are the runtime dependencies of ``deploy/local-kafka/pom.xml``, copied once by Maven
into a cache folder (``CHS_KAFKA_LIBS``, default ``~/.cache/chs/kafka-3.9.0``); Java 17 runs
them. Settings differ from a production broker only where they do not change semantics: one
replica, no initial rebalance delay, a small heap. Log compaction is on, as in production.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError

from streams.ops.devstack import (
    ManagedProcess,
    ServiceError,
    free_port,
    start_process,
    wait_for_port,
)

KAFKA_VERSION = "3.9.0"
POM = Path(__file__).resolve().parent.parent / "deploy" / "local-kafka" / "pom.xml"
HEAP = "-Xmx768m"
READY_SECONDS = 60.0

SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{advertised}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
num.partitions={partitions}
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
log.cleaner.enable=true
log.cleaner.backoff.ms=1000
auto.create.topics.enable=true
"""
"""One node, one replica; the group coordinator answers a group's first JoinGroup at once
(production waits 3 s for more members); the cleaner looks for work every second."""

LOG4J = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.controller=WARN
log4j.logger.org.apache.kafka.controller=WARN
log4j.logger.kafka.coordinator=WARN
"""


def libs_dir() -> Path:
    configured = os.environ.get("CHS_KAFKA_LIBS")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "chs" / f"kafka-{KAFKA_VERSION}"


def _tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ServiceError(
            f"the local Apache Kafka needs {name}: install the Debian/Ubuntu package "
            f"'{package}' (make test-packages does)"
        )
    return found


def kafka_libs() -> Path:
    """The folder of the broker's jars, fetched by Maven on first use."""
    folder = libs_dir()
    done = folder / ".complete"
    if done.exists():
        return folder
    mvn = _tool("mvn", "maven")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"fetching Apache Kafka {KAFKA_VERSION} jars into {folder} (once)", file=sys.stderr)
    command = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies"]
    command += [f"-DoutputDirectory={folder}", "-DincludeScope=runtime"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
        raise ServiceError(f"Maven could not fetch the Kafka jars:\n{tail}")
    done.touch()
    return folder


def _java(libs: Path, main: str, *args: str, heap: str = "-Xmx256m") -> list[str]:
    java = _tool("java", "openjdk-17-jre-headless")
    return [java, heap, "-XX:+UseSerialGC", "-cp", f"{libs}/*", main, *args]


def start_kafka(
    port: int,
    log_path: Path,
    data_dir: Path,
    advertised_port: int | None = None,
    partitions: int = 8,
) -> ManagedProcess:
    """Apache Kafka on ``port`` (clients are told ``advertised_port`` when given: a proxy in
    the tests), ready to serve when this returns; storage formatted in ``data_dir``. A topic
    created by its first record gets ``partitions`` (docker-compose.yml sets the same as
    ``CHS_TOPIC_PARTITIONS``)."""
    libs = kafka_libs()
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "server.properties"
    config.write_text(
        SERVER_PROPERTIES.format(
            port=port,
            controller=free_port(),
            advertised=advertised_port or port,
            partitions=partitions,
            data=data_dir / "log",
        )
    )
    log4j = data_dir / "log4j.properties"
    log4j.write_text(LOG4J)
    formatted = subprocess.run(
        _java(libs, "kafka.tools.StorageTool", "format", "-t", cluster_id(), "-c",
              str(config), "--ignore-formatted"),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if formatted.returncode != 0:
        raise ServiceError(f"formatting Kafka's storage failed:\n{formatted.stderr[-2000:]}")
    argv = _java(libs, "kafka.Kafka", str(config), heap=HEAP)
    argv.insert(1, f"-Dlog4j.configuration=file:{log4j}")
    service = start_process("kafka", argv, log_path)
    try:
        _wait_ready(service, port)
    except Exception:
        service.stop()
        raise
    return service


def cluster_id() -> str:
    """A new KRaft cluster id: 16 random bytes, URL-safe base64 without padding, never
    starting with "-" (the storage tool would read it as an option; Kafka's own
    ``Uuid.randomUuid`` draws again in that case too)."""
    while True:
        found = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not found.startswith("-"):
            return found


def broker_answers(port: int) -> bool:
    """Whether the broker on ``port`` answers a metadata request naming itself."""

    async def ask() -> bool:
        client = AIOKafkaClient(bootstrap_servers=f"127.0.0.1:{port}", request_timeout_ms=2000)
        try:
            await client.bootstrap()
            return bool(client.cluster.brokers())
        except KafkaError:
            return False
        finally:
            await client.close()

    # A thread of its own: the caller may be inside an event loop (an async test fixture).
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, ask()).result()


def _wait_ready(service: ManagedProcess, port: int) -> None:
    """Until the broker answers a metadata request (listening is not enough: it accepts
    connections before the controller has elected itself)."""
    wait_for_port(service, port, READY_SECONDS)
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise ServiceError(
                f"Apache Kafka exited (code {service.process.returncode}):\n{service.log_tail()}"
            )
        if broker_answers(port):
            return
        time.sleep(0.2)
    raise ServiceError(
        f"Apache Kafka did not come up on 127.0.0.1:{port} in {READY_SECONDS:.0f}s:\n"
        f"{service.log_tail()}"
    )
