from __future__ import annotations

import random
from itertools import product

import pytest

from scoring.audit import (
    LEADS,
    SETTLE_SECONDS,
    TRAIL_DAYS,
    AuditBook,
    Auditor,
    LocalAudit,
    ScoreCounts,
    closing_score,
    hanley_mcneil_stderr,
)
from scoring.audit_report import build_report
from scoring.events import OutcomeKind
from scoring.state import SECONDS_PER_DAY, AccountState, apply_outcome, day_of, take_churn
from tests.factories import T0, outcome

DAY0 = day_of(T0.timestamp())


def exact_auc(churners: list[float], survivors: list[float]) -> float:
    """Mann-Whitney by brute force: a churner below a survivor counts 1, a tie a half."""
    pairs = list(product(churners, survivors))
    wins = sum(1.0 if c < s else 0.5 if c == s else 0.0 for c, s in pairs)
    return wins / len(pairs)


def counts_of(scores: list[float]) -> ScoreCounts:
    counts = ScoreCounts()
    for score in scores:
        counts.add(round(score * 10))
    return counts


@pytest.mark.parametrize(
    ("churners", "survivors"),
    [
        ([10.0, 20.0], [30.0, 40.0, 50.0]),  # perfect
        ([60.0, 70.0], [10.0, 20.0]),  # inverted
        ([50.0, 50.0, 20.0], [50.0, 50.0, 80.0, 10.0]),  # ties
        ([33.3, 33.4], [33.3, 33.4, 33.5]),  # ties at one decimal
        ([70.0], [70.0, 70.0, 70.0]),  # all tied: a coin
    ],
)
def test_the_mean_of_churners_shares_is_the_exact_auc(
    churners: list[float], survivors: list[float]
) -> None:
    counts = counts_of(survivors)
    results = [counts.standing(score) for score in churners]
    shares = [r.above for r in results if r is not None]
    assert sum(shares) / len(shares) == pytest.approx(exact_auc(churners, survivors))


def test_auc_on_random_scores_matches_brute_force() -> None:
    rng = random.Random(7)
    survivors = [round(rng.uniform(0, 100), 1) for _ in range(400)]
    churners = [round(rng.uniform(0, 70), 1) for _ in range(60)]
    counts = counts_of(survivors)
    shares = [counts.standing(score).above for score in churners]  # type: ignore[union-attr]
    assert sum(shares) / len(shares) == pytest.approx(exact_auc(churners, survivors))


def test_a_churner_in_the_lowest_tenth_counts_whole_and_a_tie_at_its_edge_in_part() -> None:
    survivors = counts_of([float(s) for s in range(10, 101, 10)])  # 10, 20 ... 100
    lowest = survivors.standing(5.0)
    assert lowest is not None
    assert lowest.bottom == 1.0
    above_the_lowest = survivors.standing(15.0)
    assert above_the_lowest is not None
    assert above_the_lowest.bottom == 0.0
    tied_with_lowest = survivors.standing(10.0)  # spans the positions 0 to 0.1
    assert tied_with_lowest is not None
    assert tied_with_lowest.bottom == 1.0
    straddling = counts_of([20.0] * 4 + [50.0] * 6).standing(20.0)  # spans 0 to 0.4
    assert straddling is not None
    assert straddling.bottom == pytest.approx(0.25)


def test_score_counts_are_bounded_by_the_score_grid_and_come_back_to_empty() -> None:
    rng = random.Random(3)
    scores = [round(rng.uniform(0, 100), 1) for _ in range(50_000)]
    counts = counts_of(scores)
    assert counts.total == 50_000
    assert len(counts.counts) <= 1001
    for score in scores:
        counts.add(round(score * 10), -1)
    assert counts.total == 0
    assert not counts.counts
    counts.add(500, -1)  # taking out what is not there changes nothing
    assert counts.total == 0
    assert not counts.counts
    assert counts.standing(50.0) is None


def test_the_standard_error_shrinks_with_more_churners() -> None:
    few = hanley_mcneil_stderr(0.8, 10, 500)
    many = hanley_mcneil_stderr(0.8, 200, 500)
    assert few is not None
    assert many is not None
    assert many < few < 0.2
    assert hanley_mcneil_stderr(0.8, 0, 500) is None


def auditor(port: LocalAudit, versions: tuple[str, ...] = ("live", "shadow")) -> Auditor:
    return Auditor(list(versions), port, 180, lambda state: None)


def noon(day: int) -> float:
    return (DAY0 + day) * SECONDS_PER_DAY + 43_200.0


def book_counts(book: AuditBook) -> dict[tuple[int, str], dict[int, int]]:
    return {
        (day, version): dict(counts.counts)
        for day, versions in book.alive.items()
        for version, counts in versions.items()
        if counts.total
    }


def test_the_book_kept_in_step_equals_the_book_rebuilt_from_the_states() -> None:
    port = LocalAudit()
    audit = auditor(port)
    rng = random.Random(11)
    states = [AccountState(account_id=f"a{i}") for i in range(12)]
    for day in range(0, 130, 1):
        for state in states:
            if rng.random() < 0.7:  # some days an account is not evaluated: its score holds
                score = round(rng.uniform(0, 100), 1)
                audit.observe(state, {"live": score, "shadow": 100 - score}, noon(day))
    apply_outcome(states[0], outcome("a0", days=130))
    audit.count_outcome(states[0], None)
    assert take_churn(states[0], noon(130))
    audit.leave(states[0])
    audit.settle(states[0], noon(130))
    apply_outcome(states[1], outcome("a1", days=140))  # told ahead: pending
    audit.count_outcome(states[1], None)
    rebuilt = AuditBook()
    for state in states:
        audit.footprint(state, rebuilt)
    rebuilt.prune(max(rebuilt.alive) + 1)  # the day after the newest closed day
    assert book_counts(port.book) == book_counts(rebuilt)
    assert port.book.pending == rebuilt.pending == {DAY0 + 140: 1}
    assert port.book.outcomes == rebuilt.outcomes
    assert all(len(trail) <= TRAIL_DAYS for s in states for trail in s.trails.values())


def test_a_churn_is_judged_after_its_day_against_the_survivors_then_forgotten() -> None:
    port = LocalAudit()
    audit = auditor(port, ("live",))
    fading = [AccountState(account_id=f"f{i}") for i in range(5)]
    steady = [AccountState(account_id=f"s{i}") for i in range(15)]
    for day in range(100):
        for i, state in enumerate(fading):
            audit.observe(state, {"live": max(0.0, 80.0 - day * 0.8 - i)}, noon(day))
        for i, state in enumerate(steady):
            audit.observe(state, {"live": 70.0 + i}, noon(day))
    for state in fading:
        apply_outcome(state, outcome(state.account_id, days=100))
        audit.count_outcome(state, None)
    assert port.book.pending == {DAY0 + 100: 5}  # told, not in effect yet
    for state in fading:
        assert take_churn(state, noon(100))
        audit.leave(state)
    assert port.book.pending == {}
    churn_day = DAY0 + 100
    for state in fading:
        assert not audit.settle(state, noon(100))  # the day is not over: others may churn
        assert state.audit == {}
    settle_at = (churn_day + 1) * SECONDS_PER_DAY + SETTLE_SECONDS
    for state in fading:
        assert audit.settle_due(state) == settle_at
        assert not audit.settle(state, settle_at)
    for state in fading:
        results = state.audit["live"]
        assert set(results) == set(LEADS)
        assert results[30].survivors == 15  # the other churners are no survivors
        assert results[30].score == closing_score_at(state, 30)
    report = build_report(*totals(port.book), ["live"], 180, T0)
    leads = {lead.lead_days: lead for lead in report.models[0].leads}
    # 30 days before, every fader (at most 56) was below every steady account (70 and up)
    assert leads[30].auc == 1.0
    assert leads[30].churners == 5
    assert leads[30].lift == pytest.approx(10.0)
    # 90 days before, faders (72 to 76) sat among the steady ones (70 to 84)
    assert 0.5 < leads[90].auc < 1.0  # type: ignore[operator]
    assert leads[30].note is not None  # 5 churners are too few to trust
    assert report.outcomes == {"churned": 5}
    forget_at = (churn_day + 180) * SECONDS_PER_DAY
    assert audit.settle_due(fading[0]) == forget_at
    for state in fading:
        assert audit.settle(state, forget_at)
        audit.forget(state)
    assert port.book.results == {}
    assert not port.book.outcomes


def closing_score_at(state: AccountState, lead: int) -> float:
    # The trail is gone once judged: the result holds the score that was judged.
    return state.audit["live"][lead].score


def totals(book: AuditBook) -> tuple[dict, dict]:  # type: ignore[type-arg]
    return book.results, book.outcomes


def test_closing_scores_hold_over_days_without_evaluation() -> None:
    port = LocalAudit()
    audit = auditor(port, ("live",))
    state = AccountState(account_id="a")
    audit.observe(state, {"live": 40.0}, noon(0))
    audit.observe(state, {"live": 45.0}, noon(0) + 3600)  # the day's last score closes it
    audit.observe(state, {"live": 60.0}, noon(5))
    assert closing_score(state, "live", DAY0) == 45.0
    assert closing_score(state, "live", DAY0 + 3) == 45.0
    assert closing_score(state, "live", DAY0 + 5) == 60.0
    assert closing_score(state, "live", DAY0 - 1) is None
    # days 0 to 4 closed and in the book; day 5 is still open
    assert sorted(port.book.alive) == [DAY0 + d for d in range(5)]


def test_outcome_marks_leave_the_counts_after_the_window() -> None:
    port = LocalAudit()
    audit = auditor(port, ("live",))
    state = AccountState(account_id="a")
    audit.observe(state, {"live": 50.0}, noon(0))
    apply_outcome(state, outcome("a", days=0, kind=OutcomeKind.RENEWED))
    audit.count_outcome(state, None)
    assert port.book.outcomes == {"renewed": 1}
    audit.observe(state, {"live": 50.0}, noon(181))
    assert port.book.outcomes == {}
    assert state.outcomes == []


def test_a_model_with_no_score_one_day_holds_its_last_one() -> None:
    port = LocalAudit()
    audit = auditor(port)
    state = AccountState(account_id="a")
    audit.observe(state, {"live": 40.0, "shadow": 60.0}, noon(0))
    audit.observe(state, {"live": 45.0}, noon(1))  # the shadow had no data to score
    audit.observe(state, {"live": 50.0, "shadow": 70.0}, noon(2))
    assert closing_score(state, "shadow", DAY0 + 1) == 60.0
    assert closing_score(state, "shadow", DAY0 + 2) == 70.0
    assert closing_score(state, "live", DAY0 + 1) == 45.0


def test_two_models_of_one_version_cannot_be_audited_side_by_side() -> None:
    with pytest.raises(ValueError, match="another version"):
        Auditor(["m@1", "m@1"], LocalAudit(), 180, lambda state: None)
