"""The deployment files: compose validates, Prometheus rules pass promtool, the Grafana
dashboard is valid JSON with the panels operations rely on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, check=False, timeout=60, env=env
    )


def test_compose_file_validates() -> None:
    compose = shutil.which("docker-compose")
    assert compose is not None, "docker-compose (Debian package docker-compose) is needed"
    without_password = {k: v for k, v in os.environ.items() if k != "CHS_REDIS_PASSWORD"}
    # Redis needs a password: compose refuses to start without one.
    unset = run(compose, "-f", "docker-compose.yml", "config", "-q", env=without_password)
    assert unset.returncode != 0
    assert "CHS_REDIS_PASSWORD" in unset.stderr
    env = {**without_password, "CHS_REDIS_PASSWORD": "compose-test"}
    result = run(compose, "-f", "docker-compose.yml", "config", env=env)
    assert result.returncode == 0, result.stderr
    assert "--requirepass" in result.stdout
    assert "redis://:compose-test@redis:6379/0" in result.stdout
    profile = ("--profile", "demo", "config", "--services")
    services = run(compose, "-f", "docker-compose.yml", *profile, env=env)
    assert set(services.stdout.split()) == {
        "kafka",
        "redis",
        "worker",
        "api",
        "demo",
        "prometheus",
        "grafana",
    }


def test_prometheus_rules_and_config_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool (Debian package prometheus) is needed"
    rules = run(promtool, "check", "rules", "deploy/prometheus/rules.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "8 rules found" in rules.stdout
    # The rules' own unit tests: the model-accuracy alert fires on a sunk AUC only.
    tested = run(promtool, "test", "rules", "deploy/prometheus/rules_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    config = run(promtool, "check", "config", "--syntax-only", "deploy/prometheus/prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_dashboard_has_the_operations_panels() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/chs.json").read_text())
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert titles == {
        "Accounts by band",
        "Events/s by kind",
        "p99 lag from event to score",
        "Alerts/s by rule",
        "Slack failures",
        "Consumer lag by topic",
        "Does the score foretell churn? (live audit)",
    }
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in (
        "chs_accounts",
        "chs_events_consumed_total",
        "chs_event_lag_seconds_bucket",
        "chs_alerts_total",
        "chs_slack_deliveries_total",
        "chs_consumer_lag_messages",
        "chs_model_auc",
    ):
        assert metric in exprs


def test_compose_runs_the_worker_the_api_and_the_demo_from_the_image_as_a_user() -> None:
    compose = shutil.which("docker-compose")
    assert compose is not None, "docker-compose (Debian package docker-compose) is needed"
    env = {**os.environ, "CHS_REDIS_PASSWORD": "compose-test"}
    result = run(compose, "-f", "docker-compose.yml", "--profile", "demo", "config", env=env)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    image = services["worker"]["image"]
    assert services["worker"]["build"]["context"] == str(ROOT)
    for name in ("worker", "api", "demo"):
        assert services[name]["image"] == image
        assert services[name]["command"] == [name]
    # The runtime stage (the last FROM) runs as a user of its own, not root.
    runtime = (ROOT / "Dockerfile").read_text().rsplit("\nFROM ", 1)[1]
    users = [line.split()[1] for line in runtime.splitlines() if line.startswith("USER ")]
    assert users
    assert users[-1] not in ("root", "0")
