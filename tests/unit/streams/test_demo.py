from __future__ import annotations

import random
from collections import defaultdict

from scoring.model import default_model
from scoring.peers import LocalPeers
from scoring.score import contribute, evaluate
from scoring.state import AccountState, day_of, fold
from streams.demo import DemoOptions, EventFactory, Profile, history, live_tick, make_accounts
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
    assert {a.profile for a in accounts} == set(Profile)
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
    for troubled in set(Profile) - {Profile.HEALTHY}:
        assert mean[troubled] < mean[Profile.HEALTHY] - 5, troubled
        assert bands[troubled].count("healthy") < len(bands[troubled]) / 10, troubled
