"""``chs backtest --fit``: measure weights from the data, by L2-regularised logistic regression
of churn on the measures' 0-100 scores, written as a model file of the same shape.

The model's score is a weighted mean of measure scores (through its components), so a
measure's weight is its share of the score: the fit proposes each measure's weight as how
much a point of it lowers the odds of churn (a measure that does not gets a token weight:
weights must be positive), and may add beside a linear or log measure a copy over the full
range of its values (``candidates``). Segments' own component weights are dropped (their
bands kept).
Accounts are split in two by a hash of their id: the fit sees one part, the comparison of
the two models is made on the other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from scoring.scoring_model import (
    Aggregation,
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


def held_out(account_id: str, share: float = 0.3) -> bool:
    """Whether the account is in the held-out part (stable for an id, about ``share``)."""
    digest = hashlib.blake2b(account_id.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") / 2**32 < share


@dataclass(frozen=True)
class Fit:
    coefficients: dict[str, float]
    """Change in the log-odds of churn per point of each measure's score."""
    model: ScoringModel


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


def fit_weights(model: ScoringModel, observations: list[Observation], l2: float = 1.0) -> Fit:
    options = {
        name: [(m.name, c) for m in component.measures for c in candidates(m, observations)]
        for name, component in model.components.items()
    }
    by_name = {c.name: (source, c) for pairs in options.values() for source, c in pairs}
    names = list(by_name)

    def feature(o: Observation, name: str) -> float:
        source, candidate = by_name[name]
        return _score(candidate, source, o)

    labels = [o.churned for o in observations]
    if all(labels) or not any(labels):
        raise ValueError("fitting needs churned and retained accounts in the training part")
    coefficients = dict.fromkeys(names, 0.0)
    kept = names
    # Weights must be positive: a measure whose points raise the odds of churn (often one
    # that overlaps another) is left out and the rest fitted again, not clipped afterwards,
    # which would leave its partner's coefficient making up for it.
    while kept:
        features = [[feature(o, n) for n in kept] for o in observations]
        _, slopes = logistic_regression(features, labels, l2)
        found = dict(zip(kept, slopes, strict=True))
        coefficients.update(found)
        lowering = [n for n in kept if found[n] < 0]
        if len(lowering) == len(kept):
            break
        kept = lowering
    components = {}
    for name, component in model.components.items():
        # The score the model computes is then the sum the regression fitted: a weighted
        # mean of every measure, a missing one counting as the neutral score it was fitted
        # with (skipping it would share its weight among the others, a different sum).
        measures = [
            m.model_copy(
                update={
                    "weight": round(max(MIN_WEIGHT, -coefficients[m.name]) * 100, 4),
                    "missing": MissingRule.NEUTRAL,
                    "neutral_score": NEUTRAL,
                }
            )
            for source, m in options[name]
            if coefficients[m.name] < 0 or m.name == source  # an added copy only if it helps
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
    return Fit(coefficients, ScoringModel.model_validate(fitted.model_dump()))
