from __future__ import annotations

import random
from collections import defaultdict

from scoring.audit import ScoreCounts
from scoring.peers import LocalPeers
from scoring.score import contribute, evaluate
from scoring.scoring_model import default_model
from scoring.state import SECONDS_PER_DAY, AccountState, day_of, fold
from streams.ops.demo import (
    CHURNED_DAYS_AGO,
    DemoOptions,
    EventFactory,
    Profile,
    churns,
    former_customers,
    history,
    live_tick,
    make_accounts,
)
from tests.factories import T0

NOW = T0.timestamp()


def generate(seed: int) -> list[str]:
    options = DemoOptions(accounts=20, history_days=10, seed=seed)
    rng = random.Random(seed)
    days = history(make_accounts(options), EventFactory(seed), 10, NOW, rng)
    return [event.model_dump_json() for day in days for event in day]


def test_demo_is_deterministic_for_a_seed() -> None:
    assert generate(3) == generate(3)
    assert generate(3) != generate(4)


def test_demo_has_every_profile_and_unique_event_ids() -> None:
    accounts = make_accounts(DemoOptions())
    assert len(accounts) == 200
    assert {a.profile for a in accounts} == set(Profile) - {Profile.LEAVING}
    assert {a.profile for a in former_customers(DemoOptions())} == {Profile.LEAVING}
    events = [
        e for day in history(accounts, EventFactory(1), 5, NOW, random.Random(1)) for e in day
    ]
    assert len({e.event_id for e in events}) == len(events)


def test_history_ends_before_now_and_live_events_are_at_now() -> None:
    accounts = make_accounts(DemoOptions(accounts=30))
    rng = random.Random(1)
    factory = EventFactory(1)
    past = [e for day in history(accounts, factory, 5, NOW, rng) for e in day]
    assert max(e.occurred_at.timestamp() for e in past) < NOW
    live = live_tick(accounts, factory, 25, NOW, rng)
    assert len(live) >= 25
    assert {e.occurred_at.timestamp() for e in live} == {NOW}


def test_profiles_separate_into_the_expected_bands() -> None:
    """What make run shows: healthy accounts score high, troubled ones lower, ranked among
    their peers as the worker ranks them (every account's values of the day before)."""
    options = DemoOptions()
    accounts = make_accounts(options)
    rng = random.Random(options.seed)
    states = {a.account_id: AccountState(account_id=a.account_id) for a in accounts}
    for day in history(accounts, EventFactory(options.seed), options.history_days, NOW, rng):
        for event in day:
            fold(states[event.account_id], event)
    scores: dict[Profile, list[float]] = defaultdict(list)
    bands: dict[Profile, list[str]] = defaultdict(list)
    model = default_model()
    peers = LocalPeers(model.peers.min_accounts)
    for state in states.values():
        earlier = evaluate(state, model, NOW - 1)
        assert earlier is not None
        contribute(state, earlier, peers.book, NOW - 1)
    distribution = peers.distribution(day_of(NOW))
    for account in accounts:
        score = evaluate(states[account.account_id], model, NOW, distribution)
        assert score is not None
        assert score.measures["active_days_30d"].peers_median is not None
        scores[account.profile].append(score.value)
        bands[account.profile].append(score.band)
    mean = {p: sum(v) / len(v) for p, v in scores.items()}
    healthy = bands[Profile.HEALTHY]
    assert healthy.count("healthy") >= 0.9 * len(healthy)
    for troubled in set(scores) - {Profile.HEALTHY}:
        assert mean[troubled] < mean[Profile.HEALTHY] - 5, troubled
        assert bands[troubled].count("healthy") < len(bands[troubled]) / 10, troubled


def test_former_customers_scored_lower_than_the_others_before_they_left() -> None:
    """What the audit panel of make run shows: a month before they churned, the former
    customers already ranked low among the accounts that stayed."""
    options = DemoOptions()
    accounts, formers = make_accounts(options), former_customers(options)
    outcomes = churns(formers, NOW, options.seed)
    assert {o.account_id for o in outcomes} == {a.account_id for a in formers}
    churned_at = outcomes[0].occurred_at.timestamp()
    assert day_of(churned_at) == day_of(NOW) - CHURNED_DAYS_AGO
    judged_at = churned_at - 30 * SECONDS_PER_DAY
    rng = random.Random(options.seed)
    everyone = [*accounts, *formers]
    states = {a.account_id: AccountState(account_id=a.account_id) for a in everyone}
    for day in history(everyone, EventFactory(options.seed), options.history_days, NOW, rng):
        for event in day:
            if event.occurred_at.timestamp() < judged_at:
                fold(states[event.account_id], event)
    model = default_model()
    stayed = ScoreCounts()
    for account in accounts:
        score = evaluate(states[account.account_id], model, judged_at)
        assert score is not None
        stayed.add(round(score.value * 10))
    shares = []
    for account in formers:
        score = evaluate(states[account.account_id], model, judged_at)
        assert score is not None
        standing = stayed.standing(score.value)
        assert standing is not None
        shares.append(standing.above)
    assert sum(shares) / len(shares) > 0.75  # the AUC the audit reports at 30 days


def test_live_events_are_never_stamped_after_the_moment_they_are_sent() -> None:
    accounts = make_accounts(DemoOptions(accounts=40, history_days=10, seed=3))
    factory, rng = EventFactory(3), random.Random(3)
    history(accounts, factory, 10, NOW, rng)  # leaves tickets open, as the demo does
    for second in range(60):
        now = NOW + second
        for event in live_tick(accounts, factory, 50, now, rng):
            assert event.occurred_at.timestamp() <= now, event
