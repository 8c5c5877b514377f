"""Roll-ups: the arithmetic, a parent's children as they report, re-parenting and cycles."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from scoring.events import AccountAttributes
from scoring.rollup import (
    MAX_DEPTH,
    ChildReport,
    HierarchyRefused,
    Member,
    apply_report,
    member_weights,
    report_to_parent,
    rollup_score,
)
from scoring.scoring_model import (
    ParentScoring,
    RollupMethod,
    RollupSettings,
    ScoringModel,
    default_model,
)
from scoring.state import AccountState, Published, fold
from scoring.update import Rescorer, Trigger
from tests.factories import T0, login

NOW = T0.timestamp()


def report(
    parent: str,
    child: str,
    score: float | None,
    mrr: float | None = None,
    minutes: float = 0.0,
    leaves: bool = False,
    path: list[str] | None = None,
) -> ChildReport:
    return ChildReport(
        account_id=parent,
        child_id=child,
        score=score,
        band=None,
        mrr=None if mrr is None else Decimal(str(mrr)),
        at=T0 + timedelta(minutes=minutes),
        leaves=leaves,
        path=path or [child],
    )


def parent_with(*reports: ChildReport) -> AccountState:
    state = AccountState(account_id=reports[0].account_id)
    for r in reports:
        apply_report(state, r)
    return state


def model_with(method: RollupMethod, parents: ParentScoring = ParentScoring.ROLLUP) -> ScoringModel:
    return default_model().model_copy(
        update={"rollup": RollupSettings(method=method, parents=parents)}
    )


def test_children_are_weighted_by_mrr_and_one_without_weighs_as_the_average() -> None:
    members = [
        Member("a", 80, False, 300.0),
        Member("b", 20, False, 100.0),
        Member("c", 50, False, None),
    ]
    weights = member_weights(members, RollupMethod.MRR_WEIGHTED)
    assert weights == pytest.approx([0.5, 1 / 6, 1 / 3])  # c weighs the average, 200
    assert sum(weights) == pytest.approx(1.0)


def test_without_any_mrr_or_with_all_zero_the_children_weigh_alike() -> None:
    alike = [Member("a", 80, False, None), Member("b", 20, False, None)]
    assert member_weights(alike, RollupMethod.MRR_WEIGHTED) == [0.5, 0.5]
    free = [Member("a", 80, False, 0.0), Member("b", 20, False, 0.0)]
    assert member_weights(free, RollupMethod.MRR_WEIGHTED) == [0.5, 0.5]


def test_mean_and_min() -> None:
    members = [Member("a", 80, False, 900.0), Member("b", 20, False, 100.0)]
    assert member_weights(members, RollupMethod.MEAN) == [0.5, 0.5]
    assert member_weights(members, RollupMethod.MIN) == [0.0, 1.0]


def test_the_parent_score_is_the_mrr_weighted_roll_up_of_its_scored_children() -> None:
    state = parent_with(
        report("group", "eu", 80, mrr=3000),
        report("group", "us", 20, mrr=1000),
        report("group", "new", None, mrr=99999),  # no score yet: listed, not weighed
    )
    score = rollup_score(state, default_model(), None)
    assert score is not None
    assert score.value == 65.0
    assert score.rollup is not None
    assert (score.rollup.children, score.rollup.scored_children) == (3, 2)
    assert score.components["child:us"].contribution == 5.0


def test_min_takes_the_worst_child() -> None:
    state = parent_with(report("group", "eu", 80), report("group", "us", 35))
    score = rollup_score(state, model_with(RollupMethod.MIN), None)
    assert score is not None
    assert score.value == 35.0


def test_an_older_report_is_ignored_and_a_leaving_child_is_dropped() -> None:
    state = parent_with(report("group", "eu", 80, minutes=10))
    assert not apply_report(state, report("group", "eu", 10, minutes=5))
    assert state.children["eu"].score == 80
    assert apply_report(state, report("group", "eu", None, minutes=20, leaves=True))
    assert state.children == {}
    assert rollup_score(state, default_model(), None) is None


def test_a_report_that_comes_back_to_an_account_on_its_path_is_a_cycle() -> None:
    state = AccountState(account_id="a")
    with pytest.raises(HierarchyRefused) as refused:
        apply_report(state, report("a", "c", 50, path=["a", "b", "c"]))
    assert refused.value.code == "parent_cycle"
    assert "parent cycle a -> b -> c -> a" in refused.value.reason
    assert state.children == {}


def test_a_hierarchy_deeper_than_the_limit_is_refused() -> None:
    path = [f"level{n}" for n in range(MAX_DEPTH + 1)]
    with pytest.raises(HierarchyRefused) as refused:
        apply_report(AccountState(account_id="top"), report("top", path[-1], 50, path=path))
    assert refused.value.code == "hierarchy_too_deep"


def child_state(parent: str | None, mrr: int = 100, published: float | None = 70.0) -> AccountState:
    state = AccountState(account_id="eu")
    state.attributes = AccountAttributes(
        account_id="eu", updated_at=T0, mrr=mrr, parent_account_id=parent
    )
    if published is not None:
        state.published = Published(score=published, band="healthy")
    return state


def test_re_parenting_tells_the_old_parent_it_left_and_the_new_one_its_score() -> None:
    state = child_state("holding-a")
    [first] = report_to_parent(state, NOW, changed=False, path=[])
    assert (first.account_id, first.score, first.leaves) == ("holding-a", 70.0, False)
    assert report_to_parent(state, NOW, changed=False, path=[]) == []  # nothing new
    state.attributes = child_state("holding-b").attributes
    left, joined = report_to_parent(state, NOW + 60, changed=True, path=[])
    assert (left.account_id, left.leaves) == ("holding-a", True)
    assert (joined.account_id, joined.score, joined.mrr) == ("holding-b", 70.0, Decimal(100))
    holding_a = parent_with(first)
    apply_report(holding_a, left)
    assert holding_a.children == {}


def test_a_parent_reports_up_with_its_path_and_its_children_mrr() -> None:
    middle = parent_with(report("middle", "eu", 80, mrr=300), report("middle", "us", 60, mrr=200))
    middle.attributes = AccountAttributes(
        account_id="middle", updated_at=T0, parent_account_id="top"
    )
    middle.published = Published(score=72.0, band="healthy")
    [up] = report_to_parent(middle, NOW, changed=True, path=["eu"])
    assert up.path == ["eu", "middle"]
    assert up.mrr == Decimal(500)  # no MRR of its own: its children's


def test_the_rescorer_scores_a_parent_by_its_roll_up_or_its_own_score() -> None:
    state = parent_with(report("group", "eu", 30, mrr=100))
    fold(state, login(account="group"))
    rolled = Rescorer(default_model()).evaluate(state, NOW)
    assert rolled is not None
    assert rolled.score.value == 30.0
    assert rolled.score.rollup is not None
    own_model = model_with(RollupMethod.MRR_WEIGHTED, ParentScoring.OWN)
    own = Rescorer(own_model).evaluate(state, NOW)
    assert own is not None
    assert own.score.rollup is None
    both_model = model_with(RollupMethod.MEAN, ParentScoring.BOTH)
    both = Rescorer(both_model).evaluate(state, NOW)
    assert both is not None
    assert both.score.rollup is not None
    assert both.score.rollup.own_score
    assert both.score.value == pytest.approx((30.0 + own.score.value) / 2, abs=0.1)


def test_a_parent_update_says_it_is_a_roll_up_and_names_the_children_that_drag() -> None:
    state = parent_with(report("group", "eu", 90, mrr=100), report("group", "us", 20, mrr=300))
    rescorer = Rescorer(default_model())
    evaluation = rescorer.evaluate(state, NOW)
    assert evaluation is not None
    update = rescorer.publish(state, evaluation, NOW, Trigger.CHILD, None, T0)
    assert update is not None
    assert update.rollup is not None
    assert update.drags[0].component == "child:us"
    assert update.drags[0].text.startswith("us -60: score 20, 75% of the group")
    assert update.measures == {}
    apply_report(state, report("group", "us", 60, mrr=300, minutes=5))
    later = rescorer.evaluate(state, NOW + 300)
    assert later is not None
    moved = rescorer.publish(state, later, NOW + 300, Trigger.CHILD, None, T0)
    assert moved is not None
    assert moved.drivers[0].text == "us +30: score 60, 75% of the group"


def test_a_default_roll_up_keeps_the_model_version() -> None:
    model = default_model()
    same = model.model_copy(update={"rollup": RollupSettings()})
    other = model_with(RollupMethod.MIN)
    assert same.version == model.version
    assert other.version != model.version


def test_an_account_cannot_be_its_own_parent() -> None:
    with pytest.raises(ValueError, match="own parent"):
        AccountAttributes(account_id="a", updated_at=T0, parent_account_id="a")
