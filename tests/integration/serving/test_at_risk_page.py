"""The at-risk page in headless Chromium, after a real run: demo events through the broker,
scored by a real worker into Redis, served by a real ``chs api`` process.

The screenshot is kept in ``test-artifacts/at-risk-page.png``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from streams.ops.demo import DemoOptions, attribute_snapshots, make_accounts
from streams.ops.devstack import chs_command, free_port, settings_env, start_process, wait_for_port
from streams.settings import Settings
from streams.worker.event_producer import EventProducer
from tests.conftest import isolated, start_worker
from tests.integration.kafka import wait_consumed
from tests.integration.pipeline.test_pipeline import produce
from tests.integration.reference import demo_events
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration

ACCOUNTS = 30
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"


class FirstRow(HTMLParser):
    """The account id and the text of the first account row of the page's table."""

    def __init__(self) -> None:
        super().__init__()
        self.account: str | None = None
        self.text: list[str] = []
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr" and self.account is None and dict(attrs).get("data-account"):
            self.account = dict(attrs)["data-account"]
            self._inside = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._inside = False

    def handle_data(self, data: str) -> None:
        if self._inside:
            self.text.append(data.strip())


def chromium(*args: str) -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium is not installed (make test installs the Debian package)"
    done = subprocess.run(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def audit_published(base: str) -> bool:
    try:
        return bool(get_json(f"{base}/audit")["models"])
    except urllib.error.HTTPError:
        return False  # 404 until the worker has published figures


async def test_the_most_at_risk_account_is_first_with_its_drivers(
    worker_settings: Settings, private_redis: str, tmp_path: Path
) -> None:
    settings = isolated(
        worker_settings,
        tmp_path,
        redis_url=SecretStr(private_redis),
        clock="event",
        audit_ship_seconds=1.0,
    )
    worker = start_worker(settings, tmp_path / "worker.log")
    api_settings = settings.model_copy(update={"api_port": free_port()})
    api = start_process("api", chs_command("api"), tmp_path / "api.log", settings_env(api_settings))
    try:
        wait_for_port(api, api_settings.api_port, timeout=30)
        snapshots = attribute_snapshots(make_accounts(DemoOptions(accounts=ACCOUNTS)), time.time())
        groups = {s.parent_account_id for s in snapshots if s.parent_account_id is not None}
        async with EventProducer(settings) as producer:
            for snapshot in snapshots:
                await producer.send_model(settings.topic_accounts, snapshot.account_id, snapshot)
            await producer.flush()
        events = demo_events(None, accounts=ACCOUNTS, seed=7)
        await produce(settings, events)
        await wait_consumed(settings, list(settings.event_topics), within=120)
        base = f"http://127.0.0.1:{api_settings.api_port}"
        # The view is written behind chs.scores: wait until every account is in it, and the
        # demo's groups (parents scored as roll-ups of their children).
        await eventually(
            lambda: len(get_json(f"{base}/accounts?limit=200")["items"]) == ACCOUNTS + len(groups),
            within=30,
        )
        rollups = get_json(f"{base}/accounts?rollup=true")["items"]
        assert {parent["account_id"] for parent in rollups} == groups
        flat = get_json(f"{base}/accounts?limit=50")["items"]
        worst = flat[0]
        assert worst["drags"], "the most at-risk account has nothing pulling it down"

        await eventually(lambda: audit_published(base), within=30)
        dom = chromium("--virtual-time-budget=10000", "--dump-dom", f"{base}/")
        # The audit panel: the worker's figures (none judged yet: no churn in this stream).
        assert "churns of the last 180 days" in dom
        assert "live default" in dom
        # Grouped (the default): each group's children right under it.
        for parent in rollups:
            children = get_json(f"{base}/accounts?parent={parent['account_id']}")["items"]
            assert children
            for child in children:
                assert (
                    f'data-account="{child["account_id"]}" data-parent="{parent["account_id"]}"'
                    in dom
                )
        assert "group of 1" in dom
        # A child at risk is never hidden behind a healthy parent: every account of the
        # worst-first list is on the page, a child under its parent.
        for account in flat:
            marker = f'data-account="{account["account_id"]}"'
            if account["parent"] is not None and account["rollup"] is None:
                marker += f' data-parent="{account["parent"]}"'
            assert marker in dom, account["account_id"]
        # The first row is the worst account, or the group it belongs to.
        row = FirstRow()
        row.feed(dom)
        assert row.account == (worst["parent"] or worst["account_id"])
        if worst["parent"] is None:
            shown = " ".join(row.text)
            assert f"{worst['score']:.1f}" in shown
            for words in worst["drivers"] + worst["drags"]:
                assert words in shown
        # Each row names its segment and the segment's band thresholds; an empty cell says why.
        healthy_from = next(band["min"] for band in worst["bands"])
        assert f"{worst['segment'] or 'default'}: healthy from {healthy_from:g}" in dom
        if any(not account["drivers"] for account in flat):
            assert "first score" in dom or "no change since its last update" in dom
        if any(account["onboarding"] for account in flat):
            assert "days of data" in dom
        # The audit panel says in words how many churners each lead judged (none churned here).
        assert "30 days before: 0 of 0 churners judged" in dom

        ARTIFACTS.mkdir(exist_ok=True)
        screenshot = ARTIFACTS / "at-risk-page.png"
        screenshot.unlink(missing_ok=True)
        chromium(
            "--virtual-time-budget=10000",
            "--window-size=1400,1000",
            f"--screenshot={screenshot}",
            f"{base}/",
        )
        assert screenshot.stat().st_size > 10_000
    finally:
        api.stop()
        worker.stop()
