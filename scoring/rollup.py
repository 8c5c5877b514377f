"""Parents scored as a roll-up of their children.

An account names its parent in its attributes (``parent_account_id``). A child reports its
latest published score, band and MRR to its parent (a ``ChildReport`` keyed by the parent,
on a topic of its own, so the report reaches the parent's partition); the parent keeps each
child's latest report (``AccountState.children``) and is scored from them:

- ``mrr_weighted`` (default): the children's scores weighted by their MRR, a child without
  MRR weighing as the average child (all alike when none has one);
- ``mean``: a plain mean; ``min``: the worst child's score.

A parent that has events of its own is scored by its roll-up, its own score, or both (its own
score one more member, weighted by its own MRR), as the model's ``rollup.parents`` says. A
parent is itself a child when it names a parent: roll-ups go up level by level. A report
carries the path it came up by; one that would come back to an account on its path (a cycle)
or climb more than ``MAX_DEPTH`` levels is refused (``HierarchyRefused``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from scoring.events import AccountId, Money
from scoring.explain import MAX_DRAGS, MIN_DRAG_POINTS, Drag, Driver, moved_components
from scoring.score import RollupInfo, Score
from scoring.scoring_model import ParentScoring, RollupMethod, ScoringModel, label_for
from scoring.state import AccountState, ChildEntry, Published, SourcePosition, admits, record
from scoring.validation import InvalidInput, RejectCode

MAX_DEPTH = 10
"""Levels a roll-up may climb: deeper is refused (most likely a cycle not closed yet)."""
MAX_CHILDREN = 1_000
"""Children one parent rolls up: a report of one more is refused (its cost is per child)."""
CHILD_PREFIX = "child:"
OWN_MEMBER = "own"
"""The parent's own score among its roll-up's members (``parents: both``)."""


class ChildReport(BaseModel):
    """A child's score as its parent needs it: on the roll-up topic, keyed by the parent."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    account_id: AccountId
    """The parent: the record's key."""
    child_id: AccountId
    score: float | None = Field(default=None, ge=0, le=100)
    """The child's published score; None while it has none."""
    band: str | None = None
    stale: bool = False
    mrr: Money | None = None
    """The child's MRR (a parent without its own: the sum of its children's)."""
    at: AwareDatetime = Field(strict=True)
    """The child's evaluation time: a parent ignores a report older than the one it holds."""
    leaves: bool = False
    """The child leaves the parent: re-parented, churned or deleted."""
    path: list[AccountId] = Field(min_length=1, max_length=MAX_DEPTH + 1)
    """The accounts this report came up through, the child last."""

    @model_validator(mode="after")
    def _not_own_child(self) -> ChildReport:
        if self.child_id == self.account_id:
            raise ValueError("child_id: an account cannot be its own child")
        return self


class HierarchyRefused(InvalidInput):
    """A report the parent must not take: it goes to the dead-letter topic with its code."""


def apply_report(
    state: AccountState, report: ChildReport, source: SourcePosition | None = None
) -> bool:
    """Keep ``report`` as its child's latest; False if already applied, older than the one
    held, or a leaving child the parent does not have. Raises ``HierarchyRefused`` for a cycle,
    a hierarchy over ``MAX_DEPTH`` levels or a child over ``MAX_CHILDREN``."""
    if not admits(state, source, None):
        return False
    parent, child = state.account_id, report.child_id
    if parent in report.path:
        loop = " -> ".join([*report.path[report.path.index(parent) :], parent])
        raise HierarchyRefused(
            RejectCode.PARENT_CYCLE, f"parent cycle {loop}: {child} is not rolled up into {parent}"
        )
    if len(report.path) > MAX_DEPTH:
        raise HierarchyRefused(
            RejectCode.HIERARCHY_TOO_DEEP,
            f"{parent} would be more than {MAX_DEPTH} levels above {child}",
        )
    held = state.children.get(child)
    if held is None and not report.leaves and len(state.children) >= MAX_CHILDREN:
        raise HierarchyRefused(
            RejectCode.TOO_MANY_CHILDREN,
            f"{parent} has {MAX_CHILDREN} children already; {child} is not",
        )
    record(state, source, None)
    at = report.at.timestamp()
    if held is not None and held.at > at:
        return False
    if report.leaves:
        return state.children.pop(child, None) is not None
    state.children[child] = ChildEntry(
        score=report.score,
        band=report.band,
        stale=report.stale,
        mrr=None if report.mrr is None else float(report.mrr),
        at=at,
    )
    return True


@dataclass(frozen=True, slots=True)
class Member:
    """One member of a roll-up: a child (``child:<id>``) or the parent's own score."""

    name: str
    score: float
    stale: bool
    mrr: float | None


def member_weights(members: list[Member], method: RollupMethod) -> list[float]:
    """Each member's share of the roll-up (they sum to 1)."""
    count = len(members)
    if method is RollupMethod.MIN:
        lowest = min(range(count), key=lambda i: members[i].score)
        return [1.0 if i == lowest else 0.0 for i in range(count)]
    if method is RollupMethod.MRR_WEIGHTED:
        known = [m.mrr for m in members if m.mrr is not None]
        average = sum(known) / len(known) if known else 1.0
        raw = [average if m.mrr is None else m.mrr for m in members]
        total = sum(raw)
        if total > 0:
            return [weight / total for weight in raw]
    return [1.0 / count] * count


def own_mrr(state: AccountState) -> float | None:
    """An account's MRR as its parent weighs it: its own, else its children's sum."""
    attributes = state.attributes
    if attributes is not None and attributes.mrr is not None:
        return float(attributes.mrr)
    known = [child.mrr for child in state.children.values() if child.mrr is not None]
    return sum(known) if known else None


def scores_as_rollup(state: AccountState, model: ScoringModel) -> bool:
    """Whether the account's score is a roll-up: it has children and the model rolls up."""
    return bool(state.children) and model.rollup.parents is not ParentScoring.OWN


def rollup_score(state: AccountState, model: ScoringModel, own: Score | None) -> Score | None:
    """The parent's score from its children's latest reports (and ``own``, its own score,
    when the model rolls up ``both``); None when no member has a score."""
    settings = model.rollup
    members = [
        Member(CHILD_PREFIX + child_id, child.score, child.stale, child.mrr)
        for child_id, child in state.children.items()
        if child.score is not None
    ]
    with_own = own is not None and settings.parents is ParentScoring.BOTH
    if with_own:
        assert own is not None
        attributes = state.attributes
        mrr = None if attributes is None or attributes.mrr is None else float(attributes.mrr)
        members.append(Member(OWN_MEMBER, own.value, own.stale, mrr))
    if not members:
        return None
    weights = member_weights(members, settings.method)
    value = round(sum(w * m.score for w, m in zip(weights, members, strict=True)), 1)
    profile = model.profile_for(state.attributes)
    return Score(
        value=value,
        band=label_for(profile.bands, value),
        grade=label_for(model.grades, value),
        segment=profile.segment,
        stale=all(m.stale for m in members),
        component_scores={m.name: m.score for m in members},
        shares={m.name: w for w, m in zip(weights, members, strict=True)},
        measured={},
        override=None,
        peer_group="",
        rollup=RollupInfo(
            method=settings.method,
            children=len(state.children),
            scored_children=len(members) - with_own,
            own_score=with_own,
        ),
    )


def _member_words(name: str) -> str:
    return name.removeprefix(CHILD_PREFIX) if name != OWN_MEMBER else "own score"


def _share_words(share: float, method: RollupMethod) -> str:
    if method is RollupMethod.MIN:
        return "the group's lowest"
    return f"{share:.0%} of the group"


def rollup_drags(score: Score) -> list[Drag]:
    """The members costing the roll-up the most points against a perfect score, worst first."""
    assert score.rollup is not None
    method = score.rollup.method
    shares = score.shares
    costs = sorted(
        ((shares[name] * (100.0 - value), name) for name, value in score.component_scores.items()),
        reverse=True,
    )
    return [
        Drag(
            component=name,
            measure=None,
            points=round(points, 1),
            text=(
                f"{_member_words(name)} -{points:.0f}: score {score.component_scores[name]:.0f}, "
                f"{_share_words(score.shares[name], method)}"
            ),
        )
        for points, name in costs[:MAX_DRAGS]
        if points >= MIN_DRAG_POINTS
    ]


def rollup_drivers(previous: Published | None, score: Score) -> list[Driver]:
    """The members whose contribution to the roll-up moved most since ``previous``."""
    assert score.rollup is not None
    components = score.components
    drivers = []
    for name, delta in moved_components(previous, score):
        if name in components:
            share = _share_words(score.shares[name], score.rollup.method)
            words = f"score {components[name].score:.0f}, {share}"
        else:
            words = "no longer in the group"
        text = f"{_member_words(name)} {delta:+.0f}: {words}"
        drivers.append(Driver(component=name, delta=delta, text=text, measures=[]))
    return drivers


def report_to_parent(
    state: AccountState, now: float, changed: bool, path: list[str]
) -> list[ChildReport]:
    """What the account tells its parents after an evaluation at ``now``: its old parent that
    it left (re-parented, churned), its parent its score when ``changed`` (a new published
    score or new attributes) or when it is new to it. ``path``: the reports this evaluation
    took, from below (empty for one of its own)."""
    attributes = state.attributes
    parent = None
    if attributes is not None and state.churned_day is None:
        parent = attributes.parent_account_id
    old = state.reported_parent
    if parent is None and old is None:
        return []  # most accounts: no hierarchy, nothing to build
    at = datetime.fromtimestamp(now, UTC)
    reports = []
    own = state.account_id
    if old is not None and old != parent:
        reports.append(_leaves(old, own, at))
    if parent is not None and (changed or old != parent):
        published = state.published
        mrr = own_mrr(state)
        reports.append(
            ChildReport(
                account_id=parent,
                child_id=own,
                score=None if published is None else published.score,
                band=None if published is None else published.band,
                stale=published is not None and published.stale,
                mrr=None if mrr is None else Decimal(str(round(mrr, 4))),
                at=at,
                path=[*path, own],
            )
        )
    state.reported_parent = parent
    return reports


def leaving_report(state: AccountState, now: float) -> ChildReport | None:
    """An erased account's last word to its parent: it leaves."""
    parent = state.reported_parent
    if parent is None:
        return None
    return _leaves(parent, state.account_id, datetime.fromtimestamp(now, UTC))


def _leaves(parent: str, child: str, at: datetime) -> ChildReport:
    return ChildReport(account_id=parent, child_id=child, at=at, leaves=True, path=[child])
