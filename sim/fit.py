"""``chs backtest --fit``: measure weights from the data, by L2-regularised logistic regression
of churn on the measures' 0-100 scores, written as a model file of the same shape; and the
comparison that decides whether it is worth writing.

The model's score is a weighted mean of measure scores (through its components), so a
measure's weight is its share of the score: the fit proposes each measure's weight as how
much a point of it lowers the odds of churn. Safeguards, each against a way a fit loses
silently on data it was not made for:

- *One candidate per measure.* Beside a linear or log measure the fit may use a copy over
  the full range of the values seen (``candidates``); it keeps whichever of the two ranks
  the churners better alone, never both (collinear twins took opposite signs).
- *Shrinkage chosen on accounts.* The L2 penalty is chosen by 5-fold cross-validation with
  the folds drawn by account (an account's observations are alike: split across folds they
  flatter the weakest penalty).
- *No weight towards churn for a healthy sign.* A measure whose points raise the odds of
  churn in the joint fit gets a token weight and the rest are fitted again; weights must be
  positive. A measure whose scale runs the wrong way for this business (alone, more of it
  goes with more churn, ``OVERWHELMING``) is turned round instead, and the report says so.
- *Judged on accounts the fit never saw*, against the current model and the counts
  regression, with intervals from a bootstrap over accounts (``Comparison``).

Segments' own component weights are dropped (their bands kept).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scoring.scoring_model import (
    Aggregation,
    LinearMapping,
    LogMapping,
    Measure,
    MissingRule,
    PercentileMapping,
    ScoringModel,
    StepsMapping,
)
from sim.backtest import Observation
from sim.regression import logistic_regression

MIN_WEIGHT = 0.001
NEUTRAL = 50.0
L2_GRID = (0.1, 1.0, 10.0, 100.0, 1_000.0, 10_000.0)
FOLDS = 5
BOOTSTRAP_SAMPLES = 200
OVERWHELMING = 0.4
"""A measure is turned round when, alone, its score ranks the churners with an AUC whose
95 % interval (bootstrap by account) lies wholly below this: more of it clearly goes with
more churn. Below that bar a wrong-way sign is taken for noise or overlap with another
measure, and the measure is left out."""


def _unit(account_id: str, salt: bytes) -> float:
    digest = hashlib.blake2b(account_id.encode(), digest_size=4, salt=salt).digest()
    return int.from_bytes(digest, "big") / 2**32


def held_out(account_id: str, share: float = 0.3) -> bool:
    """Whether the account is in the held-out part (stable for an id, about ``share``)."""
    return _unit(account_id, b"") < share


def fold_of(account_id: str) -> int:
    """The cross-validation fold of an account (all its observations in one)."""
    return int(_unit(account_id, b"fold") * FOLDS)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


STRETCHED = "_full_range"
"""Suffix of the measure the fit adds beside a linear or log one (``candidates``)."""


def candidates(measure: Measure, observations: list[Observation]) -> list[Measure]:
    """What the fit may weigh for ``measure``: itself (a peer-relative one scored by its
    plain rank, ``full_at`` 100, not capped) and, for a linear or log mapping, a copy
    stretched over the raw values seen (1st to 99th percentile), which the fit keeps when
    the thresholds, written for another business, clip what predicts churn in this one."""
    mapping = measure.mapping
    if isinstance(mapping, PercentileMapping):
        return [
            measure.model_copy(update={"mapping": mapping.model_copy(update={"full_at": 100.0})})
        ]
    if isinstance(mapping, StepsMapping):
        return [measure]
    raws = [v for o in observations if (v := o.measures.get(measure.name)) is not None]
    low, high = (_quantile(raws, 0.01), _quantile(raws, 0.99)) if raws else (0.0, 0.0)
    if not low < high:
        return [measure]
    stretched = mapping.model_copy(update={"low": low, "high": high})
    name = f"{measure.name}{STRETCHED}"
    label = f"{measure.label} (over its full range)"
    copy = measure.model_copy(update={"name": name, "label": label, "mapping": stretched})
    return [measure, copy]


def _score(measure: Measure, source: str, o: Observation) -> float:
    """``measure``'s score in the observation (``NEUTRAL`` without data), from the raw value
    or rank of ``source``, the model's measure it was made from."""
    mapping = measure.mapping
    if isinstance(mapping, PercentileMapping):
        rank = o.percentiles.get(source)
        if rank is not None:
            return rank if mapping.higher_is_better else 100.0 - rank
    raw = o.measures.get(source)
    return NEUTRAL if raw is None else mapping.score(raw)


def _reversed(measure: Measure) -> Measure:
    """``measure`` scored the other way round (more of it, lower the score)."""
    mapping = measure.mapping
    assert isinstance(mapping, LinearMapping | LogMapping | PercentileMapping)
    turned = mapping.model_copy(update={"higher_is_better": not mapping.higher_is_better})
    label = f"{measure.label} (turned round)"
    return measure.model_copy(
        update={"name": f"{measure.name}{REVERSED}", "label": label, "mapping": turned}
    )


REVERSED = "_turned_round"


def auc_array(values: np.ndarray, labels: np.ndarray) -> float | None:
    """ROC AUC of ``values`` ranking the positives first, ties counted half (numpy)."""
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if not positives or not negatives:
        return None
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


class AccountSampler:
    """Bootstrap resamples of observations by account: an account's observations go in or
    out together (they are alike; resampling them one by one understates the spread)."""

    def __init__(self, accounts: Sequence[str], seed: int = 7) -> None:
        groups: dict[str, list[int]] = {}
        for index, account in enumerate(accounts):
            groups.setdefault(account, []).append(index)
        self._groups = [np.asarray(g) for g in groups.values()]
        self._rng = random.Random(seed)

    def samples(self, n: int = BOOTSTRAP_SAMPLES) -> list[np.ndarray]:
        count = len(self._groups)
        return [
            np.concatenate([self._groups[self._rng.randrange(count)] for _ in range(count)])
            for _ in range(n)
        ]


def interval(values: Sequence[float]) -> tuple[float, float]:
    """The 95 % interval of bootstrap values."""
    ordered = np.sort(np.asarray(values))
    return float(np.quantile(ordered, 0.025)), float(np.quantile(ordered, 0.975))


@dataclass(frozen=True)
class Choice:
    """What the fit did with one of the model's measures."""

    measure: str
    used: str
    """The candidate it weighs: the measure, its full-range copy or the measure turned
    round."""
    alone_auc: float | None
    """How well the measure's score alone ranks the churners (training accounts)."""
    varies: bool
    """Whether its score takes more than one value in the data (a base without tickets
    gives every account the same ticket measures)."""
    coefficient: float
    """Change in the log-odds of churn per point of the candidate's score (negative: more
    points, less churn); zero or more gets the token weight."""


@dataclass(frozen=True)
class Fit:
    model: ScoringModel
    choices: list[Choice]
    l2: float
    cv_auc: dict[float, float | None]
    """Cross-validated AUC of each penalty tried."""


def _positive_fit(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[float, np.ndarray]:
    """Intercept and coefficients (log-odds per point) with every kept one lowering churn: a
    column whose points raise the odds is left out and the rest fitted again (clipping it
    instead would leave its partner making up for it). Columns left out get zero."""
    coefficients = np.zeros(x.shape[1])
    intercept = 0.0
    kept = list(range(x.shape[1]))
    while kept:
        intercept, slopes = logistic_regression(x[:, kept].tolist(), y.tolist(), l2)
        found = np.asarray(slopes)
        coefficients[:] = 0.0
        coefficients[kept] = found
        lowering = [k for k, c in zip(kept, found, strict=True) if c < 0]
        if len(lowering) == len(kept):
            break
        kept = lowering
    return intercept, coefficients


def _cross_validated(x: np.ndarray, y: np.ndarray, folds: np.ndarray) -> dict[float, float | None]:
    """Pooled out-of-fold AUC of each penalty in ``L2_GRID``."""
    results: dict[float, float | None] = {}
    for l2 in L2_GRID:
        risk = np.zeros(len(y))
        for fold in range(FOLDS):
            test = folds == fold
            train = ~test
            if not test.any() or y[train].all() or not y[train].any():
                continue
            # Log-odds, intercept included: the folds' fits are pooled on one scale.
            intercept, coefficients = _positive_fit(x[train], y[train], l2)
            risk[test] = intercept + x[test] @ coefficients
        results[l2] = auc_array(risk, y)
    return results


def fit_weights(model: ScoringModel, observations: list[Observation]) -> Fit:
    labels = np.asarray([o.churned for o in observations], dtype=bool)
    if labels.all() or not labels.any():
        raise ValueError("fitting needs churned and retained accounts in the training part")
    sampler = AccountSampler([o.account_id for o in observations])
    resamples = sampler.samples()
    chosen: dict[str, tuple[Measure, float | None, bool]] = {}
    for component in model.components.values():
        for measure in component.measures:
            chosen[measure.name] = _choose(measure, observations, labels, resamples)
    names = list(chosen)
    x = np.asarray([[_score(chosen[n][0], n, o) for n in names] for o in observations])
    folds = np.asarray([fold_of(o.account_id) for o in observations])
    cv = _cross_validated(x, labels, folds)
    scored = {l2: auc for l2, auc in cv.items() if auc is not None}
    if not scored:
        raise ValueError("too few accounts of each kind to cross-validate the fit")
    # The best out-of-fold AUC; of the penalties within 0.001 of it, the strongest.
    best = max(scored.values())
    l2 = max(l2 for l2, auc in scored.items() if auc >= best - 0.001)
    coefficients = dict(zip(names, _positive_fit(x, labels, l2)[1], strict=True))
    choices = [
        Choice(name, used.name, alone, varies, float(coefficients[name]))
        for name, (used, alone, varies) in chosen.items()
    ]
    return Fit(_fitted_model(model, chosen, coefficients), choices, l2, cv)


def _choose(
    measure: Measure,
    observations: list[Observation],
    labels: np.ndarray,
    resamples: list[np.ndarray],
) -> tuple[Measure, float | None, bool]:
    """The one candidate the fit weighs for ``measure`` (see the module's docstring), the
    measure's own AUC alone, and whether its score varies at all."""
    options = candidates(measure, observations)
    alone: list[tuple[float | None, Measure]] = []
    varies = False
    for option in options:
        health = np.asarray([_score(option, measure.name, o) for o in observations])
        alone.append((auc_array(-health, labels), option))
        varies = varies or bool(np.ptp(health) > 0)
    own_auc = alone[0][0]
    best = max(alone, key=lambda pair: -1.0 if pair[0] is None else pair[0])[1]
    if (
        own_auc is not None
        and own_auc < 0.5
        and not isinstance(measure.mapping, StepsMapping)
        and _clearly_below(measure, observations, labels, resamples)
    ):
        best = _reversed(measure)
    return best, own_auc, varies


def _clearly_below(
    measure: Measure,
    observations: list[Observation],
    labels: np.ndarray,
    resamples: list[np.ndarray],
) -> bool:
    health = np.asarray([_score(measure, measure.name, o) for o in observations])
    aucs = [a for s in resamples if (a := auc_array(-health[s], labels[s])) is not None]
    return bool(aucs) and interval(aucs)[1] < OVERWHELMING


def _fitted_model(
    model: ScoringModel,
    chosen: dict[str, tuple[Measure, float | None, bool]],
    coefficients: dict[str, float],
) -> ScoringModel:
    components = {}
    for name, component in model.components.items():
        # The score the model computes is then the sum the regression fitted: a weighted
        # mean of every measure, a missing one counting as the neutral score it was fitted
        # with (skipping it would share its weight among the others, a different sum).
        measures = [
            chosen[m.name][0].model_copy(
                update={
                    "weight": round(max(MIN_WEIGHT, -coefficients[m.name]) * 100, 4),
                    "missing": MissingRule.NEUTRAL,
                    "neutral_score": NEUTRAL,
                }
            )
            for m in component.measures
        ]
        weight = round(sum(m.weight for m in measures), 4)
        components[name] = component.model_copy(
            update={
                "measures": measures,
                "weight": weight,
                "aggregation": Aggregation.WEIGHTED_MEAN,
            }
        )
    # Segments' own component weights were tuned for the old scale: the fit drops them
    # (their bands stay).
    segments = [segment.model_copy(update={"weights": {}}) for segment in model.segments]
    fitted = model.model_copy(
        update={
            "name": f"{model.name}-fitted",
            "description": "measure weights fitted by chs backtest --fit (logistic regression)",
            "components": components,
            "segments": segments,
        }
    )
    return ScoringModel.model_validate(fitted.model_dump())


@dataclass(frozen=True)
class Figure:
    auc: float | None
    low: float
    high: float


@dataclass(frozen=True)
class Comparison:
    """The current model, the fitted one and the counts regression on the held-out accounts,
    each with its 95 % interval (bootstrap by account), and the fitted model's gain."""

    accounts: int
    observations: int
    churned: int
    current: Figure
    fitted: Figure
    counts: Figure
    gain: Figure
    """Fitted minus current, paired on the same resamples."""

    @property
    def better(self) -> bool:
        """Whether the fitted model beats the current one beyond the gain's interval."""
        return self.gain.low > 0


def compare(
    current: list[Observation], fitted: list[Observation], counts_risk: list[float]
) -> Comparison:
    """``current`` and ``fitted``: the held-out observations scored by each model (the same
    accounts and dates, in the same order); ``counts_risk``: the counts regression's risk
    of each."""
    labels = np.asarray([o.churned for o in current], dtype=bool)
    risks = {
        "current": -np.asarray([o.score for o in current]),
        "fitted": -np.asarray([o.score for o in fitted]),
        "counts": np.asarray(counts_risk),
    }
    sampler = AccountSampler([o.account_id for o in current])
    drawn: dict[str, list[float]] = {name: [] for name in (*risks, "gain")}
    for sample in sampler.samples():
        found = {name: auc_array(risk[sample], labels[sample]) for name, risk in risks.items()}
        for name, value in found.items():
            if value is not None:
                drawn[name].append(value)
        if found["current"] is not None and found["fitted"] is not None:
            drawn["gain"].append(found["fitted"] - found["current"])
    whole = {name: auc_array(risk, labels) for name, risk in risks.items()}
    current_auc, fitted_auc = whole["current"], whole["fitted"]
    whole["gain"] = None if current_auc is None or fitted_auc is None else fitted_auc - current_auc

    def figure(name: str) -> Figure:
        low, high = interval(drawn[name]) if drawn[name] else (math.nan, math.nan)
        return Figure(whole[name], low, high)

    return Comparison(
        accounts=len({o.account_id for o in current}),
        observations=len(current),
        churned=int(labels.sum()),
        current=figure("current"),
        fitted=figure("fitted"),
        counts=figure("counts"),
        gain=figure("gain"),
    )
