"""The house's layers: what each package may import (run in a fresh interpreter, so that
every module a package pulls in, directly or not, counts)."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def modules(package: str) -> list[str]:
    folder = ROOT.joinpath(*package.split("."))
    return [f"{package}.{info.name}" for info in pkgutil.iter_modules([str(folder)])]


def imported_by(names: list[str]) -> set[str]:
    """Top-level packages and our own modules loaded by importing ``names`` alone."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out))


def tops(loaded: set[str]) -> set[str]:
    return {name.split(".")[0] for name in loaded}


def test_the_application_step_imports_no_faust_kafka_or_redis() -> None:
    loaded = imported_by(modules("streams.pipeline"))
    assert not tops(loaded) & {"faust", "mode", "aiokafka", "redis", "kafka"}
    assert not {name for name in loaded if name.startswith(("streams.worker", "streams.ops"))}


def test_the_alert_rules_import_no_delivery() -> None:
    loaded = imported_by(["alerts.rules", "alerts.config", "alerts.alert"])
    assert not {name for name in loaded if name.startswith("alerts.delivery")}
    assert not tops(loaded) & {"slack_sdk", "aiohttp", "redis", "aiokafka", "faust"}


@pytest.mark.parametrize("package", ["scoring", "api", "readmodel", "alerts", "alerts.delivery"])
def test_nothing_imports_upward_into_streams(package: str) -> None:
    loaded = imported_by(modules(package))
    assert "streams" not in tops(loaded)
