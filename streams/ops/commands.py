"""The CLI's small commands: check a model file, explain a score, send a CSM override, erase
an account."""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from readmodel.redis_view import ScoreView
from scoring.events import AccountId, CsmOverride, OverrideAction
from scoring.scoring_model import (
    ComponentModel,
    LinearMapping,
    LogMapping,
    ModelError,
    PercentileMapping,
    ScoringModel,
    StepsMapping,
    default_model,
    load_model,
)
from scoring.update import ScoreUpdate
from streams.settings import Settings
from streams.wire import REASON_HEADER
from streams.worker.connections import redis_client
from streams.worker.event_producer import EventProducer


def _mapping_words(
    mapping: LinearMapping | LogMapping | StepsMapping | PercentileMapping,
) -> str:
    if isinstance(mapping, PercentileMapping):
        order = "higher" if mapping.higher_is_better else "lower"
        return (
            f"rank among peers ({order} is better), full from the {mapping.full_at:g}th "
            f"percentile; while peers are few: {_mapping_words(mapping.fallback)}"
        )
    if isinstance(mapping, StepsMapping):
        return "steps " + ", ".join(f">={s.min:g}:{s.score:g}" for s in mapping.steps)
    direction = "higher is better" if mapping.higher_is_better else "lower is better"
    return f"{mapping.type} {mapping.low:g}..{mapping.high:g}, {direction}"


def _component_lines(name: str, component: ComponentModel, share: float) -> list[str]:
    lines = [f"  {name:<13} {share:5.1%}  {component.aggregation.value}"]
    for m in component.measures:
        window = f" over {m.window_days}d" if m.window_days else ""
        if m.baseline_days:
            window += f" vs {m.baseline_days}d before"
        lines.append(
            f"    {m.name:<24} x{m.weight:g}  {m.metric.value}{window}; "
            f"{_mapping_words(m.mapping)}; missing: {m.missing.value}"
        )
    return lines


def describe_model(model: ScoringModel) -> str:
    weights = {name: c.weight for name, c in model.components.items()}
    total = sum(weights.values())
    lines = [
        f"model {model.version}",
        f"  stale after {model.stale_after_days:g} days; "
        f"re-evaluated every {model.reevaluate_hours:g} h with no events",
        f"  new accounts judged from day {model.onboarding.days} of data (youth counted as "
        f"{model.onboarding.days} days until then); bands left {model.band_margin_points:g} "
        "points past their threshold",
        "components:",
    ]
    for name, component in model.components.items():
        lines += _component_lines(name, component, component.weight / total)
    if model.override is not None:
        lines.append(f"  {model.override.label}: weight {model.override.weight:g} while active")
    peers = model.peers
    split = (
        f", split at {peers.tenure_bands_days} days as a customer"
        if peers.tenure_bands_days
        else ""
    )
    lines.append(f"peers: ranked within a segment{split}; at least {peers.min_accounts} accounts")
    lines.append("bands: " + ", ".join(f"{b.label} >= {b.min:g}" for b in model.bands))
    lines.append("grades: " + ", ".join(f"{g.label} >= {g.min:g}" for g in model.grades))
    for segment in model.segments:
        when = " and ".join(f"{k} in {v}" for k, v in segment.when.items())
        lines.append(f"segment {segment.name}: when {when}; weights {segment.weights or 'default'}")
    return "\n".join(lines)


def check_model(path: Path | None) -> int:
    """Validate and summarise the model file at ``path`` (None: the packaged default)."""
    try:
        model = default_model() if path is None else load_model(path)
    except ModelError as error:
        print(f"invalid model:\n{error}")
        return 1
    print(describe_model(model))
    return 0


def describe_update(update: ScoreUpdate, labels: dict[str, str]) -> str:
    new = update.onboarding
    lines = [
        f"{update.account_id}: {update.score:.1f} {update.band} (grade {update.grade})"
        f"{'  STALE' if update.stale else ''}"
        f"{f'  NEW: {new.days_of_data} of {new.judged_from_day} days of data' if new else ''}",
        f"  segment: {update.segment or 'default'}; owner: {update.owner or '-'}; "
        f"as of {update.as_of:%Y-%m-%d %H:%M} UTC; model {update.model_version}",
    ]
    trend = [
        f"{change:+.1f} over {days} days"
        for change, days in ((update.change_7d, 7), (update.change_30d, 30))
        if change is not None
    ]
    lines.append("  trend: " + (", ".join(trend) if trend else "not enough history yet"))
    if update.parent is not None:
        lines.append(f"  parent: {update.parent}")
    if update.rollup is not None:
        rollup = update.rollup
        own = " and its own score" if rollup.own_score else ""
        lines.append(
            f"  roll-up ({rollup.method.value}) of {rollup.scored_children} scored children"
            f" of {rollup.children}{own}:"
        )
    else:
        lines.append("  components (score x share = points):")
    for name, component in sorted(update.components.items(), key=lambda c: c[1].contribution):
        lines.append(
            f"    {name:<13} {component.score:5.1f} x {component.weight:.2f} = "
            f"{component.contribution:5.1f}"
        )
    if update.measures:
        lines.append("  measures (raw value -> 0-100):")
    for name, measure in update.measures.items():
        value = "no data" if measure.value is None else f"{measure.value:g}"
        lines.append(f"    {labels.get(name, name):<52} {value:>8} -> {measure.score:5.1f}")
    if update.override is not None:
        o = update.override
        lines.append(
            f"  CSM override {o.score:g} by {o.author} until {o.expires_at:%Y-%m-%d %H:%M} UTC: "
            f"{o.reason} (id {o.override_id})"
        )
    if update.drags:
        lines.append("  what pulls it down: " + "; ".join(drag.text for drag in update.drags))
    lines.append(f"  last change: {update.summary or '-'}")
    return "\n".join(lines)


async def explain_account(settings: Settings, account: str, model: ScoringModel) -> int:
    view = ScoreView(redis_client(settings))
    try:
        update = await view.read(account)
    finally:
        await view.close()
    if update is None:
        print(f"no score for account {account!r} (unknown, or not scored yet)")
        return 1
    labels = {m.name: m.label for c in model.components.values() for m in c.measures}
    print(describe_update(update, labels))
    return 0


def override_from_args(args: argparse.Namespace, now: datetime) -> CsmOverride:
    setting = args.override_command == "set"
    return CsmOverride(
        event_id=f"override-{uuid.uuid4().hex[:12]}",
        account_id=args.account,
        occurred_at=now,
        action=OverrideAction.SET if setting else OverrideAction.CLEAR,
        author=args.author,
        reason=args.reason,
        score=args.score if setting else None,
        expires_at=now + args.expires if setting else None,
        replaces=args.replace if setting else None,
    )


async def send_override(settings: Settings, args: argparse.Namespace) -> int:
    try:
        override = override_from_args(args, datetime.now(UTC))
    except ValidationError as error:
        print("invalid override: " + "; ".join(e["msg"] for e in error.errors()))
        return 2
    view = ScoreView(redis_client(settings))
    try:
        current = await view.read(override.account_id)
    finally:
        await view.close()
    active = current.override if current is not None else None
    if override.action is OverrideAction.SET and active and override.replaces != active.override_id:
        print(
            f"{override.account_id} has an active override by {active.author} "
            f"({active.override_id}): pass --replace {active.override_id} to replace it"
        )
        return 1
    async with EventProducer(settings) as producer:
        await producer.send_model(settings.topic_overrides, override.account_id, override)
        await producer.flush()
    print(
        f"override {override.event_id} sent for {override.account_id}; "
        f"see it with: chs score explain {override.account_id}"
    )
    return 0


class ErasureRequest(BaseModel):
    account_id: AccountId
    reason: str = Field(min_length=1, max_length=500)


async def erase_account(settings: Settings, args: argparse.Namespace) -> int:
    """``chs account delete ACCOUNT --reason R``: a tombstone on the accounts topic."""
    try:
        request = ErasureRequest(account_id=args.account, reason=args.reason.strip())
    except ValidationError as error:
        print("invalid erasure: " + "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in error.errors()))
        return 2
    async with EventProducer(settings) as producer:
        headers = [(REASON_HEADER, request.reason.encode())]
        await producer.send_tombstone(settings.topic_accounts, request.account_id, headers)
        await producer.flush()
    print(
        f"erasure of {request.account_id} sent: the worker deletes its state, score, history "
        "and alerts, and drops its events older than now. The input topics keep what they "
        "hold until their retention (docs/security.md)."
    )
    return 0
