"""The wire contract: pydantic models of the five event kinds.

Producers send one JSON object per Kafka message, keyed by ``account_id``, on one topic per
kind. This module is the only place that knows how an event looks on the wire; see
``docs/events.md`` for the documented contract.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)

NonEmptyId = Annotated[str, Field(min_length=1, max_length=256)]
AccountId = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\x00]")]
"""An account id never starts with a NUL: the table keeps records of its own under keys that
do (``streams/worker/state_records.py``)."""


def _finite(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("must be a finite number")
    return value


Money = Annotated[Decimal, Field(ge=0, max_digits=20, decimal_places=4), AfterValidator(_finite)]


class EventKind(StrEnum):
    LOGIN = "login"
    FEATURE_USE = "feature_use"
    TICKET = "ticket"
    PAYMENT = "payment"
    SURVEY = "survey"


class TicketAction(StrEnum):
    OPENED = "opened"
    RESOLVED = "resolved"
    REOPENED = "reopened"


class TicketPriority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class PaymentStatus(StrEnum):
    PAID = "paid"
    FAILED = "failed"
    OVERDUE = "overdue"
    REFUNDED = "refunded"


class SurveyType(StrEnum):
    NPS = "nps"
    CSAT = "csat"
    CES = "ces"


SURVEY_SCALES: dict[SurveyType, tuple[int, int]] = {
    SurveyType.NPS: (0, 10),
    SurveyType.CSAT: (1, 5),
    SurveyType.CES: (1, 7),
}


class BaseEvent(BaseModel):
    """Fields every event carries. Unknown extra fields are ignored (forward compatibility)."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    event_id: NonEmptyId
    account_id: AccountId
    occurred_at: AwareDatetime = Field(strict=True)
    """Event time, ISO-8601 with a time zone; strict: no bare numbers."""

    @property
    def occurred_ts(self) -> float:
        """Event time as POSIX seconds: the scoring core works in plain numbers."""
        return self.occurred_at.timestamp()


class LoginEvent(BaseEvent):
    kind: Literal[EventKind.LOGIN] = EventKind.LOGIN
    user_id: NonEmptyId


class FeatureUseEvent(BaseEvent):
    kind: Literal[EventKind.FEATURE_USE] = EventKind.FEATURE_USE
    user_id: NonEmptyId
    feature: NonEmptyId
    count: int = Field(default=1, ge=1, le=1_000_000)


class TicketEvent(BaseEvent):
    kind: Literal[EventKind.TICKET] = EventKind.TICKET
    ticket_id: NonEmptyId
    action: TicketAction
    priority: TicketPriority


class PaymentEvent(BaseEvent):
    kind: Literal[EventKind.PAYMENT] = EventKind.PAYMENT
    invoice_id: NonEmptyId
    status: PaymentStatus
    amount: Money
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. EUR")


class SurveyEvent(BaseEvent):
    kind: Literal[EventKind.SURVEY] = EventKind.SURVEY
    survey: SurveyType
    score: int
    comment: str | None = Field(default=None, max_length=4000)

    @field_validator("score")
    @classmethod
    def _in_scale(cls, value: int, info: ValidationInfo) -> int:
        survey = info.data.get("survey")
        if survey is not None:
            low, high = SURVEY_SCALES[survey]
            if not low <= value <= high:
                raise ValueError(f"{survey.value} score must be between {low} and {high}")
        return value


Event = LoginEvent | FeatureUseEvent | TicketEvent | PaymentEvent | SurveyEvent

EVENT_MODELS: dict[EventKind, type[Event]] = {
    EventKind.LOGIN: LoginEvent,
    EventKind.FEATURE_USE: FeatureUseEvent,
    EventKind.TICKET: TicketEvent,
    EventKind.PAYMENT: PaymentEvent,
    EventKind.SURVEY: SurveyEvent,
}


class AccountAttributes(BaseModel):
    """An account's CRM attributes: a full snapshot on the compacted ``chs.accounts`` topic.

    Every field but ``account_id`` and ``updated_at`` is optional; a newer snapshot replaces
    the older one whole, and an older one arriving late is ignored.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    account_id: AccountId
    updated_at: AwareDatetime = Field(strict=True)
    segment: str | None = Field(default=None, max_length=100)
    plan: str | None = Field(default=None, max_length=100)
    lifecycle_stage: str | None = Field(default=None, max_length=100)
    seats: int | None = Field(default=None, ge=0, le=10_000_000)
    mrr: Money | None = None
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    renewal_date: date | None = None
    csm_owner: str | None = Field(default=None, max_length=200)
    customer_since: date | None = None
    parent_account_id: AccountId | None = None
    """The account this one belongs to (a holding's subsidiary, a company's workspace): the
    parent is scored as a roll-up of its children (``scoring.rollup``)."""

    @model_validator(mode="after")
    def _not_own_parent(self) -> AccountAttributes:
        if self.parent_account_id == self.account_id:
            raise ValueError("parent_account_id: an account cannot be its own parent")
        return self


class OverrideAction(StrEnum):
    SET = "set"
    CLEAR = "clear"


class CsmOverride(BaseModel):
    """A CSM's sentiment override, on the ``chs.overrides`` topic, keyed by account.

    ``set`` needs a score, a reason and an expiry; while an override is active a new ``set``
    must name it in ``replaces``, so an override is never silently overwritten.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    event_id: NonEmptyId
    account_id: AccountId
    occurred_at: AwareDatetime = Field(strict=True)
    action: OverrideAction
    author: NonEmptyId
    reason: str = Field(min_length=1, max_length=500)
    score: float | None = Field(default=None, ge=0, le=100, allow_inf_nan=False)
    expires_at: AwareDatetime | None = Field(default=None, strict=True)
    replaces: str | None = Field(default=None, description="event_id of the active override")

    @model_validator(mode="after")
    def _complete(self) -> CsmOverride:
        if self.action is OverrideAction.SET:
            if self.score is None or self.expires_at is None:
                raise ValueError("a 'set' override needs a score and expires_at")
            if self.expires_at <= self.occurred_at:
                raise ValueError("expires_at must be after occurred_at")
        return self


class OutcomeKind(StrEnum):
    CHURNED = "churned"
    RENEWED = "renewed"
    DOWNGRADED = "downgraded"
    EXPANDED = "expanded"


class OutcomeEvent(BaseEvent):
    """What happened to an account commercially, from a billing or CRM system, on the
    ``chs.outcomes`` topic, keyed by account: the ground truth the live audit
    (``scoring.audit``) judges earlier scores against."""

    kind: Literal["outcome"] = "outcome"
    outcome: OutcomeKind
    mrr_before: Money | None = None
    mrr_after: Money | None = None


# One discriminated union, for readers that get events of mixed kinds (JSONL files, tests).
AnyEvent = Annotated[Event, Field(discriminator="kind")]
ANY_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(AnyEvent)
