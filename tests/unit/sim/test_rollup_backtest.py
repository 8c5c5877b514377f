"""The group backtest: random groups, what a group lost, and each roll-up's AUC."""

from __future__ import annotations

from datetime import date

import pytest

from scoring.scoring_model import RollupMethod
from sim.backtest import Observation
from sim.rollup_backtest import GroupAt, groups_at, method_figures, random_groups


def test_random_groups_hold_every_account_once_in_groups_of_two_to_eight() -> None:
    accounts = [f"a{n}" for n in range(100)]
    groups = random_groups(accounts, seed=3)
    assert sorted(a for g in groups for a in g) == sorted(accounts)
    assert all(2 <= len(g) <= 8 for g in groups[:-1])
    assert groups == random_groups(accounts, seed=3)


def test_the_share_lost_weighs_mrr_and_a_member_without_weighs_the_average() -> None:
    group = GroupAt(scores=(10, 90, 90), mrr=(300.0, 100.0, None), churned=(True, False, False))
    assert group.lost_share() == pytest.approx(300 / 600)


def observation(account: str, score: float, churned: bool) -> Observation:
    return Observation(account, date(2025, 6, 1), score, "x", {}, {}, churned)


def test_groups_need_two_observed_members() -> None:
    found = groups_at(
        [observation("a", 50, False), observation("b", 60, True), observation("c", 70, False)],
        [["a", "b"], ["c", "d"]],
        {"a": 10.0, "b": None},
    )
    assert found == [GroupAt(scores=(50, 60), mrr=(10.0, None), churned=(False, True))]


def test_mrr_weighting_finds_the_groups_whose_big_member_is_failing() -> None:
    # Each group: a big member and a small one. Where the big one scores low it churns; the
    # small ones score low too but their churn costs the group little.
    found = [
        GroupAt(scores=(20, 90), mrr=(900.0, 100.0), churned=(True, False)),
        GroupAt(scores=(30, 80), mrr=(900.0, 100.0), churned=(True, False)),
        GroupAt(scores=(90, 20), mrr=(900.0, 100.0), churned=(False, True)),
        GroupAt(scores=(80, 30), mrr=(900.0, 100.0), churned=(False, True)),
    ]
    figures = {f.method: f for f in method_figures(found)}
    assert figures[RollupMethod.MRR_WEIGHTED].auc_mrr_lost == 1.0
    assert figures[RollupMethod.MEAN].auc_mrr_lost == 0.5  # every group means 55
    assert figures[RollupMethod.MIN].auc_any_churn is None  # every group lost a member
