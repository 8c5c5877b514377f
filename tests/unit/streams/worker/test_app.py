"""The worker's wiring: what ``create_app`` builds from the settings (no broker)."""

from __future__ import annotations

from pathlib import Path

from faust.types import TP

from alerts.config import default_rules
from scoring.scoring_model import default_model
from streams.pipeline.clock import WallClock
from streams.settings import Settings
from streams.worker.account_table import AccountTable
from streams.worker.app import create_app
from streams.worker.faust_overrides import ChsApp


def test_the_app_reads_every_input_topic_raw_into_one_task_and_runs_each_feed(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, topic_partitions=6, topic_login="acme.logins")
    app = create_app(settings, default_model(), default_rules(), WallClock())
    assert isinstance(app, ChsApp)
    assert set(app.bulk_queues) == set(settings.input_topics)
    assert len({id(queue) for queue in app.bulk_queues.values()}) == 1  # one scoring task
    table = app.tables["accounts"]
    assert isinstance(table, AccountTable)
    assert table.partitions == 6
    tasks = sorted(task.__name__ for task in app._app_tasks)
    assert tasks == sorted(
        [
            "score_inputs",
            "write_states",
            "ship_peer_books",
            "read_peer_books",
            "ship_audit",
            "read_audit_books",
            "write_score_view",
            "deliver_alerts",
        ]
    )


async def test_no_partition_is_scored_from_a_rebalance_until_the_recovery_is_merged(
    tmp_path: Path,
) -> None:
    """Faust's recovery replays every active partition's changelog, kept ones too, into
    records merged only once it completes: nothing may be scored (not even a due account)
    in between."""
    settings = Settings(data_dir=tmp_path, topic_partitions=6)
    app = create_app(settings, default_model(), default_rules(), WallClock())
    table = app.tables["accounts"]
    assert isinstance(table, AccountTable)
    table.active_partitions = frozenset({0, 1})
    kept = {TP(settings.topic_login, 0), TP(settings.topic_login, 1)}
    await table.on_rebalance(kept, set(), set())
    assert table.active_partitions == frozenset()
