from __future__ import annotations

from scoring.schedule import next_due
from scoring.scoring_model import default_model
from scoring.state import SECONDS_PER_DAY, AccountState, ActiveOverride, fold
from tests.factories import T0, login

NOW = T0.timestamp()
MODEL = default_model()  # re-evaluated every 6 h, stale after 21 days
PERIOD = MODEL.reevaluate_hours * 3600


def active(account: str = "acme") -> AccountState:
    state = AccountState(account_id=account)
    fold(state, login(account=account))
    return state


def test_an_active_account_is_due_within_one_period() -> None:
    due = next_due(active(), MODEL, NOW)
    assert due is not None
    assert NOW < due <= NOW + PERIOD


def test_due_times_are_spread_over_the_period_by_account() -> None:
    dues = {next_due(active(f"acct-{i}"), MODEL, NOW) for i in range(50)}
    assert len(dues) > 40


def test_the_moment_it_goes_stale_and_the_override_expiry_are_due_exactly() -> None:
    state = active()
    stale_at = NOW + MODEL.stale_after_days * SECONDS_PER_DAY
    assert next_due(state, MODEL, stale_at - 60) == stale_at
    state.override = ActiveOverride(
        override_id="o", author="a", reason="r", score=1, set_at=NOW, expires_at=NOW + 100
    )
    assert next_due(state, MODEL, NOW) == NOW + 100


def test_stale_or_empty_accounts_are_not_due() -> None:
    assert next_due(AccountState(account_id="acme"), MODEL, NOW) is None
    state = active()
    assert next_due(state, MODEL, NOW + 30 * SECONDS_PER_DAY) is None
