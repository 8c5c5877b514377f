"""One message in, one outcome out: validate, apply to the account's state, rescore.

Kept free of Faust so it can be tested with a plain dict standing in for the table; the
agent in ``streams.worker.app`` does the I/O that the outcome asks for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from alerts.alert import Alert
from alerts.config import AlertRules
from alerts.rules import Observation, Words, check, matches, pending_until
from scoring.events import (
    EVENT_MODELS,
    AccountAttributes,
    AccountId,
    BaseEvent,
    CsmOverride,
    EventKind,
    FeatureUseEvent,
    LoginEvent,
    OutcomeEvent,
    PaymentEvent,
    SurveyEvent,
    TicketEvent,
)
from scoring.rollup import (
    ChildReport,
    apply_report,
    leaving_report,
    report_to_parent,
)
from scoring.schedule import next_due
from scoring.state import (
    AccountState,
    OverrideConflict,
    SourcePosition,
    admits,
    after_churn,
    apply_attributes,
    apply_outcome,
    apply_override,
    fold,
    id_digest,
    take_churn,
)
from scoring.update import Evaluation, Rescorer, ScoreUpdate, Trigger
from scoring.validation import InvalidInput, RejectCode, check_event_time, parse_message
from streams.pipeline.clock import Clock

log = logging.getLogger(__name__)


class Control(StrEnum):
    """Inputs that are not product events."""

    ACCOUNTS = "accounts"
    OVERRIDES = "overrides"
    OUTCOMES = "outcomes"
    TICKS = "ticks"
    """Internal: the timer's re-evaluations (from the due schedule, not a topic)."""
    ROLLUP = "rollup"
    """Internal: children's reports to their parents (``scoring.rollup``)."""


TopicRole = EventKind | Control


TIMER = "timer"
"""The source of ticks (they come from the due schedule, not a topic)."""


class Tick(BaseModel):
    """Internal: the timer asks for an account to be re-evaluated (time has moved)."""

    model_config = ConfigDict(frozen=True)

    account_id: str
    due_at: float


INPUT_MODELS: dict[TopicRole, type[BaseModel]] = {
    **{kind: model for kind, model in EVENT_MODELS.items()},
    Control.ACCOUNTS: AccountAttributes,
    Control.OVERRIDES: CsmOverride,
    Control.OUTCOMES: OutcomeEvent,
    Control.ROLLUP: ChildReport,
}

_ACCOUNT_ID: TypeAdapter[str] = TypeAdapter(AccountId)

MAX_ERASURES_REMEMBERED = 100_000
"""Erased accounts whose erasure time a worker remembers (a digest of the id, in memory):
an input older than the erasure is dropped, not taken for a new account."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """The message goes to the dead-letter topic."""

    error: InvalidInput


@dataclass(frozen=True, slots=True)
class Folded:
    """The input changed the state; the account is rescored once its batch is folded."""

    role: TopicRole
    state: AccountState
    trigger: Trigger
    input_id: str | None
    trigger_key: str
    """What identifies the input in alert ids: replaying it raises the same alert id."""
    event: BaseEvent | None
    now: float
    """The evaluation time this input asks for (event time with the event clock)."""
    path: tuple[str, ...] = ()
    """A child's report: the accounts it came up through (``ChildReport.path``)."""
    regrouped: bool = False
    """A child joined or left: the parent tells its own parent, moved or not (so a report
    that closes a cycle goes round at once)."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """A valid input, not applied yet (``Processor.prepare``)."""

    role: TopicRole | None
    key: bytes | None
    parsed: BaseModel | None
    """None: a tombstone on the accounts topic, the account's erasure."""
    source: SourcePosition


@dataclass(frozen=True, slots=True)
class Erasure:
    """A tombstone on the accounts topic: everything of the account is to go."""

    role: TopicRole
    state: AccountState
    """The account's state (a blank one when the worker held none)."""
    now: float


@dataclass(frozen=True, slots=True)
class Applied:
    """An account's state after a batch of inputs (often one); ``update`` is set when the
    score moved."""

    role: TopicRole
    state: AccountState
    update: ScoreUpdate | None
    alerts: list[Alert]
    now: float
    next_due: float | None
    """When the account must be re-evaluated with no input (None: never)."""
    withdrawn: bool = False
    """The account churned (or was erased) in this batch: its published score is
    withdrawn."""
    forget: bool = False
    """A churned account the audit needs no more, or an erased one: its state is deleted."""
    reports: tuple[ChildReport, ...] = ()
    """What it tells its parents (``scoring.rollup.report_to_parent``)."""
    erased: bool = False
    """A tombstone erased the account: its outputs are erased too."""


class SkipReason(StrEnum):
    REDELIVERED = "redelivered"
    """At or below the highest offset already applied from its topic-partition."""
    DUPLICATE = "duplicate"
    """Its id is among the account's recent ones: a producer sent it twice."""
    OUTDATED = "outdated"
    """An attributes snapshot no newer than the one held."""
    NO_ACCOUNT = "no_account"
    """A timer tick for an account the table does not hold."""
    MOVED = "moved"
    """Fetched before a rebalance handed its partition to another worker, which reads it
    again from the last commit."""
    CHURNED = "churned"
    """An input from after its account's churn (by event time): no longer scored."""
    ERASED = "erased"
    """An input older than its account's erasure."""


@dataclass(frozen=True, slots=True)
class Skipped:
    """Nothing to do, and why."""

    role: TopicRole
    reason: SkipReason


Outcome = Rejected | Applied | Skipped
FoldOutcome = Rejected | Folded | Skipped | Erasure


class Processor:
    def __init__(
        self,
        rescorer: Rescorer,
        rules: AlertRules,
        clock: Clock,
        max_future_seconds: float,
        max_event_bytes: int = 65_536,
    ) -> None:
        self.rescorer = rescorer
        self.rules = rules
        self.clock = clock
        self.max_future_seconds = max_future_seconds
        self.max_event_bytes = max_event_bytes
        self._critical_kinds = {rule.kind for rule in rules.critical_events}
        """The event kinds a critical-event rule looks at: ``settle_needs`` runs per input."""
        self._erased: dict[str, float] = {}
        """Digest of an erased account's id -> its erasure time (``MAX_ERASURES_REMEMBERED``
        at most, oldest forgotten first)."""

    def process(
        self,
        states: MutableMapping[bytes, AccountState],
        role: TopicRole | None,
        key: bytes | None,
        payload: bytes | None,
        source: SourcePosition,
    ) -> Outcome:
        """One raw message applied to ``states`` and rescored at once: a batch of one."""
        outcome = self.fold(states.get, role, key, payload, source)
        if isinstance(outcome, Erasure):
            assert key is not None
            states.pop(key, None)
            return self.erase(outcome)
        if not isinstance(outcome, Folded):
            return outcome
        assert key is not None
        states[key] = outcome.state
        return self.settle([outcome])

    def process_tick(
        self,
        states: MutableMapping[bytes, AccountState],
        key: bytes,
        due_at: float,
        partition: int,
    ) -> Outcome:
        """The timer's re-evaluation of one account, rescored at once (``tick``)."""
        outcome = self.tick(states.get, key, due_at, partition)
        if isinstance(outcome, Folded):
            return self.settle([outcome])
        assert not isinstance(outcome, Erasure)  # only a tombstone erases
        return outcome

    def fold(
        self,
        lookup: Callable[[bytes], AccountState | None],
        role: TopicRole | None,
        key: bytes | None,
        payload: bytes | None,
        source: SourcePosition,
    ) -> FoldOutcome:
        """Validate one raw message and apply it to the account's state from ``lookup``
        (None for an account not seen yet): changed in place or created, not rescored."""
        prepared = self.prepare(role, key, payload, source)
        if isinstance(prepared, Rejected):
            return prepared
        return self.apply(lookup, prepared)

    def tick(
        self,
        lookup: Callable[[bytes], AccountState | None],
        key: bytes,
        due_at: float,
        partition: int,
    ) -> FoldOutcome:
        """The timer asks for an account to be re-evaluated (time has moved on): folded like
        an input that changes nothing. Its alerts are named by ``due_at``: after a crash the
        schedule rebuilt from the states comes due again with the same times."""
        tick = Tick(account_id=key.decode(), due_at=due_at)
        return self._fold(lookup(key), Control.TICKS, tick, SourcePosition(TIMER, partition, -1))

    def prepare(
        self,
        role: TopicRole | None,
        key: bytes | None,
        payload: bytes | None,
        source: SourcePosition,
    ) -> Prepared | Rejected:
        """Validate one raw message; a product event moves the clock of its partition."""
        if role is Control.ACCOUNTS and payload is None:
            return Prepared(role, key, None, source)
        try:
            model = INPUT_MODELS.get(role) if role else None
            parsed = parse_message(model, key, payload, self.max_event_bytes)
            if isinstance(parsed, BaseEvent):
                now = self.clock.now(source.partition)
                check_event_time(parsed, now, self.clock.wall(), self.max_future_seconds)
                if not isinstance(parsed, OutcomeEvent):
                    # An outcome is often told late or read first (a replay, a backfill): it
                    # must not move its partition's time ahead of the events it closes.
                    self.clock.observe(parsed.occurred_ts, source.partition)
        except InvalidInput as error:
            return Rejected(error)
        assert key is not None
        assert role is not None
        return Prepared(role, key, parsed, source)

    def apply(
        self, lookup: Callable[[bytes], AccountState | None], prepared: Prepared
    ) -> FoldOutcome:
        """Apply a prepared input to the account's state from ``lookup``."""
        role, key, parsed, source = prepared.role, prepared.key, prepared.parsed, prepared.source
        if parsed is None:
            return self._erasure(lookup, key, source)
        assert key is not None
        assert role is not None
        try:
            return self._fold(lookup(key), role, parsed, source)
        except OverrideConflict as conflict:
            return Rejected(InvalidInput(RejectCode.OVERRIDE_CONFLICT, str(conflict)))
        except InvalidInput as refused:  # a child's report its parent must not take
            return Rejected(refused)
        except Exception as error:
            # A bug must not stop the scoring of every other account, nor lose the input: it
            # goes to the dead-letter topic, and the traceback to the log.
            log.exception("Applying %s input at %s failed", role, source)
            reason = f"applying the input failed: {type(error).__name__}"
            return Rejected(InvalidInput(RejectCode.PROCESSING_ERROR, reason))

    def _fold(
        self,
        state: AccountState | None,
        role: TopicRole,
        parsed: BaseModel,
        source: SourcePosition,
    ) -> FoldOutcome:
        account_id: str = getattr(parsed, "account_id")  # noqa: B009 - every input has one
        erased_at = self._erased.get(id_digest(account_id)) if self._erased else None
        if erased_at is not None and _input_time(parsed) < erased_at:
            return Skipped(role, SkipReason.ERASED)
        if state is None:
            if isinstance(parsed, Tick):
                return Skipped(role, SkipReason.NO_ACCOUNT)
            state = AccountState(account_id=account_id)
        elif not isinstance(parsed, Tick) and not admits(state, source, None):
            return Skipped(role, SkipReason.REDELIVERED)
        elif not isinstance(parsed, OutcomeEvent | Tick) and after_churn(
            state, _input_time(parsed)
        ):
            return Skipped(role, SkipReason.CHURNED)
        now = max(self.clock.now(source.partition), state.watermark or 0.0)
        input_id: str | None
        event: BaseEvent | None = None
        path: tuple[str, ...] = ()
        regrouped = False
        match parsed:
            case LoginEvent() | FeatureUseEvent() | TicketEvent() | PaymentEvent() | SurveyEvent():
                applied = fold(state, parsed, source)
                trigger, input_id, event = Trigger.EVENT, parsed.event_id, parsed
            case AccountAttributes():
                applied = apply_attributes(state, parsed, source)
                trigger, input_id = Trigger.ATTRIBUTES, None
            case CsmOverride():
                applied = apply_override(state, parsed, now, source)
                trigger, input_id = Trigger.OVERRIDE, parsed.event_id
            case OutcomeEvent():
                churn_was = state.churn_at
                applied = apply_outcome(state, parsed, source)
                trigger, input_id = Trigger.OUTCOME, parsed.event_id
                if applied and self.rescorer.auditor is not None:
                    self.rescorer.auditor.count_outcome(state, churn_was)
            case ChildReport():
                had = parsed.child_id in state.children
                applied = apply_report(state, parsed, source)
                trigger, input_id, path = Trigger.CHILD, None, tuple(parsed.path)
                regrouped = had != (parsed.child_id in state.children)
            case _:
                applied, trigger, input_id = True, Trigger.TIMER, None
        if not applied:
            # Redeliveries were turned away above: what is left is a repeated id or, for
            # attributes, an older snapshot.
            reason = SkipReason.OUTDATED if trigger is Trigger.ATTRIBUTES else SkipReason.DUPLICATE
            return Skipped(role, reason)
        now = max(now, state.watermark or 0.0)
        key = _trigger_key(parsed, input_id)
        return Folded(role, state, trigger, input_id, key, event, now, path, regrouped)

    def _erasure(
        self,
        lookup: Callable[[bytes], AccountState | None],
        key: bytes | None,
        source: SourcePosition,
    ) -> Erasure | Rejected:
        """A tombstone keyed by an account id: the account's erasure."""
        try:
            account_id = (key or b"").decode()
            _ACCOUNT_ID.validate_python(account_id)
        except (UnicodeDecodeError, ValidationError):
            reason = "a tombstone's key must be the id of the account to erase"
            return Rejected(InvalidInput(RejectCode.EMPTY_KEY, reason))
        assert key is not None
        state = lookup(key) or AccountState(account_id=account_id, partition=source.partition)
        now = max(self.clock.now(source.partition), state.watermark or 0.0)
        return Erasure(Control.ACCOUNTS, state, now)

    def erase(self, erasure: Erasure) -> Applied:
        """Everything of the account goes: its state, its score (withdrawn), its parent's
        roll-up of it; inputs older than the erasure are dropped from now on."""
        state, now = erasure.state, erasure.now
        erased = self._erased
        erased.pop(id_digest(state.account_id), None)
        erased[id_digest(state.account_id)] = now
        if len(erased) > MAX_ERASURES_REMEMBERED:
            del erased[next(iter(erased))]
        auditor = self.rescorer.auditor
        if auditor is not None and state.partition is not None:
            auditor.forget(state)
        leaving = leaving_report(state, now)
        return Applied(
            erasure.role,
            state,
            None,
            [],
            now,
            None,
            withdrawn=state.churned_day is None and state.published is not None,
            forget=True,
            reports=() if leaving is None else (leaving,),
            erased=True,
        )

    def settle_needs(self, folded: Folded) -> bool:
        """Whether ``settle`` needs ``folded`` though a later input of the account follows:
        an event a critical-event rule may alert on, new attributes, a child's report that
        moved or regrouped. The others are left out (``now`` never goes back for an account),
        so a window under a backlog holds about one input per account, not all of them."""
        event = folded.event
        if (
            event is not None
            and getattr(event, "kind", None) in self._critical_kinds
            and any(
                matches(rule, event, rule.segments[0] if rule.segments else None)
                for rule in self.rules.critical_events
            )
        ):
            return True
        return folded.trigger is Trigger.ATTRIBUTES or folded.regrouped or bool(folded.path)

    def settle(self, inputs: list[Folded]) -> Applied:
        """Rescore an account once after ``inputs`` (its inputs of one batch, in order, all
        folded into the same state): at most one ScoreUpdate for all of them, and their
        alerts."""
        last = inputs[-1]
        state, now = last.state, max(folded.now for folded in inputs)
        leaves = take_churn(state, now)
        if leaves and self.rescorer.auditor is not None:
            self.rescorer.auditor.leave(state)
        if state.churned_day is not None:
            applied = self._settle_churned(last.role, state, now, leaves)
            leaving = report_to_parent(state, now, False, [])
            return replace(applied, reports=tuple(leaving)) if leaving else applied
        rescorer = self.rescorer
        withdrawn = False
        try:
            evaluation = rescorer.evaluate(state, now)
            if evaluation is None:
                update, alerts = None, []
                # A parent whose last child left, with no data of its own: nothing to score.
                withdrawn = state.published is not None and state.watermark is None
            else:
                events = [(f.event, f.now) for f in inputs if f.event is not None]
                alerts = self._alerts(state, evaluation, now, last.trigger_key, events)
                computed_at = datetime.fromtimestamp(self.clock.wall(), UTC)
                update = rescorer.publish(
                    state, evaluation, now, last.trigger, last.input_id, computed_at, bool(alerts)
                )
        except Exception:
            # The inputs are applied and kept; a bug in scoring must not lose them nor stop
            # every other account. The next input or tick tries again.
            log.exception("Rescoring account %s failed", state.account_id)
            update, alerts = None, []
        changed = update is not None or any(
            f.trigger is Trigger.ATTRIBUTES or f.regrouped for f in inputs
        )
        path = next((list(f.path) for f in inputs if f.path), [])
        reports = tuple(report_to_parent(state, now, changed, path))
        due = self._next_due(state, now)
        return Applied(
            last.role, state, update, alerts, now, due, withdrawn=withdrawn, reports=reports
        )

    def _settle_churned(
        self, role: TopicRole, state: AccountState, now: float, withdrawn: bool
    ) -> Applied:
        """A churned account is not scored: the audit judges it in time, then forgets it."""
        auditor = self.rescorer.auditor
        if auditor is None:
            return Applied(role, state, None, [], now, None, withdrawn)
        forget = auditor.settle(state, now)
        if forget:
            auditor.forget(state)
        due = None if forget else auditor.next_due(state, now)
        return Applied(role, state, None, [], now, due, withdrawn, forget)

    def _alerts(
        self,
        state: AccountState,
        evaluation: Evaluation,
        now: float,
        trigger: str,
        events: list[tuple[BaseEvent, float]],
    ) -> list[Alert]:
        model = self.rescorer.model
        attributes = state.attributes
        score = evaluation.score

        def words() -> Words:
            explanation = self.rescorer.explain(state, evaluation)
            published = state.published
            # Nothing moved since the last update (an event alert): its reasons still hold.
            reasons = explanation.reasons or (published.reasons if published else [])
            drags = [drag.text for drag in explanation.drags]
            return Words(reasons, drags, self.rescorer.drivers_by_kind(explanation.drivers))

        published = state.published
        observation = Observation(
            account_id=state.account_id,
            score=score.value,
            previous_score=evaluation.previous_score,
            bands=model.profile_for(attributes).bands,
            band=score.band,
            previous_band=published.band if published else None,
            onboarding=score.onboarding is not None,
            stale=score.stale,
            segment=score.segment,
            owner=attributes.csm_owner if attributes else None,
            as_of=now,
            trigger=trigger,
            model_version=model.version,
            data_since=state.first_seen,
            received_at=self.clock.wall(),
            words=words,
        )
        return check(state.alerts, observation, self.rules, now, events)

    def _next_due(self, state: AccountState, now: float) -> float | None:
        times = [
            t
            for t in (
                next_due(state, self.rescorer.model, now),
                pending_until(state.alerts, self.rules),
            )
            if t is not None
        ]
        return min(times) if times else None


def _input_time(parsed: BaseModel) -> float:
    """When an input happened, to tell it from what came after its account's erasure or
    churn."""
    match parsed:
        case BaseEvent() | CsmOverride():
            return parsed.occurred_at.timestamp()
        case AccountAttributes():
            return parsed.updated_at.timestamp()
        case ChildReport():
            return parsed.at.timestamp()
        case _:
            return float("inf")  # a timer tick: for an account that is held, or skipped


def _trigger_key(parsed: BaseModel, input_id: str | None) -> str:
    """What identifies the input for alert ids: replaying it raises the same alert id."""
    if input_id is not None:
        return input_id
    if isinstance(parsed, AccountAttributes):
        return f"attributes:{parsed.updated_at.isoformat()}"
    if isinstance(parsed, ChildReport):
        return f"child:{parsed.child_id}:{parsed.at.isoformat()}"
    assert isinstance(parsed, Tick)
    return f"tick:{parsed.due_at:.0f}"
