"""The demo event stream: ~200 accounts with different behaviour, history first, then live.

Profiles: healthy, declining usage, payment trouble, support-heavy and gone silent; and a
tenth as many former customers whose usage fell away until they churned five days ago (their
outcomes go to ``chs.outcomes``, for the live audit). The generator is deterministic for a
seed; ``run_demo`` sends ``history_days`` of past events as
fast as the broker takes them, then live events stamped with the current time until stopped.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from itertools import count
from typing import Any

from scoring.events import (
    AccountAttributes,
    Event,
    FeatureUseEvent,
    LoginEvent,
    OutcomeEvent,
    OutcomeKind,
    PaymentEvent,
    PaymentStatus,
    SurveyEvent,
    SurveyType,
    TicketAction,
    TicketEvent,
    TicketPriority,
)
from scoring.state import SECONDS_PER_DAY
from sim.simulator import poisson
from streams.settings import Settings
from streams.worker.event_producer import EventProducer

log = logging.getLogger(__name__)


class Profile(StrEnum):
    HEALTHY = "healthy"
    DECLINING = "declining"
    PAYMENT_TROUBLE = "payment-trouble"
    SUPPORT_HEAVY = "support-heavy"
    GONE_SILENT = "gone-silent"
    LEAVING = "leaving"
    """The former customers (``former_customers``): never in ``PROFILE_MIX``."""


# Share of each profile among the demo accounts.
PROFILE_MIX: tuple[tuple[Profile, float], ...] = (
    (Profile.HEALTHY, 0.40),
    (Profile.DECLINING, 0.15),
    (Profile.PAYMENT_TROUBLE, 0.15),
    (Profile.SUPPORT_HEAVY, 0.15),
    (Profile.GONE_SILENT, 0.15),
)
FEATURES = ("dashboards", "reports", "alerts", "api", "exports", "sso", "workflows", "billing")
INVOICE_AMOUNT = Decimal("499.00")
CSM_OWNERS = ("ana@example.com", "ben@example.com", "chloe@example.com", "dev@example.com")
GROUPS = ("northwind-group", "initrode-holdings", "vandelay-industries")
"""Parents of a few demo accounts, scored as roll-ups of them (``scoring.rollup``)."""
GROUP_SPACING = 50
"""A group's children are accounts this far apart: a mix of the profiles (laid out by index)."""


def group_of(index: int) -> str | None:
    """The parent of the demo account at ``index``, if it has one: group ``g`` takes the
    accounts at ``7g``, ``7g + 50``, ``7g + 100``..."""
    offset = index % GROUP_SPACING
    if offset % 7 == 0 and offset // 7 < len(GROUPS):
        return GROUPS[offset // 7]
    return None


def group_attributes(group: str, now: float) -> AccountAttributes:
    """A parent's CRM record: no MRR of its own (its children's sum weighs it)."""
    return AccountAttributes(
        account_id=group,
        updated_at=datetime.fromtimestamp(now, UTC),
        segment="enterprise",
        plan="enterprise",
        csm_owner=CSM_OWNERS[GROUPS.index(group) % len(CSM_OWNERS)],
    )


@dataclass(frozen=True)
class DemoOptions:
    accounts: int = 200
    history_days: int = 45
    live_rate: float = 20.0
    """Usage events per second in the live phase."""
    seed: int = 7
    live_seconds: float | None = None
    """Stop the live phase after this long; None runs until cancelled."""


@dataclass
class DemoAccount:
    account_id: str
    profile: Profile
    users: list[str]
    invoice_day: int
    plan: str
    owner: str
    tenure_days: int
    open_tickets: list[str] = field(default_factory=list)
    parent: str | None = None

    def attributes(self, now: float) -> AccountAttributes:
        """The account's CRM record, as a CRM sync would put it on ``chs.accounts``."""
        today = datetime.fromtimestamp(now, UTC).date()
        return AccountAttributes(
            account_id=self.account_id,
            updated_at=datetime.fromtimestamp(now, UTC),
            segment="enterprise" if self.plan == "enterprise" else "smb",
            plan=self.plan,
            lifecycle_stage="onboarding" if self.tenure_days < 60 else "adopted",
            seats=len(self.users) + 3,
            mrr=INVOICE_AMOUNT * (4 if self.plan == "enterprise" else 1),
            currency="EUR",
            renewal_date=today + timedelta(days=(self.invoice_day * 11) % 365 + 1),
            csm_owner=self.owner,
            customer_since=today - timedelta(days=self.tenure_days),
            parent_account_id=self.parent,
        )

    def activity(self, progress: float) -> float:
        """Usage intensity at ``progress`` (0 = start of history, 1 = now)."""
        match self.profile:
            case Profile.DECLINING:
                return max(0.02, (1.0 - progress) ** 2)
            case Profile.GONE_SILENT:
                return 1.0 if progress < 0.4 else 0.0
            case Profile.LEAVING:
                return max(0.0, 0.35 - progress)
            case Profile.PAYMENT_TROUBLE:
                return 0.8 if progress < 0.5 else 0.4
            case Profile.SUPPORT_HEAVY:
                return 0.6
            case Profile.HEALTHY:
                return 1.0


def make_accounts(options: DemoOptions) -> list[DemoAccount]:
    rng = random.Random(options.seed)
    accounts = []
    for index in range(options.accounts):
        profile = _profile_at(index / max(1, options.accounts))
        n_users = rng.randint(3, 12)
        accounts.append(
            DemoAccount(
                account_id=f"acct-{index + 1:03d}",
                profile=profile,
                users=[f"user-{index + 1:03d}-{u}" for u in range(n_users)],
                invoice_day=rng.randrange(options.history_days or 1),
                plan="enterprise" if rng.random() < 0.2 else "team",
                owner=rng.choice(CSM_OWNERS),
                tenure_days=rng.randint(options.history_days, 3 * 365),
                parent=group_of(index),
            )
        )
    return accounts


def _profile_at(share: float) -> Profile:
    """Profiles by cumulative share, so every demo size gets the same mix."""
    cumulative = 0.0
    for profile, weight in PROFILE_MIX:
        cumulative += weight
        if share < cumulative:
            return profile
    return PROFILE_MIX[-1][0]


class EventFactory:
    """Builds events with unique, deterministic ids."""

    def __init__(self, seed: int) -> None:
        self._ids = count(1)
        self._prefix = f"demo{seed}"

    def _base(self, account: DemoAccount, ts: float) -> dict[str, Any]:
        return {
            "event_id": f"{self._prefix}-{next(self._ids)}",
            "account_id": account.account_id,
            "occurred_at": datetime.fromtimestamp(ts, UTC),
        }

    def usage(self, account: DemoAccount, ts: float, rng: random.Random, features: int) -> Event:
        user = rng.choice(account.users)
        if rng.random() < 0.5:
            return LoginEvent(**self._base(account, ts), user_id=user)
        return FeatureUseEvent(
            **self._base(account, ts),
            user_id=user,
            feature=FEATURES[rng.randrange(max(1, features))],
            count=rng.randint(1, 5),
        )

    def ticket(
        self, account: DemoAccount, ts: float, ticket_id: str, action: TicketAction, urgent: bool
    ) -> Event:
        priority = TicketPriority.URGENT if urgent else TicketPriority.NORMAL
        return TicketEvent(
            **self._base(account, ts),
            ticket_id=ticket_id,
            action=action,
            priority=priority,
        )

    def payment(
        self, account: DemoAccount, ts: float, invoice: str, status: PaymentStatus
    ) -> Event:
        return PaymentEvent(
            **self._base(account, ts),
            invoice_id=invoice,
            status=status,
            amount=INVOICE_AMOUNT,
            currency="EUR",
        )

    def survey(self, account: DemoAccount, ts: float, survey: SurveyType, score: int) -> Event:
        return SurveyEvent(**self._base(account, ts), survey=survey, score=score)


def day_events(
    account: DemoAccount,
    factory: EventFactory,
    day_start: float,
    progress: float,
    rng: random.Random,
) -> list[Event]:
    """One day of an account's events, in time order."""
    weekend = datetime.fromtimestamp(day_start, UTC).weekday() >= 5
    activity = account.activity(progress) * (0.3 if weekend else 1.0)
    features = max(1, round(len(FEATURES) * min(1.0, account.activity(progress) + 0.1)))
    events: list[Event] = []

    def at() -> float:
        return day_start + rng.uniform(8, 18) * 3600

    for _ in range(poisson(rng, 6.0 * activity)):
        events.append(factory.usage(account, at(), rng, features))
    events.extend(_tickets(account, factory, at(), progress, rng))
    events.extend(_billing(account, factory, day_start, progress))
    survey = _survey(account, factory, at(), progress, rng)
    if survey is not None:
        events.append(survey)
    events.sort(key=lambda e: e.occurred_at)
    return events


def _tickets(
    account: DemoAccount, factory: EventFactory, ts: float, progress: float, rng: random.Random
) -> list[Event]:
    heavy = account.profile is Profile.SUPPORT_HEAVY
    events = []
    resolve_chance = 0.2 if heavy else 0.7
    for ticket_id in list(account.open_tickets):
        if rng.random() < resolve_chance:
            account.open_tickets.remove(ticket_id)
            # A minute before ``ts``: never after it, which is "now" in the live phase.
            resolved_at = ts - 60
            events.append(
                factory.ticket(account, resolved_at, ticket_id, TicketAction.RESOLVED, False)
            )
    open_chance = 0.15 + 0.35 * progress if heavy else 0.03
    if rng.random() < open_chance and account.activity(progress) > 0:
        ticket_id = f"{account.account_id}-t{len(account.open_tickets)}-{int(ts)}"
        account.open_tickets.append(ticket_id)
        urgent = heavy and rng.random() < 0.5
        events.append(factory.ticket(account, ts, ticket_id, TicketAction.OPENED, urgent))
    return events


def _billing(
    account: DemoAccount, factory: EventFactory, day_start: float, progress: float
) -> list[Event]:
    day = int(day_start // SECONDS_PER_DAY)
    if day % 30 != account.invoice_day % 30:
        return []
    invoice = f"{account.account_id}-inv-{day}"
    ts = day_start + 6 * 3600
    if account.profile is Profile.PAYMENT_TROUBLE and progress > 0.3:
        return [
            factory.payment(account, ts, invoice, PaymentStatus.FAILED),
            factory.payment(account, ts + 3600, invoice, PaymentStatus.OVERDUE),
        ]
    return [factory.payment(account, ts, invoice, PaymentStatus.PAID)]


def _survey(
    account: DemoAccount, factory: EventFactory, ts: float, progress: float, rng: random.Random
) -> Event | None:
    if rng.random() > 0.06 or account.activity(progress) == 0:
        return None
    match account.profile:
        case Profile.HEALTHY:
            return factory.survey(account, ts, SurveyType.NPS, rng.randint(8, 10))
        case Profile.DECLINING:
            return factory.survey(account, ts, SurveyType.NPS, rng.randint(2, 6))
        case Profile.SUPPORT_HEAVY:
            return factory.survey(account, ts, SurveyType.CSAT, rng.randint(1, 2))
        case Profile.PAYMENT_TROUBLE:
            return factory.survey(account, ts, SurveyType.CES, rng.randint(2, 4))
        case Profile.GONE_SILENT:
            return factory.survey(account, ts, SurveyType.CES, rng.randint(4, 7))
        case Profile.LEAVING:
            return factory.survey(account, ts, SurveyType.NPS, rng.randint(0, 4))


def history(
    accounts: list[DemoAccount], factory: EventFactory, days: int, now: float, rng: random.Random
) -> list[list[Event]]:
    """``days`` days of past events, one list per day, oldest first, ending yesterday."""
    today = int(now // SECONDS_PER_DAY) * SECONDS_PER_DAY
    result = []
    for day_index in range(days):
        day_start = today - (days - day_index) * SECONDS_PER_DAY
        progress = day_index / days
        day: list[Event] = []
        for account in accounts:
            day.extend(day_events(account, factory, day_start, progress, rng))
        result.append(day)
    return result


FORMER_SHARE = 0.1
"""Former customers, beside the demo's accounts: a tenth as many."""
CHURNED_DAYS_AGO = 5


def former_customers(options: DemoOptions) -> list[DemoAccount]:
    """Accounts whose usage fell away until they left, ``CHURNED_DAYS_AGO`` days before now:
    the churns the live audit judges the scores by (docs/audit.md)."""
    rng = random.Random(options.seed + 1)
    return [
        DemoAccount(
            account_id=f"gone-{index + 1:03d}",
            profile=Profile.LEAVING,
            users=[f"gone-{index + 1:03d}-{u}" for u in range(rng.randint(3, 12))],
            invoice_day=rng.randrange(options.history_days or 1),
            plan="team",
            owner=rng.choice(CSM_OWNERS),
            tenure_days=rng.randint(options.history_days, 3 * 365),
        )
        for index in range(round(options.accounts * FORMER_SHARE))
    ]


def attribute_snapshots(accounts: list[DemoAccount], now: float) -> list[AccountAttributes]:
    """The accounts' CRM records and their groups'."""
    groups = sorted({account.parent for account in accounts if account.parent is not None})
    return [
        *(account.attributes(now) for account in accounts),
        *(group_attributes(group, now) for group in groups),
    ]


def churns(formers: list[DemoAccount], now: float, seed: int) -> list[OutcomeEvent]:
    """Billing's word that each former customer left, ``CHURNED_DAYS_AGO`` days ago."""
    today = int(now // SECONDS_PER_DAY) * SECONDS_PER_DAY
    at = datetime.fromtimestamp(today - CHURNED_DAYS_AGO * SECONDS_PER_DAY + 1800, UTC)
    return [
        OutcomeEvent(
            event_id=f"demo{seed}-churn-{account.account_id}",
            account_id=account.account_id,
            occurred_at=at,
            outcome=OutcomeKind.CHURNED,
            mrr_before=INVOICE_AMOUNT,
            mrr_after=Decimal(0),
        )
        for account in formers
    ]


def history_events(options: DemoOptions, now: float) -> list[Event]:
    """The demo's history for ``options``, flattened, oldest first (tests and benchmarks)."""
    accounts, factory = make_accounts(options), EventFactory(options.seed)
    days = history(accounts, factory, options.history_days, now, random.Random(options.seed))
    return [event for day in days for event in day]


def live_tick(
    accounts: list[DemoAccount], factory: EventFactory, n: int, now: float, rng: random.Random
) -> list[Event]:
    """About ``n`` live events at ``now``: usage by activity, plus the profile's trouble."""
    weights = [a.activity(1.0) for a in accounts]
    events: list[Event] = []
    for account in rng.choices(accounts, weights=weights, k=n):
        features = max(1, round(len(FEATURES) * min(1.0, account.activity(1.0) + 0.1)))
        events.append(factory.usage(account, now, rng, features))
    # Something happens to one account per tick: a failed payment, an urgent ticket, a renewal
    # paid by a silent customer, so the live phase shows moves for each profile.
    account = rng.choice(accounts)
    if account.profile is Profile.PAYMENT_TROUBLE:
        invoice = f"{account.account_id}-inv-live-{int(now)}"
        events.append(factory.payment(account, now, invoice, PaymentStatus.FAILED))
    elif account.profile is Profile.SUPPORT_HEAVY:
        events.extend(_tickets(account, factory, now, 1.0, rng))
    elif account.profile is Profile.GONE_SILENT:
        invoice = f"{account.account_id}-inv-live-{int(now)}"
        events.append(factory.payment(account, now, invoice, PaymentStatus.PAID))
    return events


async def run_demo(settings: Settings, options: DemoOptions) -> None:
    rng = random.Random(options.seed)
    accounts = make_accounts(options)
    factory = EventFactory(options.seed)
    formers = former_customers(options)
    async with EventProducer(settings) as producer:
        start = time.time()
        for snapshot in attribute_snapshots([*accounts, *formers], start):
            await producer.send_model(settings.topic_accounts, snapshot.account_id, snapshot)
        sent = 0
        days = history(accounts, factory, options.history_days, start, rng)
        gone = history(formers, factory, options.history_days, start, random.Random(~options.seed))
        churn_day = options.history_days - CHURNED_DAYS_AGO
        for index, day in enumerate(days):
            if index == churn_day:
                for outcome in churns(formers, start, options.seed):
                    await producer.send_model(settings.topic_outcomes, outcome.account_id, outcome)
            for event in day + (gone[index] if index < churn_day else []):
                await producer.send(event)
                sent += 1
        await producer.flush()
        log.info("Demo history sent: %d events for %d accounts", sent, len(accounts))
        print(f"demo: sent {sent} history events for {len(accounts)} accounts", flush=True)
        live_start = time.time()
        while options.live_seconds is None or time.time() - live_start < options.live_seconds:
            for event in live_tick(accounts, factory, round(options.live_rate), time.time(), rng):
                await producer.send(event)
            await producer.flush()
            await asyncio.sleep(1.0)
