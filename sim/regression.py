"""L2-regularised logistic regression by Newton's method (numpy): the fit's and the
baselines' one regression."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_ITERATIONS = 50


def logistic_regression(
    features: Sequence[Sequence[float]], labels: Sequence[bool], l2: float = 1.0
) -> tuple[float, list[float]]:
    """Intercept and one coefficient per feature, on the features' own scale (standardised
    inside; the intercept is not penalised)."""
    x = np.asarray(features, dtype=float)
    y = np.asarray(labels, dtype=float)
    means = x.mean(axis=0)
    spreads = x.std(axis=0)
    spreads[spreads == 0] = 1.0
    design = np.hstack([np.ones((len(x), 1)), (x - means) / spreads])
    beta = np.zeros(design.shape[1])
    penalty = np.eye(design.shape[1]) * l2
    penalty[0, 0] = 0.0
    for _ in range(MAX_ITERATIONS):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ beta, -700, 700)))
        gradient = design.T @ (y - p) - penalty @ beta
        hessian = (design * (p * (1 - p))[:, None]).T @ design + penalty
        step = np.linalg.solve(hessian, gradient)
        beta += step
        if np.max(np.abs(step)) < 1e-8:
            break
    slopes = beta[1:] / spreads
    return float(beta[0] - slopes @ means), [float(s) for s in slopes]
