"""Alert rules against score sequences written out by hand.

Bands: healthy >= 70, at-risk >= 40, critical. Default hysteresis 3 points.
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from functools import partial
from typing import Any

from alerts.alert import Alert
from alerts.config import AlertRules, BandChangeRule, CriticalEventRule, Severity, SharpDropRule
from alerts.rules import Observation, Words, check, in_words, pending_until
from scoring.events import EventKind, PaymentStatus, SurveyType, TicketPriority
from scoring.scoring_model import Threshold, hysteretic_rank, steady_label
from scoring.state import AlertMemory
from tests.factories import T0, payment, survey, ticket

BANDS = [
    Threshold(label="healthy", min=70),
    Threshold(label="at-risk", min=40),
    Threshold(label="critical", min=0),
]
HOUR = 3600.0
START = T0.timestamp()


def rules(**changes: Any) -> AlertRules:
    """Only the rule under test: sharp drops are off unless a test turns them on."""
    return AlertRules(
        **{"critical_events": [], "sharp_drop": SharpDropRule(enabled=False), **changes}
    )


class Account:
    """Feeds a score sequence through ``check``, one observation an hour by default."""

    def __init__(
        self, alert_rules: AlertRules, segment: str | None = None, data_since: float | None = None
    ) -> None:
        self.data_since = data_since
        self.memory = AlertMemory()
        self.rules = alert_rules
        self.segment = segment
        self.now = START
        self.previous: float | None = None
        self.band: str | None = None
        self.count = 0

    def score(self, value: float, hours: float = 1.0, **fields: Any) -> list[Alert]:
        self.now += hours * HOUR
        self.count += 1
        band = steady_label(BANDS, self.band, value, 3.0)  # as the Rescorer publishes it
        obs = Observation(
            account_id="acme",
            score=value,
            previous_score=self.previous,
            bands=BANDS,
            band=band,
            previous_band=self.band,
            onboarding=fields.pop("onboarding", False),
            stale=fields.pop("stale", False),
            segment=self.segment,
            owner="ana",
            as_of=self.now,
            trigger=f"e{self.count}",
            model_version="default@x",
            data_since=self.data_since,
            received_at=fields.pop("received_at", self.now),
            words=partial(
                Words,
                ["usage -9: days since last login 2 -> 16"],
                fields.pop("drags", ()),
                fields.pop("by_kind", {}),
            ),
        )
        self.previous, self.band = value, band
        event = fields.pop("event", None)
        events = fields.pop("events", [event] * bool(event))
        timed = [item if isinstance(item, tuple) else (item, self.now) for item in events]
        return check(self.memory, obs, self.rules, self.now, timed)

    def run(self, *values: float, hours: float = 1.0) -> list[Alert]:
        return [alert for value in values for alert in self.score(value, hours)]


def test_hysteresis_leaves_a_band_only_past_the_margin() -> None:
    assert hysteretic_rank(0, 68.0, BANDS, 3) == 0
    assert hysteretic_rank(0, 67.0, BANDS, 3) == 0  # 70 - 3 = 67 is not below
    assert hysteretic_rank(0, 66.9, BANDS, 3) == 1
    assert hysteretic_rank(0, 20.0, BANDS, 3) == 2  # straight through two bands
    assert hysteretic_rank(1, 72.9, BANDS, 3) == 1
    assert hysteretic_rank(1, 73.0, BANDS, 3) == 0
    assert hysteretic_rank(2, 42.0, BANDS, 3) == 2
    assert hysteretic_rank(2, 90.0, BANDS, 3) == 0


def test_first_score_raises_nothing_even_if_critical() -> None:
    assert Account(rules()).run(12.0) == []


def test_crossing_into_a_worse_band_raises_one_explained_alert() -> None:
    account = Account(rules())
    alerts = account.run(80.0, 75.0, 66.0)
    assert len(alerts) == 1
    alert = alerts[0]
    assert (alert.rule, alert.severity) == ("band_change", Severity.WARNING)
    assert (alert.old_score, alert.new_score) == (75.0, 66.0)
    assert (alert.old_band, alert.new_band) == ("healthy", "at-risk")
    assert alert.title == "acme is now at-risk (was healthy; 75 -> 66)"
    assert alert.drivers == ["usage -9: days since last login 2 -> 16"]
    assert alert.owner == "ana"
    assert alert.trigger == "e3"


def test_a_score_wobbling_around_a_threshold_raises_one_alert_not_twenty() -> None:
    account = Account(rules())
    wobble = [72, 69, 71, 68, 70, 69.5, 71, 68.5] * 3
    assert account.run(80.0, *wobble) == []  # never 3 points past 70
    dips = [66, 71, 65, 72, 66, 71, 64]  # crosses, recovers only to 71/72 (< 73), ...
    alerts = account.run(*dips)
    assert [a.rule for a in alerts] == ["band_change"]


def test_recovery_needs_the_margin_too_and_is_info() -> None:
    account = Account(rules())
    account.run(80.0, 60.0)
    assert account.run(72.0) == []
    alerts = account.run(74.0)
    assert [(a.rule, a.severity, a.new_band) for a in alerts] == [
        ("recovery", Severity.INFO, "healthy")
    ]
    quiet = Account(rules(band_change=BandChangeRule(recovery=False)))
    assert [a.rule for a in quiet.run(80, 60, 74)] == ["band_change"]
    assert quiet.memory.band_rank == 0  # it did recover, silently


def test_the_worst_band_is_critical_and_escalation_is_not_held_by_the_cooldown() -> None:
    account = Account(rules())
    alerts = account.run(80.0, 60.0, 30.0)
    assert [(a.new_band, a.severity) for a in alerts] == [
        ("at-risk", Severity.WARNING),
        ("critical", Severity.CRITICAL),
    ]


def test_cooldown_per_account_and_band() -> None:
    account = Account(rules())  # 24 h
    first = account.run(80.0, 60.0, 80.0)  # at-risk, then recovery
    assert [a.rule for a in first] == ["band_change", "recovery"]
    assert account.run(60.0, 80.0) == []  # same band changes within 24 h: held
    later = [a.rule for a in account.run(60.0, hours=25)]
    assert later == ["band_change"]


def test_minimum_time_in_band_before_alerting() -> None:
    account = Account(rules(band_change=BandChangeRule(min_minutes_in_band=120)))
    assert account.run(80.0, 60.0) == []
    assert pending_until(account.memory, account.rules) == account.now + 2 * HOUR
    assert account.score(75.0) == []  # back before two hours: nothing pending
    assert account.memory.pending_rank is None
    assert account.score(60.0) == []
    assert account.score(61.0) == []  # one hour in the band
    alerts = account.score(62.0)  # two hours in the band
    assert [(a.rule, a.new_band) for a in alerts] == [("band_change", "at-risk")]


def test_sharp_drop_from_the_high_of_the_window() -> None:
    account = Account(rules(sharp_drop=SharpDropRule(points=15, window_days=7)))
    assert account.run(95.0, 90.0, hours=24) == []
    alerts = account.run(85.0, 82.0, 79.5, hours=24)  # 95 -> 79.5 within 7 days, still healthy
    assert [(a.rule, a.old_score, a.new_score) for a in alerts] == [("sharp_drop", 95.0, 79.5)]
    assert alerts[0].title == "acme fell 16 points in 7 days (95 -> 80)"
    assert account.run(78.0, 76.0, hours=24) == []  # cooldown 72 h


def test_slow_decline_over_more_than_the_window_is_not_sharp() -> None:
    account = Account(rules(sharp_drop=SharpDropRule(points=15, window_days=7)))
    assert account.run(*[95.0 - 1.5 * d for d in range(14)], hours=24) == []


def test_a_band_alert_covers_the_drop_that_caused_it() -> None:
    account = Account(rules(sharp_drop=SharpDropRule()))
    alerts = account.run(90.0, 60.0)
    assert [a.rule for a in alerts] == ["band_change"]


def failed_payment_rule(**changes: Any) -> CriticalEventRule:
    return CriticalEventRule(
        name="failed_payment", kind=EventKind.PAYMENT, match={"status": ["failed"]}, **changes
    )


def test_critical_event_matches_kind_fields_and_segment() -> None:
    account = Account(
        AlertRules(critical_events=[failed_payment_rule(segments=["enterprise"])]),
        segment="enterprise",
    )
    account.run(80.0)
    alerts = account.score(80.0, event=payment(status=PaymentStatus.FAILED))
    assert [(a.rule, a.severity) for a in alerts] == [
        ("critical_event:failed_payment", Severity.CRITICAL)
    ]
    assert account.score(80.0, event=payment(status=PaymentStatus.PAID)) == []
    assert account.score(80.0, event=ticket(priority=TicketPriority.URGENT)) == []
    other = Account(AlertRules(critical_events=[failed_payment_rule(segments=["enterprise"])]))
    assert other.score(80.0, event=payment(status=PaymentStatus.FAILED)) == []


def test_critical_event_cooldown() -> None:
    account = Account(AlertRules(critical_events=[failed_payment_rule(cooldown_hours=24)]))
    failed = payment(status=PaymentStatus.FAILED)
    assert len(account.score(80.0, event=failed)) == 1
    assert account.score(80.0, event=failed) == []
    assert len(account.score(80.0, hours=24, event=failed)) == 1


def test_each_critical_event_of_a_batch_raises_its_own_alert() -> None:
    account = Account(AlertRules(critical_events=[failed_payment_rule(cooldown_hours=0)]))
    account.run(80.0)
    first = payment(status=PaymentStatus.FAILED)
    second = first.model_copy(update={"event_id": "p-2"})
    alerts = account.score(80.0, events=[first, second])
    assert [a.trigger for a in alerts] == [first.event_id, "p-2"]
    assert len({a.alert_id for a in alerts}) == 2


def test_critical_events_settled_together_cool_down_from_their_own_times() -> None:
    """Two failed payments a day apart, settled in one window, alert as they would one at a
    time: the cooldown counts from each event's time, not the window's end."""
    account = Account(AlertRules(critical_events=[failed_payment_rule(cooldown_hours=12)]))
    account.run(80.0)
    first = payment(status=PaymentStatus.FAILED)
    second = first.model_copy(update={"event_id": "p-2"})
    day_before = account.now - 23 * HOUR  # the next observation comes an hour on
    alerts = account.score(80.0, events=[(first, day_before), (second, day_before + 24 * HOUR)])
    assert [a.trigger for a in alerts] == [first.event_id, "p-2"]
    third = first.model_copy(update={"event_id": "p-3"})
    assert account.score(80.0, events=[(third, day_before + 30 * HOUR)]) == []  # 6 h on


def test_a_critical_event_long_past_settled_with_a_current_input_raises_nothing() -> None:
    """Judged by its own time, as it would be alone: a replayed failed payment three days
    old stays history though a current input is settled in the same window."""
    rules_ = AlertRules(critical_events=[failed_payment_rule()], max_lag_hours=48)
    account = Account(rules_)
    account.run(80.0)
    old = payment(status=PaymentStatus.FAILED)
    now = account.now + HOUR
    assert account.score(80.0, events=[(old, now - 72 * HOUR)]) == []
    recent = old.model_copy(update={"event_id": "p-2"})
    alerts = account.score(80.0, events=[(old, now - 71 * HOUR), (recent, now)])
    assert [a.trigger for a in alerts] == ["p-2"]


def test_stale_alerts_once_until_data_returns() -> None:
    account = Account(rules())
    account.run(80.0)
    assert [a.rule for a in account.score(80.0, stale=True)] == ["stale"]
    assert account.score(80.0, stale=True) == []
    account.score(80.0)
    assert [a.rule for a in account.score(80.0, stale=True)] == ["stale"]


def test_alert_ids_are_deterministic_per_account_rule_and_trigger() -> None:
    first = Account(rules()).run(80.0, 60.0)
    again = Account(rules()).run(80.0, 60.0)
    assert first[0].alert_id == again[0].alert_id
    other = Account(rules())
    other.count = 10
    assert other.run(80.0, 60.0)[0].alert_id != first[0].alert_id


def test_disabled_band_rule_still_tracks_the_band() -> None:
    account = Account(rules(band_change=BandChangeRule(enabled=False)))
    assert account.run(80.0, 60.0, 30.0) == []
    assert account.memory.band_rank == 2


def test_no_recovery_alert_for_an_account_nobody_was_told_about() -> None:
    account = Account(rules())
    assert account.run(20.0, 55.0, 80.0) == []  # a cold start climbing to healthy
    alerts = account.run(60.0, 30.0, 55.0, 80.0)
    assert [(a.rule, a.new_band) for a in alerts] == [
        ("band_change", "at-risk"),
        ("band_change", "critical"),
        ("recovery", "at-risk"),
        ("recovery", "healthy"),
    ]


def test_alerts_about_the_distant_past_are_not_sent_but_remembered() -> None:
    account = Account(rules())
    account.run(80.0)
    # A replay: the evaluation is about a time 3 days before the wall clock.
    assert account.score(60.0, received_at=account.now + 72 * HOUR + 2 * HOUR) == []
    assert account.memory.band_rank == 1
    assert account.score(58.0) == []  # live again: the band was already counted


def test_a_new_account_warms_up_before_score_alerts() -> None:
    account = Account(
        AlertRules(
            warmup_days=3,
            critical_events=[failed_payment_rule()],
            sharp_drop=SharpDropRule(enabled=False),
        ),
        data_since=START,
    )
    assert account.run(80.0, 30.0, 75.0, hours=24) == []  # days 1-3: cold start noise
    critical = account.score(75.0, event=payment(status=PaymentStatus.FAILED))
    assert [a.rule for a in critical] == ["critical_event:failed_payment"]
    alerts = account.run(50.0, hours=24)  # day 4: warmed up
    assert [(a.rule, a.old_band) for a in alerts] == [("band_change", "healthy")]


def test_band_and_drop_alerts_say_what_pulls_the_score_down_apart_from_why_it_moved() -> None:
    account = Account(rules(sharp_drop=SharpDropRule(points=15, window_days=7)))
    account.run(90.0, 88.0)
    drags = ["billing -30: failed or overdue payments in 90 days 2"]
    [band] = account.score(66.0, drags=drags)
    assert band.rule == "band_change"
    assert band.drags == drags
    assert band.drivers == ["usage -9: days since last login 2 -> 16"]
    account = Account(rules(sharp_drop=SharpDropRule(points=15, window_days=7)))
    account.run(100.0, 99.0)
    [drop] = account.score(80.0, drags=drags)
    assert drop.rule == "sharp_drop"
    assert drop.drags == drags


def test_a_critical_event_alert_says_what_happened() -> None:
    account = Account(AlertRules(critical_events=[failed_payment_rule()]))
    account.run(80.0)
    failed = payment(invoice="inv-881", status=PaymentStatus.FAILED).model_copy(
        update={"amount": Decimal("4242"), "currency": "EUR"}
    )
    [alert] = account.score(80.0, event=failed)
    assert alert.title == "acme: failed payment: invoice inv-881 for EUR 4,242.00 failed"
    # Its why is what the event did to the score, not the usage that moved with it.
    assert alert.drivers == ["the score did not move with it (80 -> 80)"]
    assert (alert.old_band, alert.drags) == ("healthy", [])
    billing = ["billing -12: failed payments in 30 days 0 -> 1"]
    again = failed.model_copy(update={"event_id": "e-2", "invoice_id": "inv-882"})
    account.memory.last_fired.clear()
    [alert] = account.score(68.0, event=again, by_kind={"payment": billing})
    assert alert.drivers == billing
    assert in_words(ticket(ticket_id="t-17", priority=TicketPriority.URGENT)) == (
        "ticket t-17 opened, urgent priority"
    )
    assert in_words(survey(kind=SurveyType.NPS, score=3)) == "NPS answer 3"


def test_a_score_wobbling_around_a_threshold_changes_band_once_and_alerts_once() -> None:
    """The published band has the margin (steady_label): 20 wobbles around 70 are no
    change; a fall past 67 is one change, one alert; wobbling back to 70 no recovery."""
    account = Account(rules())
    wobble = [70.2, 69.8, 70.0, 69.5, 70.4, 68.1, 69.9, 71.0, 68.0, 70.1] * 2
    bands = []
    alerts = []
    for value in [75.0, *wobble, 66.0, 69.0, 71.5, 68.5, 72.9]:
        alerts += account.score(value)
        bands.append(account.band)
    changes = sum(1 for a, b in itertools.pairwise(bands) if a != b)
    assert changes == 1
    assert [a.rule for a in alerts] == ["band_change"]
    assert (alerts[0].old_band, alerts[0].new_band) == ("healthy", "at-risk")
    assert account.score(73.0)[0].title == "acme recovered to healthy (was at-risk; 72.9 -> 73.0)"


def test_a_new_account_raises_no_band_alert_until_judged_then_sets_the_scene() -> None:
    account = Account(rules())
    assert account.run(90.0) == []
    assert account.score(30.0, onboarding=True) == []
    assert account.score(35.0) == []  # its first judged score: the scene, not a fall
    assert [a.rule for a in account.run(80.0)] == []  # no recovery of what was never told
    assert [a.rule for a in account.run(20.0)] == ["band_change"]
