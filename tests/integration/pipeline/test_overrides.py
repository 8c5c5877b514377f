"""CSM overrides end to end: `chs override set`, the worker, `chs score explain`."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from scoring.scoring_model import OVERRIDE_COMPONENT
from streams.ops.devstack import ManagedProcess, chs_command, settings_env
from streams.settings import Settings
from tests.factories import login
from tests.integration.kafka import Records, read_until
from tests.integration.pipeline.test_pipeline import latest_updates, produce, recent

pytestmark = pytest.mark.integration


def chs(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        chs_command(*args),
        env={**os.environ, **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_a_csm_override_enters_the_score_and_is_never_silently_replaced(
    worker: ManagedProcess, worker_settings: Settings
) -> None:
    account = f"override-{uuid.uuid4().hex[:8]}"
    await produce(worker_settings, recent([login(account, days=-d) for d in range(5)]))
    await read_until(
        worker_settings,
        worker_settings.topic_scores,
        lambda records: account in latest_updates(records, {account}),
    )
    first = chs(
        worker_settings,
        "override",
        "set",
        account,
        "--score",
        "15",
        "--reason",
        "champion left",
        "--expires",
        "14d",
        "--author",
        "ann",
    )
    assert first.returncode == 0, first.stdout + first.stderr

    def overridden(records: Records) -> bool:
        update = latest_updates(records, {account}).get(account)
        return update is not None and update.override is not None

    records = await read_until(worker_settings, worker_settings.topic_scores, overridden)
    update = latest_updates(records, {account})[account]
    assert update.override is not None
    assert update.override.author == "ann"
    assert update.components[OVERRIDE_COMPONENT].score == 15.0
    assert "CSM override 15 by ann (champion left)" in update.summary

    explained = chs(worker_settings, "score", "explain", account)
    for _ in range(20):  # the Redis view is written a moment after the scores topic
        if "CSM override 15 by ann" in explained.stdout:
            break
        explained = chs(worker_settings, "score", "explain", account)
    assert explained.returncode == 0, explained.stderr
    assert "CSM override 15 by ann" in explained.stdout
    assert "days since last login" in explained.stdout

    second = chs(
        worker_settings,
        "override",
        "set",
        account,
        "--score",
        "90",
        "--reason",
        "all good",
        "--expires",
        "7d",
        "--author",
        "bob",
    )
    assert second.returncode == 1
    assert f"--replace {update.override.override_id}" in second.stdout


def test_explain_names_an_unknown_account(
    worker: ManagedProcess, worker_settings: Settings
) -> None:
    result = chs(worker_settings, "score", "explain", "no-such-account")
    assert result.returncode == 1
    assert "no score for account 'no-such-account'" in result.stdout
