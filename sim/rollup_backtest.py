"""Do roll-ups rank groups by what they are about to lose?

The simulated bases have no hierarchies, so accounts are put in random groups (2 to 8 each,
seeded); at each observation date a group's score is the roll-up of its members' scores
(``scoring.rollup.member_weights``, with each member's MRR from its attributes), and the
group is judged by what happened within the backtest's horizon after: did it lose a quarter
of its MRR or more to churn, did any member churn. The AUC of each roll-up method for each
label says which method tells a CSM of a group what they need.

    python -m sim.rollup_backtest --events base/events.jsonl --outcomes base/outcomes.csv
"""

from __future__ import annotations

import argparse
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from scoring.rollup import Member, member_weights
from scoring.scoring_model import RollupMethod, default_model
from sim.backtest import Backtest, BacktestOptions, Observation, auc, iter_sorted, read_outcomes
from sim.files import read_files

GROUP_SIZES = (2, 8)
MRR_LOST = 0.25
"""A group that loses this share of its MRR to churn within the horizon is a loss."""


@dataclass(frozen=True)
class GroupAt:
    """One group at one date: its members' scores, MRR and churn within the horizon."""

    scores: tuple[float, ...]
    mrr: tuple[float | None, ...]
    churned: tuple[bool, ...]

    def lost_share(self) -> float:
        known = [m for m in self.mrr if m is not None]
        average = sum(known) / len(known) if known else 1.0
        weights = [average if m is None else m for m in self.mrr]
        total = sum(weights)
        lost = sum(w for w, gone in zip(weights, self.churned, strict=True) if gone)
        return lost / total if total > 0 else sum(self.churned) / len(self.churned)


@dataclass(frozen=True)
class MethodFigures:
    method: RollupMethod
    auc_mrr_lost: float | None
    """AUC of the roll-up (lower = riskier) for losing ``MRR_LOST`` of the group's MRR."""
    auc_any_churn: float | None


def random_groups(accounts: Sequence[str], seed: int) -> list[list[str]]:
    """The accounts in random groups of ``GROUP_SIZES`` members (the last may be smaller)."""
    shuffled = list(accounts)
    random.Random(seed).shuffle(shuffled)
    rng = random.Random(seed + 1)
    groups = []
    while shuffled:
        size = rng.randint(*GROUP_SIZES)
        groups.append(shuffled[:size])
        shuffled = shuffled[size:]
    return groups


def groups_at(
    observations: Sequence[Observation],
    groups: Sequence[Sequence[str]],
    mrr: Mapping[str, float | None],
) -> list[GroupAt]:
    """Each group at each date at least two of its members were observed."""
    seen: dict[tuple[str, date], Observation] = {(o.account_id, o.at): o for o in observations}
    dates = sorted({o.at for o in observations})
    found = []
    for group in groups:
        for day in dates:
            members = [seen[a, day] for a in group if (a, day) in seen]
            if len(members) >= 2:
                found.append(
                    GroupAt(
                        scores=tuple(m.score for m in members),
                        mrr=tuple(mrr.get(m.account_id) for m in members),
                        churned=tuple(m.churned for m in members),
                    )
                )
    return found


def rolled_up(group: GroupAt, method: RollupMethod) -> float:
    members = [
        Member(str(n), score, False, mrr)
        for n, (score, mrr) in enumerate(zip(group.scores, group.mrr, strict=True))
    ]
    weights = member_weights(members, method)
    return sum(w * m.score for w, m in zip(weights, members, strict=True))


def method_figures(found: Sequence[GroupAt]) -> list[MethodFigures]:
    lost = [group.lost_share() >= MRR_LOST for group in found]
    any_churn = [any(group.churned) for group in found]
    figures = []
    for method in RollupMethod:
        risk = [-rolled_up(group, method) for group in found]  # a lower score ranks first
        figures.append(MethodFigures(method, auc(risk, lost), auc(risk, any_churn)))
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--outcomes", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    test = Backtest(default_model(), read_outcomes(args.outcomes), BacktestOptions())
    test.run(iter_sorted(read_files([args.events], None)))
    mrr: dict[str, float | None] = defaultdict(lambda: None)
    for account, state in test.states.items():
        attributes = state.attributes
        if attributes is not None and attributes.mrr is not None:
            mrr[account] = float(attributes.mrr)
    found = groups_at(test.observations, random_groups(sorted(test.states), args.seed), mrr)
    losses = sum(group.lost_share() >= MRR_LOST for group in found)
    accounts = test.observations
    alone = auc([-o.score for o in accounts], [o.churned for o in accounts])
    print(f"accounts alone: {len(accounts)} account-dates, AUC {_number(alone)}")
    print(f"{len(found)} group-dates, {losses} lost {MRR_LOST:.0%}+ of their MRR")
    for figures in method_figures(found):
        print(
            f"{figures.method.value:<13} AUC MRR lost {_number(figures.auc_mrr_lost)}"
            f"  AUC any churn {_number(figures.auc_any_churn)}"
        )


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    main()
