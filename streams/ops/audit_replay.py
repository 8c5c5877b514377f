"""``chs audit``: what the live audit would have said at the end of a history of records, for
the live model and candidates beside it, in one process and without a broker.

Every record goes through the worker's own per-message code
(``streams.pipeline.account_step``) on event time, with the timer's re-evaluations as the
worker makes them (after the record that moved time past them), and the audit judging each
churn (``scoring.audit``): the figures are the ones ``GET /audit`` would show, with the same
definitions. Slower than ``chs backtest`` (every
record is scored and explained, about 0.3 ms each), but a candidate is judged on the whole
history at once instead of from the day it became a shadow.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from alerts.config import AlertRules
from scoring.audit import Auditor, LocalAudit
from scoring.audit_report import AuditReport, build_report
from scoring.events import AccountAttributes, OutcomeEvent
from scoring.peers import LocalPeers
from scoring.scoring_model import ScoringModel
from scoring.state import AccountState, SourcePosition
from scoring.update import Rescorer
from sim.backtest import Item, iter_sorted, record_time
from sim.files import BadRecord, CsvMapping, estimate_records, read_files
from sim.progress import Progress
from streams.pipeline.account_step import Applied, Control, Outcome, Processor, TopicRole
from streams.pipeline.clock import EventClock
from streams.pipeline.due_schedule import DueSchedule


def role_of(item: Item) -> TopicRole:
    if isinstance(item, AccountAttributes):
        return Control.ACCOUNTS
    if isinstance(item, OutcomeEvent):
        return Control.OUTCOMES
    return item.kind


class AuditReplay:
    """Folds records in event-time order as one worker owning every account would."""

    def __init__(
        self,
        model: ScoringModel,
        candidates: tuple[ScoringModel, ...],
        rules: AlertRules,
        window_days: int,
    ) -> None:
        self.window_days = window_days
        self.audit = LocalAudit()
        auditor = Auditor.for_models(model, candidates, self.audit, window_days)
        self.versions = auditor.versions
        peers = LocalPeers(model.peers.min_accounts)
        self.processor = Processor(
            Rescorer(model, peers, auditor, candidates), rules, EventClock(), math.inf
        )
        self.states: dict[bytes, AccountState] = {}
        self.schedule = DueSchedule()
        self.records = 0
        self.last_time: float | None = None

    def run(self, items: Iterable[Item], progress: Callable[[int], None] | None = None) -> None:
        for item in items:
            role = role_of(item)
            payload = item.model_dump_json(exclude={"kind"}).encode()
            self._apply(role, item.account_id.encode(), payload)
            self.last_time = record_time(item)
            now = self.processor.clock.now(0)  # an outcome does not move it (``Processor``)
            for _, key, due in self.schedule.pop_due(now, limit=1 << 30):
                self._settled(key, self.processor.process_tick(self.states, key, due, 0))
            self.records += 1
            if progress is not None and not self.records % 20_000:
                progress(self.records)

    def _apply(self, role: TopicRole, key: bytes, payload: bytes) -> None:
        source = SourcePosition(str(role), 0, self.records)
        self._settled(key, self.processor.process(self.states, role, key, payload, source))

    def _settled(self, key: bytes, outcome: Outcome) -> None:
        if isinstance(outcome, Applied):
            self.schedule.set(0, key, outcome.next_due)
            if outcome.forget:
                del self.states[key]

    def report(self) -> AuditReport:
        at = datetime.fromtimestamp(self.last_time or 0.0, UTC)
        book = self.audit.book
        return build_report(book.results, book.outcomes, self.versions, self.window_days, at)


def audit_files(
    files: list[Path],
    mapping: CsvMapping,
    model: ScoringModel,
    candidates: tuple[ScoringModel, ...],
    rules: AlertRules,
    window_days: int,
) -> int:
    """``chs audit``: print the figures; 2 on unreadable input."""
    replay = AuditReplay(model, candidates, rules, window_days)
    progress = Progress("scoring records for the audit", estimate_records(files))
    try:
        replay.run(iter_sorted(read_files(files, mapping)), progress.update)
    except (BadRecord, ValueError, OSError) as error:
        print(f"chs audit: {error}", file=sys.stderr)
        return 2
    progress.done = replay.records
    progress.finish()
    title = f"Live audit of {', '.join(p.name for p in files)} ({replay.records:,} records)"
    print("\n".join(report_lines(replay.report(), title)))
    return 0


def report_lines(report: AuditReport, title: str) -> list[str]:
    """The figures as a table for a terminal."""
    lines = [title, f"churns judged over the last {report.window_days} days of the records; "
             f"outcomes: {dict(report.outcomes) or 'none'}", ""]  # fmt: skip
    lines.append(f"{'model':<34} {'lead':>5} {'churners':>9} {'AUC':>14} {'lift':>6}")
    for model in report.models:
        name = f"{model.model_version} ({model.role})"
        for lead in model.leads:
            auc = "-" if lead.auc is None else f"{lead.auc:.3f}"
            if lead.auc_stderr is not None:
                auc += f" ± {lead.auc_stderr:.3f}"
            lift = "-" if lead.lift is None else f"x{lead.lift:.2f}"
            lines.append(f"{name:<34} {lead.lead_days:>4}d {lead.churners:>9} {auc:>14} {lift:>6}")
    return lines
