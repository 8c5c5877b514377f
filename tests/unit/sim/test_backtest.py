from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from scoring.scoring_model import default_model
from sim.backtest import (
    EVENTS_BASELINE,
    LOGISTIC_BASELINE,
    Backtest,
    BacktestOptions,
    Observation,
    Outcome,
    auc,
    average_precision,
    deciles,
    fit_calibration,
    iter_sorted,
    parse_record,
    read_outcomes,
    summarise,
    top_decile_lift,
)
from sim.baselines import COUNT_FEATURES, events_30d, fit_logistic
from sim.report import text_report
from sim.simulator import SimOptions, Simulation
from tests.factories import login


def test_auc_counts_pairs_ranked_right_and_ties_as_half() -> None:
    assert auc([0.9, 0.8, 0.2, 0.1], [True, True, False, False]) == 1.0
    assert auc([0.1, 0.2, 0.8, 0.9], [True, True, False, False]) == 0.0
    assert auc([0.5, 0.5, 0.5, 0.5], [True, False, True, False]) == 0.5
    # 3 of the 4 positive-negative pairs ranked right.
    assert auc([0.9, 0.4, 0.5, 0.1], [True, True, False, False]) == 0.75
    assert auc([0.3, 0.4], [False, False]) is None


def observation(score: float, churned: bool) -> Observation:
    return Observation("a", date(2025, 1, 1), score, "x", {}, {}, churned)


def test_calibration_follows_the_churn_rate_by_score() -> None:
    # Churn falls with the score: 60% at 20, 20% at 50, 5% at 80.
    observations = [
        observation(score, n < int(rate * 100))
        for score, rate in ((20, 0.6), (50, 0.2), (80, 0.05))
        for n in range(100)
    ]
    fit = fit_calibration(observations)
    assert fit.slope < 0
    assert fit.predict(20) == pytest.approx(0.6, abs=0.08)
    assert fit.predict(80) == pytest.approx(0.05, abs=0.04)
    groups = deciles(observations, fit)
    assert len(groups) == 10
    assert groups[0].rate > groups[-1].rate
    assert sum(g.accounts for g in groups) == 300


def test_outcomes_file_errors_name_the_line(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text("account_id,churned,churn_date\na,1,2025-03-01\nb,0,\n")
    assert read_outcomes(good) == {
        "a": Outcome(True, date(2025, 3, 1)),
        "b": Outcome(False, None),
    }
    bad = tmp_path / "bad.csv"
    bad.write_text("account_id,churned,churn_date\na,1,March\n")
    with pytest.raises(ValueError, match="line 2"):
        read_outcomes(bad)
    (tmp_path / "cols.csv").write_text("id,churned\n")
    with pytest.raises(ValueError, match="missing columns"):
        read_outcomes(tmp_path / "cols.csv")


def simulation() -> Simulation:
    return Simulation(SimOptions(accounts=150, days=200, seed=11, slide_share=0.4))


def test_the_simulator_is_deterministic_and_churned_accounts_go_quiet() -> None:
    first = list(simulation().events())
    again = list(simulation().events())
    assert first == again
    assert first != list(Simulation(SimOptions(accounts=150, days=200, seed=12)).events())
    outcomes = {o["account_id"]: o for o in simulation().outcomes()}
    churned = {a: o["churn_date"] for a, o in outcomes.items() if o["churned"]}
    assert churned, "no churner in the sample"
    churn_records = {}
    for record in first:
        when = record.get("occurred_at") or record["updated_at"]
        if record.get("outcome") == "churned":
            churn_records[record["account_id"]] = when[:10]
        elif record["account_id"] in churned:
            assert when[:10] < churned[record["account_id"]]
    assert churn_records == churned  # billing tells of each churn on its day
    times = [record.get("occurred_at") or record["updated_at"] for record in first]
    assert times == sorted(times)


def observed(sim: Simulation) -> list[Observation]:
    """The simulation's records through the default model's backtest (horizon 60 days,
    every 20, after 40)."""
    records = [parse_record(json.dumps(record)) for record in sim.events()]
    outcomes = {
        o["account_id"]: Outcome(
            bool(o["churned"]), date.fromisoformat(o["churn_date"]) if o["churn_date"] else None
        )
        for o in sim.outcomes()
    }
    return Backtest(default_model(), outcomes, BacktestOptions(60, 20, 40)).run(
        iter_sorted(iter(records))
    )


def test_outcome_events_among_the_records_judge_as_the_outcomes_file_does() -> None:
    sim = simulation()
    from_file = observed(sim)
    records = [parse_record(json.dumps(record)) for record in sim.events()]
    from_events = Backtest(default_model(), None, BacktestOptions(60, 20, 40)).run(
        iter_sorted(iter(records))
    )
    labels = {(o.account_id, o.at): o.churned for o in from_file}
    assert any(labels.values())
    assert {(o.account_id, o.at): o.churned for o in from_events} == labels


def test_the_default_model_ranks_the_simulated_churners_low() -> None:
    model = default_model()
    summary = summarise(observed(simulation()), model)
    print(f"default model's AUC on the simulator's churners: {summary.auc:.3f}")
    assert summary.auc is not None
    assert summary.auc > 0.55  # better than chance; the backtest's reason to exist
    assert summary.churned > 0
    assert {bucket.label for bucket in summary.bands} >= {"healthy", "at-risk"}


def test_records_out_of_order_are_refused() -> None:
    later = parse_record(json.dumps(
        {"kind": "login", "event_id": "e2", "account_id": "a",
         "occurred_at": "2025-01-02T00:00:00Z", "user_id": "u"}
    ))  # fmt: skip
    earlier = later.model_copy(update={"event_id": "e1"})
    earlier = parse_record(earlier.model_dump_json().replace("2025-01-02", "2025-01-01"))
    with pytest.raises(ValueError, match="out of event-time order"):
        list(iter_sorted(iter([later, earlier])))


def test_pr_auc_and_top_decile_lift_rank_the_churners_first() -> None:
    assert average_precision([0.9, 0.8, 0.2, 0.1], [True, True, False, False]) == 1.0
    # Positives at ranks 1 and 3: (1/1 + 2/3) / 2.
    assert average_precision([0.9, 0.5, 0.4, 0.1], [True, False, True, False]) == pytest.approx(
        (1 + 2 / 3) / 2
    )
    assert average_precision([0.2, 0.1], [False, False]) is None
    # 100 observations, 10 churners: the 10 lowest scores hold 5 of them.
    observations = [observation(n, n < 5 or 50 <= n < 55) for n in range(100)]
    assert top_decile_lift(observations) == pytest.approx(0.5 / 0.1)
    assert top_decile_lift([observation(50, False)]) is None


def test_observations_whose_horizon_passes_the_end_of_the_data_are_left_out() -> None:
    # One login a day for 100 days; observed every 10 days after a 20-day warm-up, horizon 30.
    records = [login(account=a, days=d) for d in range(100) for a in ("stays", "goes")]
    churn_day = records[-1].occurred_at.date()  # "goes" churns on the last day of the data
    outcomes = {"stays": Outcome(False, None), "goes": Outcome(True, churn_day)}
    test = Backtest(default_model(), outcomes, BacktestOptions(30, 10, 20))
    observations = test.run(iter(records))
    end = records[-1].occurred_at.date()
    # "stays" is judged only where 30 days after the observation are in the data...
    stays = [o.at for o in observations if o.account_id == "stays"]
    assert stays
    assert max(stays) + timedelta(days=30) <= end
    # ...while "goes", seen churning within its horizon, is kept up to its last observation.
    goes = [o for o in observations if o.account_id == "goes"]
    assert max(o.at for o in goes) > max(stays)
    assert goes[-1].churned
    assert test.censored == len(goes) - len(stays)
    assert test.censored > 0


def test_profiles_make_different_businesses() -> None:
    def records(profile: str) -> list[dict[str, object]]:
        return list(Simulation(SimOptions(accounts=60, days=120, seed=3, profile=profile)).events())

    consumer = records("consumer")
    snapshots = [r for r in consumer if r["kind"] == "attributes"]
    assert {r["seats"] for r in snapshots} == {1}
    assert {r["segment"] for r in snapshots} == {"consumer"}
    users: dict[object, set[object]] = {}
    for r in consumer:
        if r["kind"] == "login":
            users.setdefault(r["account_id"], set()).add(r["user_id"])
    assert max(len(u) for u in users.values()) == 1
    smb = records("smb")
    first_seen: dict[object, str] = {}
    for r in smb:
        first_seen.setdefault(r["account_id"], str(r.get("occurred_at") or r["updated_at"]))
    start = min(first_seen.values())
    joined_later = [a for a, when in first_seen.items() if when[:10] > start[:10]]
    assert len(joined_later) > 10  # new accounts join during the period, CRM record first
    b2b = records("b2b-seats")
    assert max(int(str(r["seats"])) for r in b2b if r["kind"] == "attributes") > 20
    per_account = len(b2b) / 60
    assert per_account > 2 * len(smb) / 60


def test_usage_only_and_annual_contract_bases_stress_the_fit() -> None:
    usage = list(
        Simulation(SimOptions(accounts=60, days=120, seed=3, profile="usage-only")).events()
    )
    assert {r["kind"] for r in usage} == {"attributes", "login", "feature_use", "outcome"}
    annual = Simulation(SimOptions(accounts=80, days=400, seed=3, profile="annual-contracts"))
    records = list(annual.events())
    invoices: dict[object, int] = {}
    for r in records:
        if r["kind"] == "payment":
            invoices[r["account_id"]] = invoices.get(r["account_id"], 0) + 1
    assert max(invoices.values()) <= 2  # one a year (a second for those past a year)
    outcomes = [r for r in records if r["kind"] == "outcome"]
    assert {r["outcome"] for r in outcomes} >= {"renewed", "churned"}
    joined = {a.account_id: a.joined_day for a in annual.accounts}
    for r in outcomes:  # every outcome falls on a contract's anniversary
        day = (date.fromisoformat(str(r["occurred_at"])[:10]) - date(2025, 1, 1)).days
        assert (day - joined[str(r["account_id"])]) % 365 == 0


def test_a_card_that_keeps_failing_ends_in_churn_after_failed_invoices() -> None:
    sim = Simulation(SimOptions(accounts=400, days=300, seed=5, profile="smb"))
    cards = [(a, a.card_fails_from) for a in sim.accounts if a.card_fails_from is not None]
    assert cards
    events = list(sim.events())
    outcomes = {o["account_id"]: o for o in sim.outcomes()}
    for account, since in cards:
        failed = [
            r
            for r in events
            if r["account_id"] == account.account_id
            and r["kind"] == "payment"
            and r["status"] == "failed"
            and str(r["occurred_at"]) >= sim.day_date(since)
        ]
        outcome = outcomes[account.account_id]
        assert outcome["churned"] or since > 300 - 71, account.account_id
        if outcome["churn_date"] > sim.day_date(since + 60):
            assert len(failed) in (2, 3), account.account_id


def test_baselines_are_reported_beside_the_score_and_the_score_beats_counting_events() -> None:
    observations = observed(simulation())
    assert all(len(o.counts) == len(COUNT_FEATURES) for o in observations)
    summary = summarise(observations, default_model())
    events, logistic = summary.baselines[EVENTS_BASELINE], summary.baselines[LOGISTIC_BASELINE]
    assert events is not None
    assert logistic is not None
    assert summary.auc is not None
    assert summary.auc > events
    assert logistic > 0.5
    text = text_report(summary, 60, "t")
    assert f"baseline, {EVENTS_BASELINE}: ROC AUC {events:.3f}" in text


def test_the_logistic_baseline_finds_the_direction_of_a_count() -> None:
    # Churn when logins in 30 days are few: the fitted coefficient of logins_30d is negative.
    rows = [[float(n)] + [0.0] * (len(COUNT_FEATURES) - 1) for n in range(200)]
    labels = [n < 60 for n in range(200)]
    fit = fit_logistic(rows, labels)
    assert fit.coefficients[0] < 0
    assert fit.risk(rows[10]) > fit.risk(rows[150])
    assert events_30d([1, 2, 3, 4, 5, 100, 100, 100, 100, 100, 7, 8]) == 15
