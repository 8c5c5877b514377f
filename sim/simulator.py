"""A simulated customer base over months, with ground truth: who churns, downgrades or renews.

Each account has a plan (seats, price, segment), a CSM, and a hidden *engagement* between 0
and 1 that drives everything it does: logins and feature use (fewer at weekends), features
adopted along a curve, tickets (more when engagement sags), invoices (failing more often),
surveys (scores follow engagement, with noise). Engagement drifts. Some accounts start to
slide at a random date: those that slide far enough churn a few weeks later (ground truth),
some recover, some downgrade at renewal. Deterministic for a seed.

A *profile* (``PROFILES``) makes a different business out of the same mechanics: seats and
plans, how often users come and how many features there are, and which drivers of churn
weigh most (a usage slide, new accounts that never take hold, cards that keep failing).

Output is plain dicts, the JSON of our event contract plus ``kind`` ("attributes" for CRM
snapshots), in event-time order; and the outcomes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

DAY = 86_400
FEATURES = (
    "dashboards", "reports", "alerts", "exports", "api", "sso", "workflows", "integrations",
    "audit-log", "billing", "sandbox", "ai-assist",
)  # fmt: skip
CSMS = ("ana@example.com", "ben@example.com", "chloe@example.com", "dev@example.com")


@dataclass(frozen=True)
class SimProfile:
    """One kind of business."""

    plans: dict[str, tuple[int, int, int]]
    """Plan -> (typical seats, monthly price in EUR, relative frequency)."""
    segment_of: dict[str, str]
    """Plan -> the CRM segment it belongs to."""
    features: int
    """How many of ``FEATURES`` the product has."""
    daily_share: float
    """Share of seats active on a working day at full engagement."""
    sessions: float
    """Logins per active user and day at full engagement."""
    uses_per_session: float
    weekend: float
    """Activity at weekends relative to working days."""
    ticket_rate: float
    survey_rate: float
    slide_share: float
    """Share of established accounts that start to slide at some point."""
    new_share: float
    """Share of accounts that join during the simulated period (the rest joined before)."""
    new_failure: float
    """Share of new accounts that never take hold: their engagement fades in weeks."""
    card_failure: float
    """Share of accounts whose card starts failing for good at some point (churn unless
    fixed)."""
    churn_noise: float
    """Share of otherwise healthy accounts that churn anyway (budget cuts happen)."""
    billing_days: int | None = 30
    """Days between invoices (None: no payments, as an app paid through a store)."""
    contract_days: int | None = None
    """Contract length: an account leaves (or downgrades) only when its contract ends, and
    each renewal is an outcome (None: it may leave any day)."""


PROFILES: dict[str, SimProfile] = {
    # Team software sold by the seat: churn follows a usage slide.
    "b2b-seats": SimProfile(
        plans={"starter": (5, 99, 5), "team": (25, 499, 4), "enterprise": (120, 2_499, 1)},
        segment_of={"starter": "smb", "team": "smb", "enterprise": "enterprise"},
        features=12, daily_share=0.3, sessions=1.0, uses_per_session=1.0, weekend=0.25,
        ticket_rate=1.0, survey_rate=0.01, slide_share=0.3, new_share=0.0, new_failure=0.0,
        card_failure=0.0, churn_noise=0.03,
    ),
    # Small businesses with a handful of seats: many are new, and cards fail.
    "smb": SimProfile(
        plans={"solo": (1, 29, 4), "small": (3, 79, 4), "growth": (8, 199, 2)},
        segment_of={"solo": "smb", "small": "smb", "growth": "smb"},
        features=6, daily_share=0.5, sessions=1.5, uses_per_session=2.0, weekend=0.4,
        ticket_rate=0.6, survey_rate=0.005, slide_share=0.15, new_share=0.4, new_failure=0.35,
        card_failure=0.08, churn_noise=0.03,
    ),
    # One user per account, active most days: young accounts churn most.
    "consumer": SimProfile(
        plans={"monthly": (1, 9, 7), "annual": (1, 7, 3)},
        segment_of={"monthly": "consumer", "annual": "consumer"},
        features=4, daily_share=0.9, sessions=2.5, uses_per_session=3.0, weekend=0.9,
        ticket_rate=0.1, survey_rate=0.003, slide_share=0.15, new_share=0.5, new_failure=0.4,
        card_failure=0.04, churn_noise=0.02,
    ),
    # An app with one user per account and nothing but usage: no tickets, payments (the app
    # store bills) or surveys.
    "usage-only": SimProfile(
        plans={"app": (1, 5, 1)},
        segment_of={"app": "consumer"},
        features=6, daily_share=0.6, sessions=1.5, uses_per_session=2.0, weekend=1.0,
        ticket_rate=0.0, survey_rate=0.0, slide_share=0.2, new_share=0.5, new_failure=0.4,
        card_failure=0.0, churn_noise=0.03, billing_days=None,
    ),
    # Team software on annual contracts: one invoice a year, and an account leaves only when
    # its contract ends; each renewal is an outcome.
    "annual-contracts": SimProfile(
        plans={"business": (6, 3_000, 3), "corporate": (25, 12_000, 1)},
        segment_of={"business": "smb", "corporate": "enterprise"},
        features=10, daily_share=0.35, sessions=1.0, uses_per_session=1.0, weekend=0.2,
        ticket_rate=0.8, survey_rate=0.005, slide_share=0.3, new_share=0.2, new_failure=0.25,
        card_failure=0.0, churn_noise=0.03, billing_days=365, contract_days=365,
    ),
}  # fmt: skip


class Outcome(StrEnum):
    RENEWED = "renewed"
    DOWNGRADED = "downgraded"
    CHURNED = "churned"


@dataclass(frozen=True)
class SimOptions:
    accounts: int = 2_000
    days: int = 365
    seed: int = 1
    start: date = date(2025, 1, 1)
    slide_share: float | None = None
    """Share of accounts that start to slide at some point (None: the profile's)."""
    profile: str = "b2b-seats"

    @property
    def business(self) -> SimProfile:
        return PROFILES[self.profile]


@dataclass
class SimAccount:
    account_id: str
    plan: str
    seats: int
    owner: str
    base: float
    """Engagement when all is well."""
    slide_day: int | None
    """Day the account starts to slide (None: never)."""
    slide_depth: float
    """How far engagement falls (0-1 of ``base``)."""
    slide_days: int
    recovers: bool
    joined_day: int
    card_fails_from: int | None = None
    """Day from which every invoice fails (None: never)."""
    outcome: Outcome = Outcome.RENEWED
    outcome_day: int | None = None
    open_tickets: list[str] = field(default_factory=list)
    tickets: int = 0

    def engagement(self, day: int) -> float:
        if self.slide_day is None or day < self.slide_day:
            return self.base
        into = (day - self.slide_day) / self.slide_days
        if self.recovers and into > 1.5:
            into = max(0.0, 3.0 - into)  # back up as fast as it went down
        return self.base * (1.0 - self.slide_depth * min(1.0, into))

    def gone(self, day: int) -> bool:
        return (
            self.outcome is Outcome.CHURNED
            and self.outcome_day is not None
            and (day >= self.outcome_day)
        )


def make_accounts(options: SimOptions, rng: random.Random) -> list[SimAccount]:
    business = options.business
    slide_share = business.slide_share if options.slide_share is None else options.slide_share
    plans = list(business.plans)
    accounts = []
    for index in range(options.accounts):
        plan = rng.choices(plans, weights=[business.plans[p][2] for p in plans])[0]
        typical = business.plans[plan][0]
        new = rng.random() < business.new_share
        joined = rng.randrange(0, max(1, options.days - 60)) if new else -rng.randint(30, 3 * 365)
        if new and rng.random() < business.new_failure:
            # Never takes hold: engagement fades from its first weeks.
            slide_day: int | None = joined + rng.randint(3, 30)
            depth, slide_days, recovers = rng.uniform(0.65, 0.95), rng.randint(10, 40), False
        else:
            slides = rng.random() < slide_share
            slide_day = rng.randrange(max(30, joined + 30), max(31, options.days - 20))
            slide_day = slide_day if slides else None
            depth, slide_days = rng.uniform(0.4, 0.95), rng.randint(20, 75)
            recovers = slides and rng.random() < 0.25
        card = rng.random() < business.card_failure
        account = SimAccount(
            account_id=f"sim-{index + 1:05d}",
            plan=plan,
            seats=typical if typical == 1 else max(2, round(typical * rng.uniform(0.5, 1.6))),
            owner=rng.choice(CSMS),
            base=rng.uniform(0.45, 1.0),
            slide_day=slide_day,
            slide_depth=depth,
            slide_days=slide_days,
            recovers=recovers,
            joined_day=joined,
            card_fails_from=rng.randrange(max(30, joined + 30), options.days) if card else None,
        )
        _decide_outcome(account, rng, options.days, business)
        accounts.append(account)
    return accounts


def _decide_outcome(
    account: SimAccount, rng: random.Random, days: int, business: SimProfile
) -> None:
    """Ground truth: a deep slide that does not recover ends in churn a few weeks after it
    bottoms out; a shallow one in a downgrade; a card that keeps failing in churn two months
    after it started (two or three failed invoices), unless the slide came first; a few
    healthy accounts churn anyway (budget cuts happen). On contracts, the outcome waits for
    the end of the contract."""
    noise = business.churn_noise
    if account.slide_day is not None and not account.recovers:
        bottom = account.slide_day + account.slide_days
        if account.slide_depth > 0.6:
            account.outcome, account.outcome_day = Outcome.CHURNED, bottom + rng.randint(5, 45)
        else:
            account.outcome, account.outcome_day = Outcome.DOWNGRADED, bottom + rng.randint(10, 60)
    elif rng.random() < noise:
        account.outcome = Outcome.CHURNED
        account.outcome_day = rng.randrange(max(0, account.joined_day), days)
    if account.card_fails_from is not None:
        gone = account.card_fails_from + 60 + rng.randint(1, 10)
        if account.outcome_day is None or gone < account.outcome_day:
            account.outcome, account.outcome_day = Outcome.CHURNED, gone
    contract = business.contract_days
    if contract is not None and account.outcome_day is not None:
        terms = max(1, math.ceil((account.outcome_day - account.joined_day) / contract))
        account.outcome_day = account.joined_day + terms * contract
    if account.outcome_day is not None and account.outcome_day >= days:
        account.outcome, account.outcome_day = Outcome.RENEWED, None  # beyond the window


class Simulation:
    """The events, day by day, and the outcomes."""

    def __init__(self, options: SimOptions) -> None:
        self.options = options
        self._rng = random.Random(options.seed)
        self.accounts = make_accounts(options, self._rng)
        self._ids = 0
        self._start = datetime.combine(options.start, datetime.min.time(), UTC).timestamp()

    def events(self) -> Iterator[dict[str, Any]]:
        """Every record in event-time order: CRM snapshots, then each day's events, and each
        churn or downgrade as an outcome event on its day."""
        for account in self.accounts:
            if account.joined_day <= 0:
                yield self._attributes(account, 0)
        for day in range(self.options.days):
            records: list[dict[str, Any]] = []
            for account in self.accounts:
                if day == account.joined_day > 0:
                    records.append(self._attributes(account, day))
                if account.joined_day <= day and not account.gone(day):
                    records.extend(self._day(account, day))
                if day == account.outcome_day:
                    records.append(self._outcome(account, day, account.outcome))
                elif self._renews(account, day):
                    records.append(self._outcome(account, day, Outcome.RENEWED))
            records.sort(key=event_time)
            yield from records

    def outcomes(self) -> list[dict[str, Any]]:
        return [
            {
                "account_id": account.account_id,
                "churned": int(account.outcome is Outcome.CHURNED),
                "churn_date": self.day_date(account.outcome_day)
                if account.outcome is Outcome.CHURNED and account.outcome_day is not None
                else "",
                "outcome": account.outcome.value,
                "outcome_date": self.day_date(account.outcome_day) if account.outcome_day else "",
            }
            for account in self.accounts
        ]

    def day_date(self, day: int) -> str:
        """The ISO date of simulated day ``day``."""
        return (self.options.start + timedelta(days=day)).isoformat()

    def _at(self, day: int, hour: float) -> str:
        return datetime.fromtimestamp(self._start + day * DAY + hour * 3600, UTC).isoformat()

    def _record(self, kind: str, account: SimAccount, day: int, hour: float) -> dict[str, Any]:
        self._ids += 1
        return {
            "kind": kind,
            "event_id": f"sim{self.options.seed}-{self._ids}",
            "account_id": account.account_id,
            "occurred_at": self._at(day, hour),
        }

    def _renews(self, account: SimAccount, day: int) -> bool:
        """A contract ends today and goes on."""
        contract = self.options.business.contract_days
        tenure = day - account.joined_day
        return (
            contract is not None and tenure > 0 and not tenure % contract and not account.gone(day)
        )

    def _outcome(self, account: SimAccount, day: int, outcome: Outcome) -> dict[str, Any]:
        """What billing says on the day of an outcome (as ``outcomes()`` has the last)."""
        price = self.options.business.plans[account.plan][1]
        after = {Outcome.CHURNED: 0, Outcome.DOWNGRADED: price // 2}.get(outcome, price)
        return {
            **self._record("outcome", account, day, 0.25),
            "outcome": outcome.value,
            "mrr_before": str(price),
            "mrr_after": str(after),
        }

    def _attributes(self, account: SimAccount, day: int) -> dict[str, Any]:
        business = self.options.business
        seats, price = account.seats, business.plans[account.plan][1]
        return {
            "kind": "attributes",
            "account_id": account.account_id,
            "updated_at": self._at(day, 0),
            "segment": business.segment_of[account.plan],
            "plan": account.plan,
            "seats": seats,
            "mrr": str(price),
            "currency": "EUR",
            "csm_owner": account.owner,
            "customer_since": (self.options.start + timedelta(days=account.joined_day)).isoformat(),
        }

    def _day(self, account: SimAccount, day: int) -> list[dict[str, Any]]:
        rng = self._rng
        business = self.options.business
        engagement = account.engagement(day)
        weekday = (self.options.start + timedelta(days=day)).weekday()
        rhythm = business.weekend if weekday >= 5 else 1.0
        records: list[dict[str, Any]] = []
        share = business.daily_share * engagement * rhythm
        if account.seats == 1:
            active_users = int(rng.random() < share)
        else:
            active_users = min(account.seats, poisson(rng, account.seats * share))
        tenure = day - account.joined_day
        features = business.features
        adopted = max(1, round(features * engagement * (1 - math.exp(-(tenure + 1) / 120))))
        for _ in range(active_users):
            user = f"{account.account_id}-u{rng.randrange(account.seats)}"
            for _ in range(max(1, poisson(rng, business.sessions * engagement))):
                hour = rng.uniform(7, 22)
                login = self._record("login", account, day, hour)
                records.append({**login, "user_id": user})
                for _ in range(poisson(rng, business.uses_per_session * engagement)):
                    use = self._record("feature_use", account, day, hour + rng.uniform(0, 1))
                    feature = FEATURES[min(features - 1, int(rng.expovariate(3 / adopted)))]
                    records.append({**use, "user_id": user, "feature": feature, "count": 1})
        records.extend(self._support(account, day, engagement))
        records.extend(self._billing(account, day, engagement))
        if rng.random() < business.survey_rate:
            nps = round(min(10, max(0, rng.gauss(3 + 7 * engagement, 1.5))))
            survey = self._record("survey", account, day, rng.uniform(9, 17))
            records.append({**survey, "survey": "nps", "score": nps})
        if account.outcome is Outcome.DOWNGRADED and day == account.outcome_day:
            account.plan = next(iter(self.options.business.plans))
            account.seats = max(min(2, account.seats), account.seats // 2)
            records.append(self._attributes(account, day))
        return records

    def _support(self, account: SimAccount, day: int, engagement: float) -> list[dict[str, Any]]:
        rng = self._rng
        records = []
        for ticket in list(account.open_tickets):
            if rng.random() < 0.25 + 0.4 * engagement:
                account.open_tickets.remove(ticket)
                resolved = self._record("ticket", account, day, rng.uniform(9, 18))
                records.append(
                    {**resolved, "ticket_id": ticket, "action": "resolved", "priority": "normal"}
                )
        frustration = max(0.0, 0.8 - engagement)
        rate = self.options.business.ticket_rate
        if rng.random() < rate * (0.02 + 0.12 * frustration):
            account.tickets += 1
            ticket = f"{account.account_id}-t{account.tickets}"
            account.open_tickets.append(ticket)
            urgent = rng.random() < 0.1 + 0.5 * frustration
            opened = self._record("ticket", account, day, rng.uniform(8, 17))
            priority = "urgent" if urgent else "normal"
            records.append(
                {**opened, "ticket_id": ticket, "action": "opened", "priority": priority}
            )
        return records

    def _billing(self, account: SimAccount, day: int, engagement: float) -> list[dict[str, Any]]:
        every = self.options.business.billing_days
        if every is None or (day - account.joined_day) % every:
            return []
        invoice = f"{account.account_id}-inv-{day}"
        price = str(self.options.business.plans[account.plan][1])
        card_failing = account.card_fails_from is not None and day >= account.card_fails_from
        failed = card_failing or self._rng.random() < 0.01 + 0.3 * max(0.0, 0.6 - engagement)
        paid = self._record("payment", account, day, 6)
        status = "failed" if failed else "paid"
        return [
            {**paid, "invoice_id": invoice, "status": status, "amount": price, "currency": "EUR"}
        ]


def event_time(record: dict[str, Any]) -> str:
    """ISO time of a record: ``occurred_at`` of an event, ``updated_at`` of a CRM snapshot."""
    return str(record.get("occurred_at") or record["updated_at"])


def poisson(rng: random.Random, lam: float) -> int:
    """Poisson draws: Knuth's method for small rates, a rounded normal for large ones."""
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
