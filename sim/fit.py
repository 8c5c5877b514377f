"""``chs backtest --fit``: measure weights from the data, by L2-regularised logistic regression
of churn on the measures' 0-100 scores, written as a model file of the same shape.

The model's score is a weighted mean of measure scores (through its components), so a
measure's weight is its share of the score: the fit proposes each measure's weight as how
much a point of it lowers the odds of churn (a measure that does not gets a token weight:
weights must be positive). Segments' own component weights are dropped (their bands kept).
Accounts are split in two by a hash of their id: the fit sees one part, the comparison of
the two models is made on the other.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from scoring.model import Aggregation, MissingRule, ScoringModel
from sim.backtest import Observation

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


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (the system is small and well posed)."""
    n = len(vector)
    rows = [[*row, value] for row, value in zip(matrix, vector, strict=True)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(rows[r][col]))
        rows[col], rows[pivot] = rows[pivot], rows[col]
        lead = rows[col][col]
        for r in range(col + 1, n):
            factor = rows[r][col] / lead
            if factor:
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col], strict=True)]
    solution = [0.0] * n
    for r in range(n - 1, -1, -1):
        total = rows[r][n] - sum(rows[r][c] * solution[c] for c in range(r + 1, n))
        solution[r] = total / rows[r][r]
    return solution


def logistic_regression(
    features: list[list[float]], labels: list[bool], l2: float = 1.0, iterations: int = 30
) -> list[float]:
    """Intercept then one coefficient per feature (features standardized inside, the
    coefficients returned on the original scale); Newton's method."""
    d = len(features[0])
    means = [sum(row[j] for row in features) / len(features) for j in range(d)]
    spreads = [
        math.sqrt(sum((row[j] - means[j]) ** 2 for row in features) / len(features)) or 1.0
        for j in range(d)
    ]
    xs = [[1.0, *((row[j] - means[j]) / spreads[j] for j in range(d))] for row in features]
    ys = [1.0 if label else 0.0 for label in labels]
    beta = [0.0] * (d + 1)
    for _ in range(iterations):
        gradient = [-l2 * b if j else 0.0 for j, b in enumerate(beta)]
        hessian = [[l2 if i == j and i else 0.0 for j in range(d + 1)] for i in range(d + 1)]
        for x, y in zip(xs, ys, strict=True):
            z = sum(b * v for b, v in zip(beta, x, strict=True))
            p = 1 / (1 + math.exp(-max(-700.0, min(700.0, z))))
            w = p * (1 - p)
            for i in range(d + 1):
                gradient[i] += (y - p) * x[i]
                wi = w * x[i]
                row = hessian[i]
                for j in range(i + 1):
                    row[j] += wi * x[j]
        for i in range(d + 1):
            for j in range(i + 1, d + 1):
                hessian[i][j] = hessian[j][i]
        step = _solve(hessian, gradient)
        beta = [b + s for b, s in zip(beta, step, strict=True)]
        if max(abs(s) for s in step) < 1e-7:
            break
    slopes = [beta[j + 1] / spreads[j] for j in range(d)]
    intercept = beta[0] - sum(s * m for s, m in zip(slopes, means, strict=True))
    return [intercept, *slopes]


def fit_weights(model: ScoringModel, observations: list[Observation], l2: float = 1.0) -> Fit:
    names = [m.name for c in model.components.values() for m in c.measures]
    features = [[o.measure_scores.get(n, NEUTRAL) for n in names] for o in observations]
    labels = [o.churned for o in observations]
    if all(labels) or not any(labels):
        raise ValueError("fitting needs churned and retained accounts in the training part")
    _, *slopes = logistic_regression(features, labels, l2)
    coefficients = dict(zip(names, slopes, strict=True))
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
    return Fit(coefficients, ScoringModel.model_validate(fitted.model_dump()))
