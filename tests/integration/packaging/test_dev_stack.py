"""`chs dev` (what `make run` calls): live score changes within 30 s, Ctrl-C leaves nothing."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import cast

import pytest

from streams.ops.devstack import chs_command

pytestmark = pytest.mark.integration

SCORE_LINE = re.compile(r"^\S+\s+(first|\d+\.\d)\s+->\s+\d+\.\d\s+(healthy|at-risk|critical)")


def children_of(pid: int) -> set[int]:
    """Every live descendant of ``pid``, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def listed_accounts(url: str, within: float = 20.0) -> list[object]:
    """The API's first page, once the worker's view (written behind chs.scores) has some."""
    deadline = time.monotonic() + within
    while True:
        with urllib.request.urlopen(url, timeout=10) as answer:
            items: list[object] = json.loads(answer.read())["items"]
        if items or time.monotonic() > deadline:
            return items
        time.sleep(0.5)


def test_dev_shows_live_scores_and_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHS_")}
    dev = subprocess.Popen(
        chs_command("dev"),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read_output() -> None:
        for line in dev.stdout or ():
            lines.put(line)

    reader = threading.Thread(target=read_output)
    reader.start()
    output: list[str] = []
    deadline = time.monotonic() + 30
    score_lines = 0
    descendants: set[int] = set()
    try:
        while score_lines < 20 and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            output.append(line)
            score_lines += bool(SCORE_LINE.match(line))
        assert score_lines >= 20, "no live score changes within 30 s:\n" + "".join(output)
        descendants = children_of(dev.pid)
        names = {Path(f"/proc/{p}/comm").read_text().strip() for p in descendants}
        assert any(name == "tansu" for name in names)
        assert any(name == "redis-server" for name in names)
        assert len(descendants) >= 5  # broker, redis, worker, api, demo
        page = next(re.search(r"api +(http://\S+)", line) for line in output if "  api " in line)
        assert page is not None
        listed = listed_accounts(f"{page.group(1)}accounts?limit=1")
        assert listed, "the API lists no account"
        account = cast(dict[str, str], listed[0])["account_id"]  # in the view already
        # The stack's settings for chs commands in another terminal: `. .run/env`, then chs.
        assert any(line.startswith("  cli     . .run/env") for line in output)
        explained = subprocess.run(
            [
                "bash",
                "-c",
                f". .run/env && {' '.join(chs_command('score', 'explain', account))}",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert explained.returncode == 0, explained.stderr
        assert explained.stdout.startswith(f"{account}: ")

        dev.send_signal(signal.SIGINT)
        dev.wait(timeout=60)
        reader.join(timeout=5)
        rest = "".join(lines.queue)
        assert dev.returncode == 0, rest
        assert "every process it started has exited" in rest
        assert not [pid for pid in descendants if alive(pid)]
        assert not (tmp_path / ".run" / "env").exists()
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait()
        for pid in descendants:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert (tmp_path / ".run" / "worker.log").exists()
