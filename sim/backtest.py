"""Does the score predict churn? Score every account at observation dates with the worker's own
code (fold, then evaluate), and compare with what the account did in the following days.

Pure: records and outcomes in, figures out. ``sim/report.py`` puts them in words and plots.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from scoring.events import (
    AccountAttributes,
    Event,
    FeatureUseEvent,
    LoginEvent,
    OutcomeEvent,
    OutcomeKind,
    PaymentEvent,
    SurveyEvent,
    TicketEvent,
)
from scoring.peers import PeerBoard, PeerBook, PeerDistribution
from scoring.score import contribute, evaluate
from scoring.scoring_model import ScoringModel
from scoring.state import (
    SECONDS_PER_DAY,
    AccountState,
    after_churn,
    apply_attributes,
    apply_outcome,
    day_of,
    fold,
)
from sim.baselines import events_30d, fit_logistic, simple_counts


class AttributesRecord(AccountAttributes):
    """A CRM snapshot in a file of records, beside the events: ``"kind": "attributes"``."""

    kind: Literal["attributes"] = "attributes"


Record = Annotated[
    LoginEvent
    | FeatureUseEvent
    | TicketEvent
    | PaymentEvent
    | SurveyEvent
    | OutcomeEvent
    | AttributesRecord,
    Field(discriminator="kind"),
]
RECORD: TypeAdapter[Record] = TypeAdapter(Record)


@dataclass(frozen=True)
class Outcome:
    churned: bool
    churn_day: date | None


@dataclass(frozen=True)
class Observation:
    """One account seen at one date: its score and measures, and whether it churned within
    the horizon after."""

    account_id: str
    at: date
    score: float
    band: str
    measures: dict[str, float | None]
    """Raw value of each measure (None: no data)."""
    measure_scores: dict[str, float]
    """Each measure's 0-100 score (the neutral score where the model says so)."""
    churned: bool
    counts: tuple[float, ...] = ()
    """The baselines' features (``sim.baselines.simple_counts``)."""
    percentiles: dict[str, float] = field(default_factory=dict)
    """Peer-relative measures ranked among peers: the account's percentile (0-100)."""


@dataclass
class BacktestOptions:
    horizon_days: int = 90
    every_days: int = 30
    warmup_days: int = 60
    """No observation before this many days of data: scores need history."""


def read_outcomes(path: Path) -> dict[str, Outcome]:
    """CSV with ``account_id``, ``churned`` (0/1) and ``churn_date`` (ISO date or empty)."""
    outcomes = {}
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"account_id", "churned", "churn_date"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            try:
                churned = row["churned"].strip() in ("1", "true", "yes")
                when = row["churn_date"].strip()
                outcomes[row["account_id"]] = Outcome(
                    churned, date.fromisoformat(when) if churned and when else None
                )
            except ValueError as error:
                raise ValueError(f"{path}, line {line}: {error}") from None
    return outcomes


Item = Event | OutcomeEvent | AccountAttributes
"""A record of a file: a product event, an outcome, or a CRM snapshot."""


def parse_record(line: str | bytes) -> Item:
    """One JSON record: an event of our contract (with its ``kind``), or a CRM snapshot."""
    return RECORD.validate_json(line)


def record_time(item: Item) -> float:
    """Event time (POSIX seconds) of an event, or of a CRM snapshot."""
    if isinstance(item, AccountAttributes):
        return item.updated_at.timestamp()
    return item.occurred_ts


@dataclass
class Backtest:
    """Folds records in event-time order and observes every account at each date."""

    model: ScoringModel
    outcomes: dict[str, Outcome] | None
    """Who churned and when; None: from the records' outcome events (every account that has
    no churn among them survived)."""
    options: BacktestOptions = field(default_factory=BacktestOptions)
    states: dict[str, AccountState] = field(default_factory=dict)
    observations: list[Observation] = field(default_factory=list)
    records: int = 0
    censored: int = 0
    """Observations left out: their horizon passes the end of the data and the account had not
    churned within it by then, so whether it churned within the horizon is unknown (counting
    it as a survivor would flatter or sink the score at random)."""
    _churns: dict[str, Outcome] = field(default_factory=dict)
    """Churns read from the records' outcome events."""

    def run(
        self,
        items: Iterable[Item],
        progress: Callable[[int], None] | None = None,
    ) -> list[Observation]:
        next_at: float | None = None
        first: float | None = None
        last = -math.inf
        for item in items:
            ts = record_time(item)
            last = max(last, ts)
            if first is None:
                first = ts
                next_at = _midnight(ts) + self.options.warmup_days * SECONDS_PER_DAY
            assert next_at is not None
            while ts >= next_at:
                self._observe(next_at)
                next_at += self.options.every_days * SECONDS_PER_DAY
            self._apply(item)
            self.records += 1
            if progress is not None and not self.records % 50_000:
                progress(self.records)
        self._label()
        if first is not None:
            self._censor(datetime.fromtimestamp(last, UTC).date())
        return self.observations

    def _label(self) -> None:
        """Whether each observed account churned within the horizon after, now that every
        outcome is known; an account that churned on the day it was observed (its outcome
        event came after midnight) was gone, as the CSV has it."""
        horizon = timedelta(days=self.options.horizon_days)
        outcomes = self.outcomes if self.outcomes is not None else self._churns
        labelled = []
        for observation in self.observations:
            outcome = outcomes.get(observation.account_id)
            churn_day = outcome.churn_day if outcome is not None and outcome.churned else None
            if churn_day is not None and churn_day <= observation.at:
                continue
            churned = churn_day is not None and churn_day <= observation.at + horizon
            labelled.append(replace(observation, churned=churned))
        self.observations = labelled

    def _censor(self, end: date) -> None:
        horizon = timedelta(days=self.options.horizon_days)
        kept = [o for o in self.observations if o.churned or o.at + horizon <= end]
        self.censored += len(self.observations) - len(kept)
        self.observations = kept

    def _apply(self, item: Item) -> None:
        state = self.states.get(item.account_id)
        if state is None:
            state = self.states[item.account_id] = AccountState(account_id=item.account_id)
        if isinstance(item, AccountAttributes):
            apply_attributes(state, item, None)
        elif isinstance(item, OutcomeEvent):
            apply_outcome(state, item)
            if item.outcome is OutcomeKind.CHURNED and item.account_id not in self._churns:
                self._churns[item.account_id] = Outcome(True, item.occurred_at.date())
        else:
            fold(state, item)

    def peers_at(self, at: float) -> PeerDistribution | None:
        """The distribution live scoring would rank against at ``at`` had the timer evaluated
        every account at the end of the day before: each account's values as of a second
        before ``at``, through the same ``contribute`` and ``PeerBoard`` as the worker."""
        if not self.model.peer_measures:
            return None
        book = PeerBook()
        for state in self.states.values():
            earlier = evaluate(state, self.model, at - 1)
            if earlier is not None:
                contribute(state, earlier, book, at - 1)
        board = PeerBoard(self.model.peers.min_accounts)
        board.put(0, book)
        return board.distribution(day_of(at))

    def _observe(self, at: float) -> None:
        day = datetime.fromtimestamp(at, UTC).date()
        peers = self.peers_at(at)
        for account, state in self.states.items():
            if self.outcomes is not None:
                outcome = self.outcomes.get(account)
                if outcome is None:
                    continue  # no ground truth: cannot be judged
                if outcome.churned and outcome.churn_day is not None and outcome.churn_day <= day:
                    continue  # already gone
            elif after_churn(state, at):
                continue  # already gone
            score = evaluate(state, self.model, at, peers)
            if score is None:
                continue
            self.observations.append(
                Observation(
                    account_id=account,
                    at=day,
                    score=score.value,
                    band=score.band,
                    measures={n: m.value for n, m in score.measures.items()},
                    measure_scores={n: m.score for n, m in score.measures.items()},
                    churned=False,  # known at the end (``_label``)
                    counts=simple_counts(state, at),
                    percentiles={
                        n: m.percentile
                        for n, m in score.measures.items()
                        if m.percentile is not None
                    },
                )
            )


def _midnight(ts: float) -> float:
    return (ts // SECONDS_PER_DAY) * SECONDS_PER_DAY


def auc(values: list[float], labels: list[bool]) -> float | None:
    """ROC AUC of ``values`` ranking the positives first (higher value = more likely
    positive); ties count half. None without both classes."""
    positives = sum(labels)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return None
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = sum(rank for rank, label in zip(ranks, labels, strict=True) if label)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def average_precision(values: list[float], labels: list[bool]) -> float | None:
    """PR AUC as average precision of ``values`` ranking the positives first (higher value =
    more likely positive): the mean, over the positives, of the precision among the
    observations ranked at or above each. None without a positive."""
    positives = sum(labels)
    if not positives:
        return None
    ranked = sorted(zip(values, labels, strict=True), key=lambda pair: -pair[0])
    found, total = 0, 0.0
    for rank, (_, label) in enumerate(ranked, start=1):
        if label:
            found += 1
            total += found / rank
    return total / positives


def top_decile_lift(observations: list[Observation]) -> float | None:
    """Churn rate among the lowest-scored tenth of the observations against the overall rate."""
    churned = sum(o.churned for o in observations)
    if not churned:
        return None
    lowest = sorted(observations, key=lambda o: o.score)[: max(1, len(observations) // 10)]
    return (sum(o.churned for o in lowest) / len(lowest)) / (churned / len(observations))


@dataclass(frozen=True)
class Bucket:
    label: str
    accounts: int
    churned: int
    predicted: float | None = None
    """Mean predicted churn probability, for calibration."""

    @property
    def rate(self) -> float:
        return self.churned / self.accounts if self.accounts else 0.0


def by_band(observations: list[Observation], model: ScoringModel) -> list[Bucket]:
    labels = [band.label for band in model.bands]
    seen = sorted({o.band for o in observations} - set(labels))
    return [
        Bucket(
            band,
            sum(1 for o in observations if o.band == band),
            sum(1 for o in observations if o.band == band and o.churned),
        )
        for band in [*reversed(labels), *seen]
    ]


def deciles(observations: list[Observation], fit: Logistic | None = None) -> list[Bucket]:
    """Ten equal groups by score, lowest scores first."""
    ranked = sorted(observations, key=lambda o: o.score)
    buckets = []
    for index in range(10):
        group = ranked[index * len(ranked) // 10 : (index + 1) * len(ranked) // 10]
        if not group:
            continue
        low, high = group[0].score, group[-1].score
        predicted = (
            sum(fit.predict(o.score) for o in group) / len(group) if fit is not None else None
        )
        buckets.append(
            Bucket(
                f"{index + 1} ({low:.0f}-{high:.0f})",
                len(group),
                sum(o.churned for o in group),
                predicted,
            )
        )
    return buckets


@dataclass(frozen=True)
class Logistic:
    """P(churn) = 1 / (1 + exp(-(intercept + slope * score)))."""

    intercept: float
    slope: float

    def predict(self, score: float) -> float:
        z = self.intercept + self.slope * score
        return 1 / (1 + math.exp(-z)) if z > -700 else 0.0


def fit_calibration(observations: list[Observation], iterations: int = 50) -> Logistic:
    """Churn probability from the score: one-variable logistic regression by Newton's method
    (the score centred for stability)."""
    scores = [o.score for o in observations]
    labels = [1.0 if o.churned else 0.0 for o in observations]
    mean = sum(scores) / len(scores)
    a, b = 0.0, 0.0
    for _ in range(iterations):
        g0 = g1 = h00 = h01 = h11 = 0.0
        for score, label in zip(scores, labels, strict=True):
            x = score - mean
            p = 1 / (1 + math.exp(-max(-700.0, min(700.0, a + b * x))))
            g0 += label - p
            g1 += (label - p) * x
            w = p * (1 - p) + 1e-9
            h00 += w
            h01 += w * x
            h11 += w * x * x
        det = h00 * h11 - h01 * h01
        if det <= 0:
            break
        da = (h11 * g0 - h01 * g1) / det
        db = (h00 * g1 - h01 * g0) / det
        a, b = a + da, b + db
        if abs(da) < 1e-9 and abs(db) < 1e-9:
            break
    return Logistic(intercept=a - b * mean, slope=b)


@dataclass(frozen=True)
class MeasurePower:
    measure: str
    auc: float | None
    """AUC of the measure's 0-100 score ranking churners low (0.5: no signal)."""
    coverage: float
    """Share of observations where the measure had data."""


def measure_power(observations: list[Observation]) -> list[MeasurePower]:
    names = sorted({name for o in observations for name in o.measure_scores})
    powers = []
    for name in names:
        values = [-o.measure_scores.get(name, 50.0) for o in observations]
        labels = [o.churned for o in observations]
        covered = sum(1 for o in observations if o.measures.get(name) is not None)
        powers.append(MeasurePower(name, auc(values, labels), covered / len(observations)))
    return sorted(powers, key=lambda p: -(p.auc or 0.0))


@dataclass(frozen=True)
class Summary:
    observations: int
    accounts: int
    churned: int
    auc: float | None
    pr_auc: float | None
    top_decile_lift: float | None
    bands: list[Bucket]
    deciles: list[Bucket]
    calibration: Logistic
    measures: list[MeasurePower]
    censored: int = 0
    """Observations left out for a horizon past the end of the data (``Backtest.censored``)."""
    baselines: dict[str, float | None] = field(default_factory=dict)
    """ROC AUC of each baseline (``sim.baselines``) over the same observations."""


def summarise(observations: list[Observation], model: ScoringModel, censored: int = 0) -> Summary:
    if not observations:
        raise ValueError("no observation: the events span less than the warm-up, or no "
                         "account has an outcome")  # fmt: skip
    labels = [o.churned for o in observations]
    calibration = fit_calibration(observations)
    return Summary(
        observations=len(observations),
        accounts=len({o.account_id for o in observations}),
        churned=sum(labels),
        auc=auc([-o.score for o in observations], labels),
        pr_auc=average_precision([-o.score for o in observations], labels),
        top_decile_lift=top_decile_lift(observations),
        bands=by_band(observations, model),
        deciles=deciles(observations, calibration),
        calibration=calibration,
        measures=measure_power(observations),
        censored=censored,
        baselines=baseline_aucs(observations),
    )


EVENTS_BASELINE = "fewer events in 30 days"
LOGISTIC_BASELINE = "logistic regression on counts"


def baseline_aucs(observations: list[Observation]) -> dict[str, float | None]:
    """ROC AUC of the baselines over ``observations`` (the regression fitted on them)."""
    if not all(o.counts for o in observations):
        return {}
    labels = [o.churned for o in observations]
    result = {EVENTS_BASELINE: auc([-events_30d(o.counts) for o in observations], labels)}
    if any(labels) and not all(labels):
        fit = fit_logistic([o.counts for o in observations], labels)
        result[LOGISTIC_BASELINE] = auc([fit.risk(o.counts) for o in observations], labels)
    return result


def iter_sorted(items: Iterator[Item]) -> Iterator[Item]:
    """``items`` as given, checking they come in event-time order (a replay or a backtest
    needs it; the simulator and ``chs replay`` write them so)."""
    last = -math.inf
    for item in items:
        ts = record_time(item)
        if ts < last - 1e-6:
            raise ValueError(
                f"records out of event-time order at {item.account_id}: sort the file first"
            )
        last = max(last, ts)
        yield item
