"""``chs simulate`` and ``chs backtest``: files in, files and a report out (no Kafka)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from scoring.scoring_model import ScoringModel
from sim.backtest import (
    LOGISTIC_BASELINE,
    Backtest,
    BacktestOptions,
    Observation,
    Outcome,
    auc,
    iter_sorted,
    read_outcomes,
    summarise,
)
from sim.baselines import fit_logistic
from sim.files import (
    BadRecord,
    CsvMapping,
    estimate_records,
    read_files,
    write_csv,
    write_jsonl,
)
from sim.fit import fit_weights, held_out
from sim.progress import Progress
from sim.report import deciles_chart, html_report, text_report
from sim.simulator import SimOptions, Simulation


def simulate(options: SimOptions, out: Path) -> tuple[Path, Path]:
    """Write ``events.jsonl`` and ``outcomes.csv`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    simulation = Simulation(options)
    events, outcomes = out / "events.jsonl", out / "outcomes.csv"
    progress = Progress(f"simulating {options.accounts:,} accounts over {options.days} days")

    def counted() -> Iterator[dict[str, Any]]:
        for n, record in enumerate(simulation.events(), start=1):
            if not n % 50_000:
                progress.update(n)
            yield record

    progress.done = write_jsonl(counted(), events)
    progress.finish()
    write_csv(simulation.outcomes(), outcomes)
    return events, outcomes


@dataclass(frozen=True)
class BacktestRun:
    events: list[Path]
    outcomes: Path | None
    """CSV of who churned; None: the records' outcome events say."""
    options: BacktestOptions
    report: Path | None
    mapping: CsvMapping | None = None
    fit: Path | None = None
    """Write a model with fitted weights here, and compare it with ``model`` held out."""


def _observe(
    run: BacktestRun, model: ScoringModel, outcomes: dict[str, Outcome] | None
) -> Backtest:
    progress = Progress(f"scoring records with {model.name}", estimate_records(run.events))
    test = Backtest(model, outcomes, run.options)
    test.run(iter_sorted(read_files(run.events, run.mapping)), progress.update)
    progress.done = test.records
    progress.finish()
    return test


def backtest(run: BacktestRun, model: ScoringModel) -> int:
    """Print the table, write the report (and a fitted model); 2 on unreadable input."""
    try:
        outcomes = None if run.outcomes is None else read_outcomes(run.outcomes)
        test = _observe(run, model, outcomes)
        observations = test.observations
        summary = summarise(observations, model, test.censored)
    except (BadRecord, ValueError, OSError) as error:
        print(f"chs backtest: {error}", file=sys.stderr)
        return 2
    title = f"Backtest of model {model.version} on {', '.join(p.name for p in run.events)}"
    print(text_report(summary, run.options.horizon_days, title))
    if run.report is not None:
        chart_only = run.report.suffix.lower() == ".svg"
        page = html_report(summary, run.options.horizon_days, title)
        run.report.write_text(deciles_chart(summary.deciles) if chart_only else page)
        print(f"\nreport: {run.report}")
    if run.fit is not None:
        return _fit(run, run.fit, model, outcomes, observations)
    return 0


def _fit(
    run: BacktestRun,
    path: Path,
    model: ScoringModel,
    outcomes: dict[str, Outcome] | None,
    observations: list[Observation],
) -> int:
    try:
        fit = fit_weights(model, [o for o in observations if not held_out(o.account_id)])
    except ValueError as error:
        print(f"chs backtest --fit: {error}", file=sys.stderr)
        return 2
    data = fit.model.model_dump(mode="json", exclude_defaults=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    refit = _observe(run, fit.model, outcomes).observations
    before = heldout_auc(observations)
    after = heldout_auc(refit)
    print(f"\nfitted model: {path}")
    print("held-out accounts (about 30%, never seen by the fit), ROC AUC:")
    print(f"  {model.name:<32} {_auc_text(before)}")
    print(f"  {fit.model.name:<32} {_auc_text(after)}")
    print(f"  {LOGISTIC_BASELINE:<32} {_auc_text(heldout_logistic_auc(observations))}")
    print("weights the fit proposes (log-odds of churn per 100 points of the measure):")
    for name, coefficient in sorted(fit.coefficients.items(), key=lambda item: item[1]):
        print(f"  {name:<28} {coefficient * 100:+.3f}")
    return 0


def heldout_logistic_auc(observations: list[Observation]) -> float | None:
    """The counts baseline fitted on the accounts the fit saw, judged on the held-out ones."""
    train = [o for o in observations if not held_out(o.account_id)]
    labels = [o.churned for o in train]
    if not train or all(labels) or not any(labels):
        return None
    baseline = fit_logistic([o.counts for o in train], labels)
    held = [o for o in observations if held_out(o.account_id)]
    return auc([baseline.risk(o.counts) for o in held], [o.churned for o in held])


def heldout_auc(observations: list[Observation]) -> float | None:
    held = [o for o in observations if held_out(o.account_id)]
    return auc([-o.score for o in held], [o.churned for o in held])


def _auc_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
