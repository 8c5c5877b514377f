"""``chs backtest --fit``: weights from the data, and the comparison that decides whether the
fitted model is written."""

from __future__ import annotations

import json
import random
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import yaml

from scoring.scoring_model import LinearMapping, PercentileMapping, default_model, load_model
from sim.backtest import Backtest, BacktestOptions, Observation, Outcome, auc, parse_record
from sim.commands import BacktestRun, backtest
from sim.files import write_csv, write_jsonl
from sim.fit import (
    FOLDS,
    REVERSED,
    STRETCHED,
    auc_array,
    candidates,
    compare,
    fit_weights,
    fold_of,
    held_out,
)
from sim.simulator import SimOptions, Simulation


def simulated(accounts: int = 300, days: int = 200, seed: int = 21) -> Simulation:
    return Simulation(SimOptions(accounts=accounts, days=days, seed=seed, slide_share=0.4))


def outcomes_of(sim: Simulation) -> dict[str, Outcome]:
    return {
        o["account_id"]: Outcome(
            bool(o["churned"]), date.fromisoformat(o["churn_date"]) if o["churn_date"] else None
        )
        for o in sim.outcomes()
    }


OPTIONS = BacktestOptions(horizon_days=60, every_days=20, warmup_days=40)


def test_a_fitted_model_weighs_one_candidate_per_measure_and_loads_as_a_model(
    tmp_path: Path,
) -> None:
    sim = simulated()
    records = [parse_record(json.dumps(record)) for record in sim.events()]
    model = default_model()
    before = Backtest(model, outcomes_of(sim), OPTIONS).run(iter(records))
    fit = fit_weights(model, [o for o in before if not held_out(o.account_id)])
    names = [m.name for c in fit.model.components.values() for m in c.measures]
    originals = [m.name for c in model.components.values() for m in c.measures]
    assert len(names) == len(originals)  # never a measure and its copy both
    for name, original in zip(names, originals, strict=True):
        assert name in (original, original + STRETCHED, original + REVERSED)
    assert all(m.weight > 0 for c in fit.model.components.values() for m in c.measures)
    assert fit.l2 in fit.cv_auc
    chosen = fit.cv_auc[fit.l2]
    assert chosen is not None
    assert chosen >= max(a for a in fit.cv_auc.values() if a is not None) - 0.001
    after = Backtest(fit.model, outcomes_of(sim), OPTIONS).run(iter(records))
    held = [(b, a) for b, a in zip(before, after, strict=True) if held_out(b.account_id)]
    default_auc = auc([-b.score for b, _ in held], [b.churned for b, _ in held])
    fitted_auc = auc([-a.score for _, a in held], [a.churned for _, a in held])
    assert default_auc is not None
    assert fitted_auc is not None
    assert fitted_auc >= default_auc - 0.02  # no worse, within noise
    path = tmp_path / "fitted.yaml"
    path.write_text(yaml.safe_dump(fit.model.model_dump(mode="json", exclude_defaults=True)))
    assert load_model(path) == fit.model


def test_the_fit_may_weigh_a_measure_over_its_full_range_beside_its_thresholds() -> None:
    model = default_model()
    measures = {m.name: m for c in model.components.values() for m in c.measures}
    seen = [
        Observation("a", date(2025, 1, 1), 50, "x", {"usage_trend_30d": float(v)}, {}, False)
        for v in range(0, 301)
    ]
    trend = candidates(measures["usage_trend_30d"], seen)
    assert [m.name for m in trend] == ["usage_trend_30d", "usage_trend_30d_full_range"]
    stretched = trend[1].mapping
    assert isinstance(stretched, LinearMapping)
    assert (stretched.low, stretched.high) == (3.0, 297.0)  # 1st and 99th percentile
    assert trend[1].label.endswith("(over its full range)")
    [steps] = candidates(measures["payment_failures_30d"], seen)
    assert steps == measures["payment_failures_30d"]
    [ranked] = candidates(measures["active_days_30d"], seen)
    assert isinstance(ranked.mapping, PercentileMapping)
    assert ranked.mapping.full_at == 100.0
    assert candidates(measures["tenure_days"], seen) == [measures["tenure_days"]]  # no values


def observations(trend_towards_churn: float, accounts: int = 400) -> list[Observation]:
    """Accounts whose logins rank the churners well; their usage trend goes with churn by
    ``trend_towards_churn`` (0: not at all, 1: entirely)."""
    rng = random.Random(4)
    result = []
    for a in range(accounts):
        churned = rng.random() < 0.3
        for month in range(4):
            logins = rng.gauss(10 if churned else 25, 6)
            noise = rng.uniform(0, 300)
            trend = (
                trend_towards_churn * (250 if churned else 50) + (1 - trend_towards_churn) * noise
            )
            result.append(
                Observation(
                    f"acct-{a}", date(2025, 1 + month, 1), 50.0, "x",
                    {"logins_7d": max(0.0, logins), "usage_trend_30d": trend},
                    {}, churned,
                )
            )  # fmt: skip
    return result


def test_a_measure_is_turned_round_only_when_the_data_are_overwhelming() -> None:
    model = default_model()
    clear = {c.measure: c for c in fit_weights(model, observations(0.9)).choices}
    assert clear["usage_trend_30d"].used == "usage_trend_30d" + REVERSED
    assert clear["usage_trend_30d"].coefficient < 0
    assert clear["usage_trend_30d"].alone_auc is not None
    assert clear["usage_trend_30d"].alone_auc < 0.2
    fit = fit_weights(model, observations(0.08))
    faint = {c.measure: c for c in fit.choices}
    # Out of fold, the joint fit ranks the churners about as well as its best measure alone.
    best_alone = max(c.alone_auc or 0.0 for c in fit.choices)
    assert (fit.cv_auc[fit.l2] or 0.0) > best_alone - 0.02
    assert not faint["usage_trend_30d"].used.endswith(REVERSED)
    assert faint["logins_7d"].coefficient < 0
    assert not faint["open_tickets"].varies  # no data on tickets at all


def test_folds_and_the_held_out_part_are_drawn_by_account() -> None:
    ids = [f"acct-{n}" for n in range(2_000)]
    folds = [fold_of(i) for i in ids]
    assert set(folds) == set(range(FOLDS))
    assert all(abs(folds.count(f) / len(ids) - 1 / FOLDS) < 0.04 for f in range(FOLDS))
    assert [fold_of(i) for i in ids] == folds  # stable
    assert 0.26 < sum(held_out(i) for i in ids) / len(ids) < 0.34


def test_the_numpy_auc_counts_ties_as_half() -> None:
    values = np.asarray([0.9, 0.5, 0.5, 0.1, 0.5])
    labels = np.asarray([True, True, False, False, False])
    assert auc_array(values, labels) == auc(list(values), list(labels))
    assert auc_array(values, np.zeros(5, dtype=bool)) is None


def held(scores: list[float], labels: list[bool]) -> list[Observation]:
    return [
        Observation(f"a{i // 3}", date(2025, 1 + i % 3, 1), s, "x", {}, {}, churned)
        for i, (s, churned) in enumerate(zip(scores, labels, strict=True))
    ]


def test_the_fitted_model_is_better_only_beyond_its_interval() -> None:
    rng = random.Random(9)
    labels = [rng.random() < 0.3 for _ in range(900)]
    noisy = [rng.uniform(0, 100) - (20 if churned else 0) for churned in labels]
    sharp = [rng.uniform(0, 30) if churned else rng.uniform(40, 100) for churned in labels]
    counts = [0.0] * len(labels)
    current = held(noisy, labels)
    clearly = compare(current, held(sharp, labels), counts)
    assert clearly.better
    assert clearly.gain.auc is not None
    assert clearly.gain.low > 0
    assert clearly.current.low <= (clearly.current.auc or 0) <= clearly.current.high
    assert clearly.accounts == 300
    same = compare(current, held([s + rng.gauss(0, 0.5) for s in noisy], labels), counts)
    assert not same.better
    assert same.gain.low < 0 < same.gain.high


def test_backtest_fit_writes_no_model_unless_it_is_better_or_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = simulated(accounts=120, days=160, seed=5)
    events, outcomes = tmp_path / "events.jsonl", tmp_path / "outcomes.csv"
    write_jsonl(sim.events(), events)
    write_csv(sim.outcomes(), outcomes)
    fitted, again = tmp_path / "fitted.yaml", tmp_path / "fitted-again.yaml"
    forced = BacktestRun([events], outcomes, OPTIONS, None, fit=fitted, force=True)
    assert backtest(forced, default_model()) == 0
    said = capsys.readouterr().out
    assert "fitted minus current" in said
    assert f"fitted model written: {fitted}" in said
    # Fitting the fitted model again finds nothing better: said in one line, nothing written.
    run = BacktestRun([events], outcomes, OPTIONS, None, fit=again)
    assert backtest(run, load_model(fitted)) == 0
    said = capsys.readouterr().out
    [verdict] = [line for line in said.splitlines() if "is not better than" in line]
    assert "no model file written (--force writes it anyway)" in verdict
    assert not again.exists()
