"""The score audits itself on the real broker: 60 days of history for 40 accounts, half of
them fading, then the faders churn. The worker judges each churn against the survivors of 30
and 60 days before, for the live model and a shadow, and ``/metrics`` and ``GET /audit`` say
how well the score ranked them; the same after a restart (the figures come back from the
table's changelog). With the outcomes produced before the history they close, on 8
partitions, ``GET /audit`` says what ``chs audit`` says on the same records."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from alerts.config import default_rules
from scoring.events import Event, FeatureUseEvent, LoginEvent, OutcomeEvent, OutcomeKind
from scoring.scoring_model import default_model
from sim.backtest import record_time
from streams.ops.audit_replay import AuditReplay
from streams.ops.devstack import ManagedProcess
from streams.settings import Settings
from streams.worker.event_producer import EventProducer
from tests.conftest import isolated, start_worker
from tests.integration.kafka import read_until, wait_consumed
from tests.integration.serving.test_api_contract import start_api
from tests.integration.serving.test_operations import get, metric
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration

ACCOUNTS = 40
DAYS = 60
START = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=62)
CHURN_AT = START + timedelta(days=DAYS, minutes=30)


def fading(account: int) -> bool:
    return account % 2 == 1


def day_events(account: int, day: int, rng: random.Random) -> list[Event]:
    """Four users; a steady account's all come every day, a fading one's ever fewer."""
    events: list[Event] = []
    name = f"audit-{account:02d}"
    for user in range(4):
        presence = max(0.0, 1.0 - day / 45) if fading(account) else 1.0
        if rng.random() >= presence:
            continue
        at, who = START + timedelta(days=day, hours=9 + user), f"u{user}"
        events.append(
            LoginEvent(
                event_id=f"{name}-{day}-{user}-l", account_id=name, occurred_at=at, user_id=who
            )
        )
        events.append(
            FeatureUseEvent(
                event_id=f"{name}-{day}-{user}-f",
                account_id=name,
                occurred_at=at,
                user_id=who,
                feature=f"f{user}",
            )
        )
    return events


def history() -> list[Event]:
    rng = random.Random(5)
    events = [e for day in range(DAYS) for a in range(ACCOUNTS) for e in day_events(a, day, rng)]
    return sorted(events, key=lambda e: e.occurred_at)


def after_the_churn() -> list[Event]:
    """The steady accounts go on for two more days: event time moves past the day of the
    churns, and the worker judges them."""
    rng = random.Random(6)
    days = (DAYS, DAYS + 1)
    events = [
        e for d in days for a in range(ACCOUNTS) if not fading(a) for e in day_events(a, d, rng)
    ]
    return sorted(events, key=lambda e: e.occurred_at)


def churns() -> list[OutcomeEvent]:
    return [
        OutcomeEvent(
            event_id=f"churn-{a}",
            account_id=f"audit-{a:02d}",
            occurred_at=CHURN_AT,
            outcome=OutcomeKind.CHURNED,
        )
        for a in range(ACCOUNTS)
        if fading(a)
    ]


@pytest.fixture
def audited(worker_settings: Settings, private_redis: str, tmp_path: Path) -> Settings:
    candidate = default_model().model_dump(mode="json", exclude_defaults=True)
    shadow_file = tmp_path / "candidate.yaml"
    shadow_file.write_text(yaml.safe_dump({**candidate, "name": "candidate"}))
    settings = isolated(
        worker_settings,
        tmp_path,
        clock="event",
        topic_partitions=2,
        redis_url=private_redis,
        audit_ship_seconds=1.0,
        shadow_model_files=[shadow_file],
        event_order=True,
    )
    return settings


async def produce_all(settings: Settings, events: list[Event | OutcomeEvent]) -> None:
    async with EventProducer(settings) as producer:
        for event in events:
            if isinstance(event, OutcomeEvent):
                await producer.send_model(settings.topic_outcomes, event.account_id, event)
            else:
                await producer.send(event)
        await producer.flush()


def audit_figure(port: int) -> dict[str, object]:
    status, body = get(f"http://127.0.0.1:{port}/audit")
    return json.loads(body) if status == 200 else {}


def lead_30(report: dict[str, object], role: str) -> dict[str, object]:
    models = [m for m in report.get("models", []) if m["role"] == role]  # type: ignore[attr-defined]
    return next(lead for lead in models[0]["leads"] if lead["lead_days"] == 30) if models else {}


async def test_the_worker_measures_how_well_its_scores_foretold_the_churns(
    audited: Settings, private_redis: str, tmp_path: Path
) -> None:
    settings, live = audited, default_model().version
    worker: ManagedProcess = start_worker(settings, tmp_path / "worker-1.log")
    api, api_port = start_api(private_redis, tmp_path / "api.log", None)
    try:
        await produce_all(settings, [*history()])
        await wait_consumed(settings, list(settings.event_topics), within=180)
        bad = json.dumps({**churns()[0].model_dump(mode="json"), "outcome": "cancelled"})
        async with EventProducer(settings) as producer:
            await producer.send_raw(settings.topic_outcomes, b"audit-01", bad.encode())
        await produce_all(settings, [*churns(), *after_the_churn()])
        labels = {"lead_days": "30", "model": live, "role": "live"}
        await eventually(lambda: metric(settings, "chs_model_churners", **labels) == 20, within=120)
        auc = metric(settings, "chs_model_auc", **labels)
        assert auc > 0.9, f"the faders ranked low 30 days before they churned: {auc}"
        assert metric(settings, "chs_model_lift", **labels) > 1.5
        assert metric(settings, "chs_outcomes_total", outcome="churned") == 20
        await eventually(lambda: lead_30(audit_figure(api_port), "live").get("churners") == 20)
        report = audit_figure(api_port)
        assert lead_30(report, "live")["auc"] == pytest.approx(auc, abs=1e-4)
        assert lead_30(report, "shadow")["auc"] == pytest.approx(auc, abs=1e-4)  # same weights
        assert report["outcomes"] == {"churned": 20}
        # The churned accounts left the read model: no CSM is shown a score for them.
        gone = f"http://127.0.0.1:{api_port}/accounts/audit-01"
        await eventually(lambda: get(gone)[0] == 404, within=60)
        assert get(f"http://127.0.0.1:{api_port}/accounts/audit-00")[0] == 200
        dead = await read_until(settings, settings.topic_dlq, lambda records: bool(records))
        assert dict(dead[0].headers)["chs-reason-code"] == b"schema"
    finally:
        worker.stop()
    worker = start_worker(settings, tmp_path / "worker-2.log")
    try:
        labels = {"lead_days": "30", "model": live, "role": "live"}
        await eventually(lambda: metric(settings, "chs_model_churners", **labels) == 20, within=120)
        assert metric(settings, "chs_model_auc", **labels) == pytest.approx(auc, abs=1e-4)
    finally:
        worker.stop()
        api.stop()


async def test_outcomes_produced_before_the_history_they_close_are_judged_as_offline(
    worker_settings: Settings, private_redis: str, tmp_path: Path
) -> None:
    """A replay or a backfill: the outcome topic is read ahead of the event topics."""
    settings = isolated(
        worker_settings,
        tmp_path,
        clock="event",
        topic_partitions=8,
        redis_url=private_redis,
        audit_ship_seconds=1.0,
        event_order=True,
    )
    after = [
        LoginEvent(event_id=f"{c.event_id}-after", account_id=c.account_id,
                   occurred_at=c.occurred_at + timedelta(hours=12), user_id="u0")
        for c in churns()
    ]  # fmt: skip
    records: list[Event | OutcomeEvent] = [*churns(), *history(), *after_the_churn(), *after]
    offline = AuditReplay(default_model(), (), default_rules(), settings.audit_window_days)
    offline.run(sorted(records, key=record_time))
    expected = {lead.lead_days: lead for lead in offline.report().models[0].leads}
    assert expected[30].churners == expected[60].churners == ACCOUNTS // 2
    worker = start_worker(settings, tmp_path / "worker.log")
    api, api_port = start_api(private_redis, tmp_path / "api.log", None)
    try:
        await produce_all(settings, records)
        await eventually(lambda: lead_30(audit_figure(api_port), "live").get("churners") == 20,
                         within=120)  # fmt: skip
        live = {lead["lead_days"]: lead for lead in audit_figure(api_port)["models"][0]["leads"]}  # type: ignore[index]
        for lead_days, figure in expected.items():
            assert live[lead_days]["churners"] == figure.churners, lead_days
            if figure.auc is not None:
                assert live[lead_days]["auc"] == pytest.approx(figure.auc, abs=0.03), lead_days

        # Only what came after each churn is skipped.
        def skipped() -> float:
            return metric(settings, "chs_inputs_skipped_total", reason="churned")

        await eventually(lambda: skipped() >= len(after), within=60)
        assert skipped() == len(after)
    finally:
        worker.stop()
        api.stop()
