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
from sim.fit import Comparison, Figure, Fit, compare, fit_weights, held_out
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
    """Fit the weights, compare with ``model`` on held-out accounts, and write the fitted
    model here when it is better."""
    force: bool = False
    """Write the fitted model even when it is not better."""


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
    train = [o for o in observations if not held_out(o.account_id)]
    try:
        fit = fit_weights(model, train)
    except ValueError as error:
        print(f"chs backtest --fit: {error}", file=sys.stderr)
        return 2
    refit = {(o.account_id, o.at): o for o in _observe(run, fit.model, outcomes).observations}
    held = [o for o in observations if held_out(o.account_id) and (o.account_id, o.at) in refit]
    counts = heldout_counts_risk(train, held)
    comparison = compare(held, [refit[(o.account_id, o.at)] for o in held], counts)
    print("\n".join(fit_lines(model, fit, comparison)))
    if comparison.better or run.force:
        data = fit.model.model_dump(mode="json", exclude_defaults=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        forced = "" if comparison.better else " (--force: it is not better)"
        print(f"\nfitted model written: {path}{forced}")
    else:
        gain = comparison.gain
        print(
            f"\nThe fitted model is not better than {model.name} on held-out accounts "
            f"(AUC {_signed(gain.auc)}, 95 % interval {_signed(gain.low)} to "
            f"{_signed(gain.high)}): no model file written (--force writes it anyway)."
        )
    return 0


def fit_lines(model: ScoringModel, fit: Fit, comparison: Comparison) -> list[str]:
    """The fit's report: the three scores on held-out accounts, then what it did."""
    c = comparison
    lines = [
        "",
        f"held-out accounts (about 30 %, never seen by the fit): {c.accounts:,} accounts, "
        f"{c.observations:,} observations, {c.churned:,} churned within the horizon",
        f"  {'ROC AUC':>42}   95 % interval (bootstrap by account)",
    ]
    for name, figure in (
        (model.name, c.current),
        (fit.model.name, c.fitted),
        (LOGISTIC_BASELINE, c.counts),
    ):
        lines.append(f"  {name:<34} {_auc_text(figure.auc):>7}   {_range(figure)}")
    lines.append(f"  {'fitted minus current':<34} {_signed(c.gain.auc):>7}   {_range(c.gain)}")
    tried = ", ".join(f"{l2:g}: {_auc_text(auc)}" for l2, auc in fit.cv_auc.items())
    lines += [
        "",
        f"penalty chosen by 5-fold cross-validation over accounts: L2 = {fit.l2:g} "
        f"(out-of-fold AUC of each tried: {tried})",
        "weights (log-odds of churn per 100 points of the measure's score; the model weighs "
        "a measure by minus that):",
    ]
    for choice in fit.choices:
        alone = f"alone AUC {_auc_text(choice.alone_auc)}"
        if not choice.varies:
            what = "left out (token weight): the same score for every account in this data"
        elif choice.coefficient >= 0:
            what = "left out (token weight): its points went with more churn beside the others"
        else:
            what = f"{choice.coefficient * 100:+.3f}"
        used = "" if choice.used == choice.measure else f" as {choice.used}"
        lines.append(f"  {choice.measure:<28} {what}{used} ({alone})")
    return lines


def _range(figure: Figure) -> str:
    return f"{figure.low:.3f} to {figure.high:.3f}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def heldout_counts_risk(train: list[Observation], held: list[Observation]) -> list[float]:
    """The counts baseline fitted on the accounts the fit saw: its risk of each of ``held``."""
    labels = [o.churned for o in train]
    baseline = fit_logistic([o.counts for o in train], labels)
    return [baseline.risk(o.counts) for o in held]


def heldout_auc(observations: list[Observation]) -> float | None:
    held = [o for o in observations if held_out(o.account_id)]
    return auc([-o.score for o in held], [o.churned for o in held])


def _auc_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
