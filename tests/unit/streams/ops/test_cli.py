from __future__ import annotations

import argparse
from datetime import timedelta
from importlib import resources
from pathlib import Path

import pytest

from streams.ops.cli import main, parse_duration


def test_bad_configuration_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHS_TOPIC_PARTITIONS", "zero")
    with pytest.raises(SystemExit) as exited:
        main(["worker"])
    assert "CHS_TOPIC_PARTITIONS" in str(exited.value.code)


def test_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exited:
        main(["frobnicate"])
    assert exited.value.code == 2


def test_model_check_summarises_a_good_file(capsys: pytest.CaptureFixture[str]) -> None:
    path = resources.files("scoring").joinpath("models/default.yaml")
    with pytest.raises(SystemExit) as exited:
        main(["model", "check", str(path)])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("model default@")
    assert "billing" in out
    assert "rank among peers (higher is better), full from the 60th percentile" in out
    assert "segment enterprise: when plan in ['enterprise']" in out


def test_model_check_names_file_and_field_of_a_bad_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nbands: 3\n")
    with pytest.raises(SystemExit) as exited:
        main(["model", "check", str(path)])
    assert exited.value.code == 1
    out = capsys.readouterr().out
    assert f"{path}: bands:" in out
    assert f"{path}: components:" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", timedelta(minutes=90)),
        ("12h", timedelta(hours=12)),
        ("14d", timedelta(days=14)),
        ("2w", timedelta(weeks=2)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


def test_bad_duration_is_a_usage_error() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="14d"):
        parse_duration("two weeks")
