"""Peer-relative scoring: the sketches (merge, bounds, accuracy against exact ranks), the
board's choice of day, the percentile mapping and its cold-start fallback, and the words."""

from __future__ import annotations

import random
from typing import Any

import pytest

from scoring.config import parse_config
from scoring.explain import Explainer
from scoring.peers import (
    SKETCH_K,
    DaySketches,
    LocalPeers,
    PeerBoard,
    PeerBook,
    PeerDistribution,
    peer_group,
)
from scoring.score import contribute, evaluate
from scoring.scoring_model import ScoringModel
from scoring.state import SECONDS_PER_DAY, AccountState, day_of, fold
from scoring.update import Rescorer, Trigger
from tests.factories import T0, login, rescore

NOW = T0.timestamp()
TODAY = day_of(NOW)


def exact_rank(values: list[float], raw: float) -> float:
    below = sum(v < raw for v in values)
    ties = sum(v == raw for v in values)
    return 100.0 * (below + ties / 2) / len(values)


def distribution(values: list[float], min_accounts: int = 5) -> PeerDistribution:
    sketches = DaySketches(TODAY)
    for value in values:
        sketches.add("*", {"m": value, "active_days_30d": value})
    return PeerDistribution(sketches, min_accounts)


def test_ranks_count_ties_half_and_stay_within_the_sketch_error_of_exact_ranks() -> None:
    ties = distribution([0, 0, 0, 1, 2, 3])
    found = ties.rank("*", "m", 0)
    assert found is not None
    assert found.percentile == 25.0
    rng = random.Random(5)
    values = [round(rng.lognormvariate(2, 1), 1) for _ in range(50_000)]
    dist = distribution(values)
    for probe in (0.5, 3, 7.4, 12, 40, 150):
        ranked = dist.rank("*", "m", probe)
        assert ranked is not None
        assert abs(ranked.percentile - exact_rank(values, probe)) < 2.0  # error ~1.3 % at k=200
    median = dist.rank("*", "m", 1.0)
    assert median is not None
    assert abs(median.median - sorted(values)[len(values) // 2]) < 0.5
    assert median.accounts == len(values)


def test_sketches_of_partitions_merge_into_the_whole_base() -> None:
    rng = random.Random(9)
    values = [rng.uniform(0, 30) for _ in range(6_000)]
    books = [PeerBook() for _ in range(3)]
    for index, value in enumerate(values):
        books[index % 3].contribute(TODAY, "*", {"m": value})
    board = PeerBoard(min_accounts=10)
    for partition, book in enumerate(books):
        board.put(partition, book)
    whole = board.distribution(TODAY)
    for probe in (1, 10, 20, 29):
        ranked = whole.rank("*", "m", probe)
        assert ranked is not None
        assert ranked.accounts == 6_000
        assert abs(ranked.percentile - exact_rank(values, probe)) < 2.0


def test_a_sketch_stays_small_whatever_the_number_of_accounts() -> None:
    book = PeerBook()
    for index in range(200_000):
        book.contribute(TODAY, "*", {"m": float(index % 977)})
    sketch = book.days[TODAY].sketches[("*", "m")]
    assert sketch.n == 200_000
    assert sketch.num_retained < 4 * SKETCH_K
    assert len(book.to_bytes()) < 4_000


def test_a_book_keeps_two_days_and_survives_its_bytes() -> None:
    book = PeerBook()
    for day in range(TODAY - 3, TODAY + 1):
        book.contribute(day, "enterprise", {"a": 1.0, "b": float(day % 7)})
        book.contribute(day, "*", {"a": 2.0})
    assert sorted(book.days) == [TODAY - 1, TODAY]
    copy = PeerBook.from_bytes(book.to_bytes())
    assert sorted(copy.days) == [TODAY - 1, TODAY]
    assert set(copy.days[TODAY].sketches) == {("enterprise", "a"), ("enterprise", "b"), ("*", "a")}
    assert copy.days[TODAY].sketches[("*", "a")].n == 1
    assert copy.days[TODAY].sketches[("enterprise", "b")].get_quantile(0.5) == float(TODAY % 7)


def test_the_board_ranks_against_yesterday_unless_today_already_holds_more() -> None:
    book = PeerBook()
    for value in range(100):
        book.contribute(TODAY - 1, "*", {"m": float(value)})
    for value in range(10):
        book.contribute(TODAY, "*", {"m": 1000.0 + value})
    board = PeerBoard(min_accounts=5)
    board.put(0, book)
    assert board.distribution(TODAY).day == TODAY - 1
    first_day = PeerBook()
    for value in range(10):
        first_day.contribute(TODAY, "*", {"m": float(value)})
    board.put(0, first_day)  # a new book replaces the partition's and clears the cache
    assert board.distribution(TODAY).day == TODAY


def test_below_min_accounts_there_is_no_rank() -> None:
    dist = distribution([1, 2, 3, 4], min_accounts=5)
    assert dist.rank("*", "m", 2) is None
    assert dist.rank("other", "m", 2) is None


def test_peer_groups_by_segment_and_tenure_band() -> None:
    assert peer_group(None, 40, []) == "*"
    assert peer_group("enterprise", 40, []) == "enterprise"
    assert peer_group("enterprise", 40, [90, 365]) == "enterprise/<90d"
    assert peer_group(None, 90, [90, 365]) == "*/90-365d"
    assert peer_group(None, 900, [90, 365]) == "*/>=365d"
    assert peer_group(None, None, [90, 365]) == "*"


def model(**mapping: Any) -> ScoringModel:
    """One measure, active days in 30 days, ranked among peers (fallback: 0..20 linear)."""
    return parse_config(
        ScoringModel,
        {
            "name": "peers",
            "peers": {"min_accounts": 5},
            "components": {
                "usage": {
                    "weight": 1,
                    "measures": [
                        {
                            "name": "active_days_30d",
                            "label": "active days in 30 days",
                            "metric": "active_days",
                            "window_days": 30,
                            "mapping": {
                                "type": "percentile",
                                "fallback": {"type": "linear", "low": 0, "high": 20},
                                **mapping,
                            },
                        }
                    ],
                }
            },
            "bands": [{"label": "good", "min": 50}, {"label": "bad", "min": 0}],
            "grades": [{"label": "A", "min": 50}, {"label": "F", "min": 0}],
        },
        "peers",
    )


def active(days: int, account: str = "acme") -> AccountState:
    """Active the last ``days`` days, with a login 60 days ago: not a new account."""
    state = AccountState(account_id=account)
    fold(state, login(account=account, days=-60))
    for day in range(days):
        fold(state, login(account=account, days=-day))
    return state


def test_the_percentile_mapping_scores_the_rank_reversed_and_capped() -> None:
    peers = distribution([float(d) for d in range(1, 21)])  # active days of 20 peers
    ranked = evaluate(active(5), model(), NOW, peers)
    assert ranked is not None
    measured = ranked.measures["active_days_30d"]
    assert measured.percentile == 22.5  # 4 below, 1 tie of 20
    assert measured.score == 22.5
    assert measured.peers_median == 11
    capped = evaluate(active(5), model(full_at=50), NOW, peers)
    assert capped is not None
    assert capped.measures["active_days_30d"].score == 45.0
    reversed_ = evaluate(active(5), model(higher_is_better=False), NOW, peers)
    assert reversed_ is not None
    assert reversed_.measures["active_days_30d"].score == 77.5


def test_too_few_peers_fall_back_to_the_absolute_mapping_and_say_so() -> None:
    few = distribution([1.0, 2.0, 3.0])
    for peers in (few, None):
        score = evaluate(active(5), model(), NOW, peers)
        assert score is not None
        measured = score.measures["active_days_30d"]
        assert measured.score == 25.0  # 5 of 0..20
        assert measured.percentile is None
        drags = Explainer(model()).drags(score)
        assert (
            drags[0].text == "usage -75: active days in 30 days 5 "
            "(on a fixed scale: fewer than 5 comparable accounts yet)"
        )


def test_drags_give_the_peers_median() -> None:
    score = evaluate(active(3), model(), NOW, distribution([float(d) for d in range(10, 31)]))
    assert score is not None
    [drag] = Explainer(model()).drags(score)
    assert drag.text == "usage -100: active days in 30 days 3 (peers' median 20)"
    assert drag.points == 100.0


def test_an_account_adds_its_values_once_a_day_and_not_when_stale() -> None:
    book = PeerBook()
    state = active(5)
    for hours in (0, 1, 2):
        score = evaluate(state, model(), NOW + hours * 3600)
        assert score is not None
        contribute(state, score, book, NOW + hours * 3600)
    assert book.days[TODAY].sketches[("*", "active_days_30d")].n == 1
    assert state.peer_day == TODAY
    later = NOW + 40 * SECONDS_PER_DAY  # past stale_after_days (21) with no data
    stale = evaluate(state, model(), later)
    assert stale is not None
    assert stale.stale
    contribute(state, stale, book, later)
    assert day_of(later) not in book.days


def test_live_rescoring_and_the_backtest_rank_against_the_same_peers() -> None:
    """The worker's path (a timer evaluation at the end of the day, then the next one) and
    the backtest's (``peers_at``) give the same scores."""
    from sim.backtest import Backtest

    peers_model = model()
    midnight = (TODAY + 1) * SECONDS_PER_DAY  # the backtest observes at midnight
    accounts = {f"a{i}": i % 25 + 1 for i in range(40)}
    live = LocalPeers(peers_model.peers.min_accounts)
    rescorer = Rescorer(peers_model, live)
    states = {account: active(days, account) for account, days in accounts.items()}
    for state in states.values():
        rescore(rescorer, state, midnight - 1, Trigger.TIMER, None, T0)
    live_scores = {}
    for account, state in states.items():
        rescore(rescorer, state, midnight, Trigger.TIMER, None, T0)
        assert state.published is not None
        live_scores[account] = state.published.score
    offline = Backtest(peers_model, {})
    offline.states = {account: active(days, account) for account, days in accounts.items()}
    peers = offline.peers_at(midnight)
    assert peers is not None
    assert peers.day == TODAY
    offline_scores = {}
    for account, state in offline.states.items():
        score = evaluate(state, peers_model, midnight, peers)
        assert score is not None
        offline_scores[account] = score.value
    assert offline_scores == live_scores
    assert len(set(live_scores.values())) > 10  # ranked, not all alike


@pytest.mark.parametrize("bands", [[90, 30], [0, 10], [-5]])
def test_tenure_bands_must_be_positive_and_ascending(bands: list[int]) -> None:
    model_data = model().model_dump(mode="json")
    model_data["peers"]["tenure_bands_days"] = bands
    with pytest.raises(ValueError, match="tenure_bands_days"):
        parse_config(ScoringModel, model_data, "bad")
