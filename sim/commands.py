"""``chs simulate`` and ``chs backtest``: files in, files and a report out (no Kafka)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scoring.model import ScoringModel
from sim.backtest import Backtest, BacktestOptions, iter_sorted, read_outcomes, summarise
from sim.files import BadRecord, CsvMapping, read_files, write_csv, write_jsonl
from sim.progress import Progress
from sim.report import html_report, text_report
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
    outcomes: Path
    options: BacktestOptions
    report: Path | None
    mapping: CsvMapping | None = None


def backtest(run: BacktestRun, model: ScoringModel) -> int:
    """Print the table, write the report; 2 on unreadable input."""
    try:
        outcomes = read_outcomes(run.outcomes)
        progress = Progress("scoring records")
        test = Backtest(model, outcomes, run.options)
        observations = test.run(iter_sorted(read_files(run.events, run.mapping)), progress.update)
        progress.done = test.records
        progress.finish()
        summary = summarise(observations, model)
    except (BadRecord, ValueError, OSError) as error:
        print(f"chs backtest: {error}", file=sys.stderr)
        return 2
    title = f"Backtest of model {model.version} on {', '.join(p.name for p in run.events)}"
    print(text_report(summary, run.options.horizon_days, title))
    if run.report is not None:
        run.report.write_text(html_report(summary, run.options.horizon_days, title))
        print(f"\nreport: {run.report}")
    return 0
