"""The live audit: how well earlier scores ranked the accounts that then churned.

For a churn on day D and a lead L (30, 60, 90 days), the churner's closing score on day D-L
is compared with the closing scores of that day of every account alive then that has not
churned (the *survivors*):

- its share of the AUC is the fraction of survivors that scored higher, ties counted half;
  the mean over churners is the ROC AUC (for churners of one day, exactly the Mann-Whitney
  statistic; over many days, each churner weighs the same);
- its share of the lift is how much of it falls in the survivors' lowest-scored decile; the
  mean over churners divided by 0.1 is the lift (1 = no better than chance).

Each model version (the live one and every shadow) has its own closing scores (the account's
``trails``) and its own daily distributions, so a figure belongs to the model that made the
scores it judges.

Distributions are exact: scores carry one decimal, so a day's scores fit in at most 1,001
counts (``ScoreCounts``) whatever the number of accounts; they add across partitions, and an
account that churns is taken out again (a sketch could not). A partition's ``AuditBook`` is
a pure function of its accounts' states (``Auditor.footprint``), kept up to date as they
change and rebuilt from them after a restart or a rebalance; the results of a churner live
in its own state until it is forgotten, ``window_days`` after its churn.

Pure: no clock, no I/O.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from scoring.scoring_model import ScoringModel
from scoring.state import SECONDS_PER_DAY, AccountState, LeadResult, OutcomeMark, day_of

LEADS = (30, 60, 90)
TRAIL_DAYS = 100
"""Closing scores kept per model: the longest lead, and ten days for a churn to settle."""
SETTLE_SECONDS = 6 * 3600
"""A churn is judged this long after its day ends, once the day's other outcomes are in:
churners of the same day must not count as each other's survivors."""
BOTTOM_SHARE = 0.1
MAX_OUTCOME_MARKS = 16
MIN_CHURNERS = 30
"""Fewer churners than this make a figure's standard error above about 0.05: noted as such."""
SCALE = 10
"""Scores carry one decimal: a score's bin is its value times ten."""


def bin_of(score: float) -> int:
    return round(score * SCALE)


class ScoreCounts:
    """How many accounts had each score (by one-decimal bin): at most 1,001 entries."""

    __slots__ = ("counts", "total")

    def __init__(self, counts: Mapping[int, int] | None = None) -> None:
        self.counts: dict[int, int] = dict(counts or {})
        self.total = sum(self.counts.values())

    def add(self, score_bin: int, n: int = 1) -> None:
        count = self.counts.get(score_bin, 0) + n
        if count > 0:
            self.counts[score_bin] = count
        else:
            self.counts.pop(score_bin, None)
            n -= count  # never below zero: a removal of what was never added is ignored
        self.total += n

    def merge(self, other: ScoreCounts) -> None:
        for score_bin, n in other.counts.items():
            self.add(score_bin, n)

    def standing(self, score: float) -> LeadResult | None:
        """How ``score`` ranks among these; None when there are none."""
        if not self.total:
            return None
        mine = bin_of(score)
        below = sum(n for b, n in self.counts.items() if b < mine)
        equal = self.counts.get(mine, 0)
        above = self.total - below - equal
        low, high = below / self.total, (below + equal) / self.total
        if high > low:
            bottom = max(0.0, min(high, BOTTOM_SHARE) - low) / (high - low)
        else:
            bottom = 1.0 if low < BOTTOM_SHARE else 0.0
        return LeadResult(
            score=score,
            above=(above + 0.5 * equal) / self.total,
            bottom=bottom,
            survivors=self.total,
        )


@dataclass(slots=True)
class Tally:
    """The sum of churners' results for one (model, lead, segment)."""

    churners: int = 0
    above: float = 0.0
    bottom: float = 0.0
    survivors: int = 0

    def add(self, result: LeadResult, sign: int = 1) -> None:
        self.churners += sign
        self.above += sign * result.above
        self.bottom += sign * result.bottom
        self.survivors += sign * result.survivors

    def merge(self, other: Tally) -> None:
        self.churners += other.churners
        self.above += other.above
        self.bottom += other.bottom
        self.survivors += other.survivors

    def as_list(self) -> list[float]:
        return [self.churners, self.above, self.bottom, self.survivors]


TallyKey = tuple[str, int, str]
"""(model version, lead days, segment)."""
ALL_SEGMENTS = "*"
NO_SEGMENT = "default"


@dataclass(slots=True)
class AuditBook:
    """One partition's part of the audit: the daily score distributions of its accounts
    alive and not churned, per model version, and its churners' results and outcomes."""

    alive: dict[int, dict[str, ScoreCounts]] = field(default_factory=dict)
    """Day -> model version -> the closing scores of that day."""
    results: dict[TallyKey, Tally] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    changed_days: set[int] = field(default_factory=set)
    """Days changed since shipped (``streams.worker.audit_feed``)."""
    results_changed: bool = False
    newest: int | None = None
    pending: Counter[int] = field(default_factory=Counter)
    """Churn day -> accounts whose churn is told but not in effect yet (its time not reached
    on their partition): a churner of a later day is not judged before they leave."""

    def add_pending(self, day: int, sign: int = 1) -> None:
        self.pending[day] += sign
        if self.pending[day] <= 0:
            del self.pending[day]
        self.results_changed = True

    def churns_pending_before(self, day: int) -> bool:
        return any(pending_day < day for pending_day in self.pending)

    def add_score(self, version: str, day: int, score: float, sign: int = 1) -> None:
        counts = self.alive.setdefault(day, {}).get(version)
        if counts is None:
            if sign < 0:
                return
            counts = self.alive[day][version] = ScoreCounts()
        counts.add(bin_of(score), sign)
        self.changed_days.add(day)

    def add_result(self, key: TallyKey, result: LeadResult, sign: int = 1) -> None:
        for segment in {key[2], ALL_SEGMENTS}:
            tally_key = (key[0], key[1], segment)
            tally = self.results.get(tally_key)
            if tally is None:
                tally = self.results[tally_key] = Tally()
            tally.add(result, sign)
            if not tally.churners:
                del self.results[tally_key]
        self.results_changed = True

    def add_outcome(self, mark: OutcomeMark, sign: int = 1) -> None:
        self.outcomes[mark.outcome.value] += sign
        if self.outcomes[mark.outcome.value] <= 0:
            del self.outcomes[mark.outcome.value]
        self.results_changed = True

    def has_accounts(self) -> bool:
        """Whether accounts alive were scored on its latest closed day."""
        if self.newest is None:
            return False
        return any(counts.total for counts in self.alive.get(self.newest - 1, {}).values())

    def prune(self, today: int) -> None:
        """Forget days past the trails' reach (once a day)."""
        if self.newest is not None and today <= self.newest:
            return
        self.newest = today
        self.results_changed = True  # other workers wait for its progress (``reached``)
        for day in [day for day in self.alive if day <= today - TRAIL_DAYS]:
            del self.alive[day]
            self.changed_days.add(day)


def trail_day_scores(state: AccountState, version: str) -> Iterable[tuple[int, float]]:
    """(day, closing score) of ``version``'s trail, oldest first."""
    trail, end = state.trails.get(version), state.trail_end
    if not trail or end is None:
        return ()
    first = end - len(trail) + 1
    return zip(range(first, end + 1), trail, strict=True)


def closing_score(state: AccountState, version: str, day: int) -> float | None:
    """``version``'s closing score of ``day`` (held from the day before when the account was
    not evaluated that day); None before its trail."""
    trail, end = state.trails.get(version), state.trail_end
    if not trail or end is None:
        return None
    index = min(day, end) - (end - len(trail) + 1)
    return trail[index] if index >= 0 else None


class AuditPort(Protocol):
    """What the audit needs of its surroundings: the book of an account's partition, and the
    survivors of a day across every partition."""

    def book_for(self, partition: int | None) -> AuditBook: ...

    def survivors(self, version: str, day: int) -> ScoreCounts: ...

    def reached(self, day: int) -> bool:
        """Whether every partition's accounts are scored as of ``day`` or later, and every
        churn told of a day before it has taken effect: the days before it are closed
        everywhere."""
        ...

    def wait(self, partition: int | None, account_id: str, day: int) -> None:
        """A churner's judgement waits until ``reached(day)``: have it tried again then (event
        time may not move on in the meantime: the end of a replay)."""
        ...


class LocalAudit:
    """Every account on one partition, in one process (the tests, the bench)."""

    def __init__(self) -> None:
        self.book = AuditBook()

    def book_for(self, partition: int | None) -> AuditBook:
        return self.book

    def survivors(self, version: str, day: int) -> ScoreCounts:
        return self.book.alive.get(day, {}).get(version, ScoreCounts())

    def reached(self, day: int) -> bool:
        return True  # one reader, in event-time order: no partition lags another

    def wait(self, partition: int | None, account_id: str, day: int) -> None:
        raise AssertionError("nothing waits: every day is reached")


class Auditor:
    """Keeps the accounts' trails and their partitions' books in step, and judges churns.

    ``versions``: the live model's first, then the shadows'. ``segment_of`` names an
    account's segment for the per-segment figures."""

    def __init__(
        self,
        versions: list[str],
        audit: AuditPort,
        window_days: int,
        segment_of: SegmentOf,
    ) -> None:
        if len(set(versions)) != len(versions):
            raise ValueError(f"each audited model must be another version: {versions}")
        self.versions = versions
        self.audit = audit
        self.window_days = window_days
        self.segment_of = segment_of

    @classmethod
    def for_models(
        cls,
        model: ScoringModel,
        shadows: Iterable[ScoringModel],
        audit: AuditPort,
        window_days: int,
    ) -> Auditor:
        """The live model's and the shadows' audit, by the live model's segments."""
        versions = [model.version, *(shadow.version for shadow in shadows)]
        return cls(
            versions, audit, window_days, lambda state: model.profile_for(state.attributes).segment
        )

    def observe(self, state: AccountState, scores: Mapping[str, float], now: float) -> None:
        """After an evaluation of an account that has not churned: ``scores`` (model version
        -> score) become the closing scores of ``now``'s day, and the days that ended since
        the last evaluation go into the book."""
        today = day_of(now)
        end = state.trail_end
        if end is not None and today < end:
            return  # an evaluation for an earlier time changes no closing score
        book = self.audit.book_for(state.partition)
        if end is not None and today > end:
            self._extend(state, today)
        state.trail_end = today
        for version, score in scores.items():
            trail = state.trails.get(version)
            if trail is None or end is None:
                state.trails[version] = [score]
            elif today > end:
                trail.append(score)
            else:
                trail[-1] = score
        if end is not None and today > end:
            for version, trail in state.trails.items():
                if version not in scores:
                    trail.append(trail[-1])  # no score this time (no data): it holds
        self._prune_marks(state, book, today)
        book.prune(today)

    def _extend(self, state: AccountState, today: int) -> None:
        """Close the days before ``today``: hold each trail's last score over days with no
        evaluation, and put the closed days into the book."""
        assert state.trail_end is not None
        gap = today - state.trail_end - 1
        for version in list(state.trails):
            trail = state.trails[version]
            if version not in self.versions:
                del state.trails[version]  # no longer evaluated: audited no more
                continue
            trail.extend([trail[-1]] * min(gap, TRAIL_DAYS))
            del trail[: max(0, len(trail) - TRAIL_DAYS + 1)]  # room for today's
        state.trail_end = today - 1
        first = today - TRAIL_DAYS + 1
        if state.audit_day is not None:
            first = max(first, state.audit_day + 1)
        book = self.audit.book_for(state.partition)
        for version in self.versions:
            for day, score in trail_day_scores(state, version):
                if day >= first:
                    book.add_score(version, day, score)
        state.audit_day = today - 1

    def count_outcome(self, state: AccountState, churn_was: float | None) -> None:
        """After an outcome was applied to ``state`` (its newest mark); ``churn_was``: its
        ``churn_at`` before."""
        book = self.audit.book_for(state.partition)
        if state.churned_day is None and state.churn_at != churn_was:
            if churn_was is not None:
                book.add_pending(day_of(churn_was), -1)
            if state.churn_at is not None:
                book.add_pending(day_of(state.churn_at))
        book.add_outcome(state.outcomes[-1])
        while len(state.outcomes) > MAX_OUTCOME_MARKS:
            book.add_outcome(state.outcomes.pop(0), -1)

    def _prune_marks(self, state: AccountState, book: AuditBook, today: int) -> None:
        while state.outcomes and state.outcomes[0].day <= today - self.window_days:
            book.add_outcome(state.outcomes.pop(0), -1)

    def leave(self, state: AccountState) -> None:
        """Its churn took effect (``take_churn``): no longer pending."""
        assert state.churned_day is not None
        self.audit.book_for(state.partition).add_pending(state.churned_day, -1)

    def withdraw(self, state: AccountState) -> None:
        """A churned account leaves the survivors of every day it was in."""
        if state.audit_day is None:
            return
        book = self.audit.book_for(state.partition)
        for version in self.versions:
            for day, score in trail_day_scores(state, version):
                if day <= state.audit_day:
                    book.add_score(version, day, score, -1)
        state.audit_day = None

    def settle_due(self, state: AccountState) -> float | None:
        """When a churned account is next due: its judgement, then its forgetting."""
        if state.churned_day is None:
            return None
        if not state.audit and state.trails:
            return (state.churned_day + 1) * SECONDS_PER_DAY + SETTLE_SECONDS
        return (state.churned_day + self.window_days) * SECONDS_PER_DAY

    def next_due(self, state: AccountState, now: float) -> float | None:
        """``settle_due``; None while the judgement waits for a partition read behind the
        others (``AuditPort.wait``)."""
        due = self.settle_due(state)
        if due is not None and due <= now and state.trails:
            return None
        return due

    def settle(self, state: AccountState, now: float) -> bool:
        """Judge a churned account once its day's outcomes are in and every partition has
        closed the day after it; True once it is to be forgotten (``forget``)."""
        self.withdraw(state)
        due = self.settle_due(state)
        if due is None or now < due:
            return False
        if state.trails:
            assert state.churned_day is not None
            if self.audit.reached(state.churned_day + 1):
                self._judge(state)
            else:
                self.audit.wait(state.partition, state.account_id, state.churned_day + 1)
            return False
        return True

    def _judge(self, state: AccountState) -> None:
        assert state.churned_day is not None
        book = self.audit.book_for(state.partition)
        segment = self.segment_of(state) or NO_SEGMENT
        for version in self.versions:
            results: dict[int, LeadResult] = {}
            for lead in LEADS:
                day = state.churned_day - lead
                score = closing_score(state, version, day)
                if score is None:
                    continue  # not scored yet that day: too young for this lead
                result = self.audit.survivors(version, day).standing(score)
                if result is not None:
                    results[lead] = result
                    book.add_result((version, lead, segment), result)
            if results:
                state.audit[version] = results
        state.trails.clear()  # judged: only the results are needed from now on
        state.trail_end = None

    def forget(self, state: AccountState) -> None:
        """Take a churned (or erased) account's results, outcomes and churn still pending out
        of its book (it is deleted)."""
        book = self.audit.book_for(state.partition)
        if state.churn_at is not None and state.churned_day is None:
            book.add_pending(day_of(state.churn_at), -1)
            state.churn_at = None
        segment = self.segment_of(state) or NO_SEGMENT
        for version, results in state.audit.items():
            for lead, result in results.items():
                book.add_result((version, lead, segment), result, -1)
        for mark in state.outcomes:
            book.add_outcome(mark, -1)
        state.audit.clear()
        state.outcomes.clear()

    def footprint(self, state: AccountState, book: AuditBook) -> None:
        """Add what ``state`` holds to ``book``: the book of a partition is the sum of its
        accounts' footprints (a rebuild after a restart or a rebalance)."""
        if state.audit_day is not None:
            for version in self.versions:
                for day, score in trail_day_scores(state, version):
                    if day <= state.audit_day:
                        book.add_score(version, day, score)
        segment = self.segment_of(state) or NO_SEGMENT
        for version, results in state.audit.items():
            for lead, result in results.items():
                book.add_result((version, lead, segment), result)
        for mark in state.outcomes:
            book.add_outcome(mark)
        if state.churn_at is not None and state.churned_day is None:
            book.add_pending(day_of(state.churn_at))


class SegmentOf(Protocol):
    def __call__(self, state: AccountState, /) -> str | None: ...


def hanley_mcneil_stderr(auc: float, positives: int, negatives: float) -> float | None:
    """The standard error of an AUC (Hanley and McNeil, 1982); None without both classes."""
    if positives < 1 or negatives < 1:
        return None
    q1 = auc / (2 - auc)
    q2 = 2 * auc * auc / (1 + auc)
    variance = (
        auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)
    ) / (positives * negatives)
    return math.sqrt(max(0.0, variance))
