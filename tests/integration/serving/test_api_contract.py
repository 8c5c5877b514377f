"""The API's OpenAPI document says what the running API does: schemathesis, a property-based
API fuzzer, reads ``/openapi.json`` from a live ``chs api`` (over a real Redis with a book of
accounts) and sends generated requests, valid and invalid; every check must pass (no 5xx,
every answer's status, headers and body as documented, invalid input refused, valid input
accepted, and with a token, wrong or missing credentials refused)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.ops.devstack import (
    ManagedProcess,
    chs_command,
    free_port,
    start_process,
    wait_for_port,
)
from tests.integration.serving.test_api import fill

pytestmark = pytest.mark.integration

TOKEN = "contract-token"
LiveApi = tuple[int, str | None]
"""The port of a running ``chs api`` and the token it requires (None: none)."""
MAX_EXAMPLES = 100
"""Generated requests per operation and phase (about 1,100 requests in all)."""


@pytest.fixture(scope="module")
def book(private_redis: str) -> str:
    asyncio.run(fill(private_redis))
    return private_redis


def start_api(redis_url: str, log: Path, token: str | None) -> tuple[ManagedProcess, int]:
    port = free_port()
    env = {"CHS_REDIS_URL": redis_url, "CHS_API_PORT": str(port)}
    if token is not None:
        env["CHS_API_TOKEN"] = token
    api = start_process("api", chs_command("api"), log, env)
    try:
        wait_for_port(api, port, timeout=30)
    except Exception:
        api.stop()
        raise
    return api, port


@pytest.fixture(params=[None, TOKEN], ids=["no-token", "token"])
def live_api(
    request: pytest.FixtureRequest, book: str, tmp_path: Path
) -> Iterator[tuple[int, str | None]]:
    token: str | None = request.param
    api, port = start_api(book, tmp_path / "api.log", token)
    try:
        yield port, token
    finally:
        api.stop()


def test_the_api_answers_as_its_openapi_document_says(live_api: LiveApi, tmp_path: Path) -> None:
    port, token = live_api
    argv = [
        str(Path(sys.executable).parent / "st"),
        "run",
        f"http://127.0.0.1:{port}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--workers",
        "1",
        "--seed",
        "20261130",
    ]
    if token is not None:
        argv += ["--header", f"Authorization: Bearer {token}"]
    done = subprocess.run(  # in tmp_path: schemathesis keeps its replay data where it runs
        argv, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-6000:]
    assert " passed" in report
