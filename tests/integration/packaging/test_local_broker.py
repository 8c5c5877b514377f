"""``chs broker``: one local Apache Kafka 3.9.0 in the foreground, usable by a client of
another stack (librdkafka, through confluent-kafka); clear errors, nothing left running."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from streams.ops.devstack import chs_command, free_port

pytestmark = pytest.mark.integration


def start(port: int, data: Path) -> subprocess.Popen[str]:
    argv = [*chs_command("broker"), "--kind", "kafka", "--port", str(port), "--data-dir", str(data)]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def first_line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return process.stdout.readline().strip()


def jvms_of(data: Path) -> list[str]:
    """Processes whose command line names ``data`` (the broker's storage folder)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if proc.name.isdigit() and str(data) in command:
            found.append(proc.name)
    return found


def test_chs_broker_runs_apache_kafka_for_any_client_then_stops_clean(tmp_path: Path) -> None:
    port, data = free_port(), tmp_path / "kafka"
    broker = start(port, data)
    try:
        assert first_line(broker) == f"ready: 127.0.0.1:{port}"
        producer = Producer({"bootstrap.servers": f"127.0.0.1:{port}"})
        producer.produce("librdkafka-check", key=b"k", value=b"through librdkafka")
        assert producer.flush(30) == 0
        consumer = Consumer(
            {
                "bootstrap.servers": f"127.0.0.1:{port}",
                "group.id": "check",
                "auto.offset.reset": "earliest",
            }
        )
        consumer.subscribe(["librdkafka-check"])
        deadline, value = time.monotonic() + 30, None
        while value is None and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                value = message.value()
        consumer.close()
        assert value == b"through librdkafka"
        # A second one on the same port says which port, and leaves nothing behind.
        other = subprocess.run(
            [*chs_command("broker"), "--kind", "kafka", "--port", str(port),
             "--data-dir", str(tmp_path / "other")],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert other.returncode == 1
        assert f"127.0.0.1:{port} is in use" in other.stderr
        assert jvms_of(tmp_path / "other") == []
    finally:
        os.killpg(broker.pid, signal.SIGTERM)
        assert broker.wait(60) == 0
    assert jvms_of(data) == []
