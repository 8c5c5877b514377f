from __future__ import annotations

import pytest

from streams.cli import main


def test_bad_configuration_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHS_TOPIC_PARTITIONS", "zero")
    with pytest.raises(SystemExit) as exited:
        main(["worker"])
    assert "CHS_TOPIC_PARTITIONS" in str(exited.value.code)


def test_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exited:
        main(["frobnicate"])
    assert exited.value.code == 2
