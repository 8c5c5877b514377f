"""What the image does, without a Docker engine: the paths the Dockerfile's build stage copies,
and nothing else, built into a wheel and installed into a fresh venv, as the Dockerfile does;
then the installed ``chs`` runs from a directory outside the source tree.

It fails when the Dockerfile and pyproject.toml drift apart (a package left out of the image,
a data file not packaged) or when the build prints a setuptools warning.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from streams.ops.cli import _parser
from streams.ops.devstack import free_port, start_process, wait_for_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("scoring", "alerts", "streams", "api", "sim")


def build_stage_sources(dockerfile: str) -> list[str]:
    """The sources of the build stage's ``COPY`` lines (the first stage)."""
    sources: list[str] = []
    stages = 0
    for line in dockerfile.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "FROM":
            stages += 1
            if stages > 1:
                break
        elif words[0] == "COPY" and not any(w.startswith("--") for w in words):
            sources += words[1:-1]
    return sources


def test_the_build_stage_sources_are_read_as_the_dockerfile_says() -> None:
    dockerfile = "FROM a AS build\nCOPY x y ./\n# COPY no\nCOPY z ./z\nFROM b\nCOPY c ./c\n"
    assert build_stage_sources(dockerfile) == ["x", "y", "z"]


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{output[-3000:]}"
    return output


def subcommands() -> list[list[str]]:
    """Every ``chs`` command and sub-command, as the parser knows them."""
    found: list[list[str]] = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found.append([*path, name])
                    walk(sub, [*path, name])

    walk(_parser(), [])
    return found


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the image's wheel installed; returns its bin directory."""
    work = tmp_path_factory.mktemp("image")
    source = work / "src"
    source.mkdir()
    for name in build_stage_sources((ROOT / "Dockerfile").read_text()):
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, source / name)
    venv = work / "venv"
    run([sys.executable, "-m", "venv", str(venv)], work)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    # Verbose: setuptools' own warnings show only then. Byte-compiling left on (the image's
    # PYTHONDONTWRITEBYTECODE makes setuptools say it skips it, which is no fault).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    built = run(
        [*pip, "wheel", "-v", "--no-deps", "--wheel-dir", str(work / "wheels"), "."], source, env
    )
    warnings = [
        line for line in built.splitlines() if "warning" in line.lower() and "Location" not in line
    ]  # pip's own notes on this machine's index config
    assert warnings == []
    wheels = [str(wheel) for wheel in (work / "wheels").glob("*.whl")]
    assert len(wheels) == 1
    run([*pip, "install", "--quiet", *wheels], work)
    return venv / "bin"


def test_every_command_of_the_installed_chs_starts(installed: Path, tmp_path: Path) -> None:
    chs = str(installed / "chs")
    assert "Customer Health Score engine" in run([chs, "--help"], tmp_path)
    commands = subcommands()
    assert ["worker"] in commands
    assert ["model", "check"] in commands
    for command in commands:
        run([chs, *command, "--help"], tmp_path)
    python = str(installed / "python")
    imported = run(
        [python, "-c", f"import {', '.join(PACKAGES)}; print(streams.__file__)"], tmp_path
    )
    assert str(ROOT) not in imported  # the installed copy, not the source tree


def test_the_installed_chs_finds_its_packaged_model_and_rules(
    installed: Path, tmp_path: Path
) -> None:
    summary = run([str(installed / "chs"), "model", "check"], tmp_path)
    assert summary.startswith("model default@")
    assert "components:" in summary
    rules = run(
        [
            str(installed / "python"),
            "-c",
            "from alerts.config import default_rules as r; print(r().critical_events[0].name)",
        ],
        tmp_path,
    )
    assert rules.strip() == "failed_payment"


def test_the_installed_chs_api_serves_the_page(
    installed: Path, tmp_path: Path, redis_url: str
) -> None:
    port = free_port()
    env = {"CHS_REDIS_URL": redis_url, "CHS_API_PORT": str(port)}
    api = start_process("api", [str(installed / "chs"), "api"], tmp_path / "api.log", env)
    try:
        wait_for_port(api, port, timeout=30)
        for path, packaged in (
            ("/", "index.html"),
            ("/static/app.js", "app.js"),
            ("/static/style.css", "style.css"),
        ):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
                assert answer.status == 200
                assert answer.read() == (ROOT / "api" / "page" / packaged).read_bytes()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
            assert answer.status == 200
    finally:
        api.stop()
