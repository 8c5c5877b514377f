from __future__ import annotations

import argparse
from datetime import timedelta

import pytest
from pydantic import ValidationError

from scoring.events import OverrideAction
from scoring.rollup import ChildReport, apply_report
from scoring.scoring_model import default_model
from scoring.state import AccountState
from scoring.update import Rescorer, Trigger
from streams.ops.commands import describe_model, describe_update, override_from_args
from tests.factories import COMPUTED, T0, rescore, scored


def test_describe_model_lists_components_with_their_share() -> None:
    text = describe_model(default_model())
    assert "usage         19.0%  weighted_mean" in text  # 26 of 137
    assert "days_since_last_login" in text
    assert "peers: ranked within a segment; at least 50 accounts" in text
    assert "bands: healthy >= 80, at-risk >= 55, critical >= 0" in text
    assert "new accounts judged from day 14 of data" in text


def test_describe_update_shows_components_measures_and_trend() -> None:
    labels = {m.name: m.label for c in default_model().components.values() for m in c.measures}
    text = describe_update(scored(), labels)
    assert text.startswith("acme: ")
    assert "NEW: 10 of 14 days of data" in text.splitlines()[0]  # ten days of logins
    assert "trend: not enough history yet" in text
    assert "days since last login" in text
    assert "last change: first score" in text
    update = scored()
    assert update.drags
    assert "what pulls it down: " + "; ".join(d.text for d in update.drags) in text


def test_describe_update_of_a_parent_says_it_is_a_roll_up_of_its_children() -> None:
    parent = AccountState(account_id="group")
    for child, score in (("eu", 80.0), ("us", 30.0)):
        report = ChildReport(
            account_id="group", child_id=child, score=score, at=T0, path=[child], mrr=100
        )
        apply_report(parent, report)
    update = rescore(
        Rescorer(default_model()), parent, T0.timestamp(), Trigger.CHILD, None, COMPUTED
    )
    assert update is not None
    text = describe_update(update, {})
    assert "roll-up (mrr_weighted) of 2 scored children of 2:" in text
    assert "child:us" in text
    assert "measures" not in text
    assert "what pulls it down: us -35: score 30, 50% of the group" in text


def args(**fields: object) -> argparse.Namespace:
    return argparse.Namespace(**fields)


def test_override_from_cli_arguments() -> None:
    now = T0
    setting = override_from_args(
        args(
            override_command="set",
            account="acme",
            author="ann",
            reason="exec left",
            score=20.0,
            expires=timedelta(days=14),
            replace=None,
        ),
        now,
    )
    assert setting.action is OverrideAction.SET
    assert setting.expires_at == now + timedelta(days=14)
    clearing = override_from_args(
        args(override_command="clear", account="acme", author="ann", reason="renewed"), now
    )
    assert clearing.action is OverrideAction.CLEAR
    with pytest.raises(ValidationError):
        override_from_args(
            args(
                override_command="set",
                account="acme",
                author="ann",
                reason="x",
                score=120.0,
                expires=timedelta(days=1),
                replace=None,
            ),
            now,
        )
