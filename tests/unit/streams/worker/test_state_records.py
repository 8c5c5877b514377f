"""An account's state as changelog records: read back whole, parts written only when they
changed, and never a mix of two batches after a crash between a part and its input record."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts.config import default_rules
from alerts.rules import Observation, check
from scoring.audit import Auditor, LocalAudit
from scoring.events import AccountAttributes, PaymentStatus
from scoring.rollup import ChildReport, apply_report
from scoring.scoring_model import default_model, label_for
from scoring.state import SECONDS_PER_DAY, AccountState, fold
from scoring.update import Rescorer, Trigger
from streams.worker.state_records import (
    CLOSED_DAYS,
    PART_PREFIX,
    WINDOW_RECORD,
    StateWriter,
    account_key_is_valid,
    child_key,
    closed_days_mark,
    decode,
    encode_input_record,
    encode_part,
    merge_recovered,
    part_key,
    part_record,
    replay,
)
from tests.factories import T0, feature, login, payment, rescore, survey, ticket

NOW = T0.timestamp()
KEY = b"acme"
MODEL = default_model()


def rescorer() -> Rescorer:
    auditor = Auditor.for_models(MODEL, (), LocalAudit(), 180)
    return Rescorer(MODEL, None, auditor)


def busy_state(days: int = 40) -> AccountState:
    """An account with day buckets, users, features, tickets, invoices, surveys, closing
    scores, audit trails and a published score."""
    state = AccountState(account_id="acme", partition=0)
    scorer = rescorer()
    for d in range(-days, 1):
        fold(state, login(days=d, user=f"u{d % 5}"))
        fold(state, feature(days=d + 0.01, name=f"f{d % 7}", user=f"u{d % 4}"))
        if d % 9 == 0:
            fold(state, ticket(days=d + 0.02, ticket_id=f"t{d}"))
        if d % 11 == 0:
            fold(state, payment(days=d + 0.03, invoice=f"i{d}", status=PaymentStatus.FAILED))
        rescore(scorer, state, NOW + d * SECONDS_PER_DAY + 3600, Trigger.EVENT, None, T0)
    fold(state, survey(days=-1))
    for d in range(-days, 1):
        observe(state, 60.0 + d % 7, NOW + d * SECONDS_PER_DAY)
    state.attributes = AccountAttributes(account_id="acme", updated_at=T0, seats=12)
    return state


def observe(state: AccountState, score: float, at: float) -> None:
    """The alert rules see a score (they keep the day's high in the state)."""
    observation = Observation(
        account_id="acme",
        score=score,
        previous_score=score - 1,
        bands=MODEL.bands,
        band=label_for(MODEL.bands, score),
        previous_band=None,
        stale=False,
        segment=None,
        owner=None,
        as_of=at,
        trigger="t",
        model_version=MODEL.version,
    )
    check(state.alerts, observation, default_rules(), at)


def read_back(records: Sequence[tuple[bytes, bytes | None]]) -> AccountState:
    return replay(records)[KEY]


def same(a: AccountState, b: AccountState) -> bool:
    return a.model_dump() == b.model_dump()


def test_a_state_read_back_from_its_records_is_the_state() -> None:
    state = busy_state()
    assert state.trails
    assert len(state.alerts.daily_highs) > 20
    assert state.published is not None
    assert len(state.days) > 30
    records = list(StateWriter().records(KEY, state))
    assert records[-1][0] == KEY  # the input record last, after the parts it names
    assert all(key.startswith(PART_PREFIX) for key, _ in records[:-1])
    assert same(read_back(records), state)


def test_an_input_that_changes_only_today_writes_a_small_input_record() -> None:
    state = busy_state()
    writer = StateWriter()
    whole = sum(len(value or b"") for _, value in writer.records(KEY, state))
    fold(state, login(days=0.1, user="u0"))  # a user already seen today
    again = list(writer.records(KEY, state))
    [(key, record)] = again
    assert key == KEY
    assert record is not None
    assert len(record) * 3 < whole
    assert len(record) < len(state.model_dump_json(exclude_defaults=True)) / 3


def test_a_part_that_changed_goes_to_the_other_slot() -> None:
    state = busy_state()
    writer = StateWriter()
    first = dict(writer.records(KEY, state))
    fold(state, login(days=1, user="u1"))  # a new day: yesterday's bucket is closed now
    second = dict(writer.records(KEY, state))
    changed = [key for key in second if key != KEY]
    assert changed
    assert not set(changed) & set(first)  # written into the slots not in use
    assert same(read_back([*first.items(), *second.items()]), state)


def test_a_crash_between_a_part_and_its_input_record_reads_back_the_batch_before() -> None:
    state = busy_state()
    writer = StateWriter()
    first = list(writer.records(KEY, state))
    before = AccountState.model_validate(state.model_dump())
    fold(state, login(days=1, user="u9"))
    fold(state, feature(days=1, name="new-feature", user="u9"))
    second = list(writer.records(KEY, state))
    assert len(second) > 1
    cut = second[:-1]  # the parts reached the changelog, the input record did not
    assert same(read_back([*first, *cut]), before)
    assert same(read_back([*first, *second]), state)


def test_a_recovered_account_writes_its_next_parts_to_the_slots_not_in_use() -> None:
    state = busy_state()
    first = list(StateWriter().records(KEY, state))
    data: dict[bytes, Any] = {key: decode(value) for key, value in first if value is not None}
    writer = StateWriter()
    merge_recovered(data, writer)
    assert set(data) == {KEY}
    recovered = data[KEY]
    fold(recovered, feature(days=1, name="after-restart"))
    second = list(writer.records(KEY, recovered))
    assert not {key for key, _ in second[:-1]} & {key for key, _ in first}
    assert same(read_back([*first, *second[:-1]]), state)  # crash before the input record
    assert same(read_back([*first, *second]), recovered)


def test_a_recovery_names_the_parts_an_input_record_names_but_it_did_not_read() -> None:
    state = busy_state()
    records = list(StateWriter().records(KEY, state))

    def read() -> dict[bytes, Any]:
        return {key: decode(value) for key, value in records if value is not None}

    assert merge_recovered(read(), None) == {}  # every part read back
    data = read()
    missing = next(key for key, value in data.items() if getattr(value, "part", None) == "m")
    del data[missing]  # the part with the survey answers was not read
    assert merge_recovered(data, None) == {KEY: ["m"]}
    assert data[KEY].latest_surveys == {}  # left at its defaults, and now said so


def test_a_deleted_account_leaves_no_record() -> None:
    state = busy_state(5)
    writer = StateWriter()
    records: list[tuple[bytes, bytes | None]] = list(writer.records(KEY, state))
    fold(state, login(days=1))
    records += list(writer.records(KEY, state))
    records += [(key, None) for key in writer.deleted(KEY)]
    assert replay(records) == {}


def test_the_older_form_of_a_whole_state_still_loads() -> None:
    state = busy_state(5)
    older = state.model_dump_json(exclude_defaults=True).encode()
    assert same(read_back([(KEY, older)]), state)


def test_part_keys_cannot_be_account_keys() -> None:
    writer = StateWriter()
    keys = [key for key, _ in writer.records(KEY, busy_state(3))]
    assert [account_key_is_valid(key) for key in keys] == [False] * (len(keys) - 1) + [True]


def play(state: AccountState, scorer: Rescorer, action: str, n: int, day: float) -> float:
    """One step of a generated script on ``state`` at ``day``; returns the day after it."""
    at = NOW + day * SECONDS_PER_DAY + n * 600
    match action:
        case "login":
            fold(state, login(days=day + n / 100, user=f"u{n}"))
        case "feature":
            fold(state, feature(days=day + n / 100, name=f"g{n}"))
        case "ticket":
            fold(state, ticket(days=day + n / 100, ticket_id=f"t{n}"))
        case "late":
            fold(state, login(days=day - 1 - n, user=f"late{n}"))
        case "alerts":  # the rules keep the day's high score
            observe(state, 50.0 + n, at)
        case "rescore":
            rescore(scorer, state, at, Trigger.TIMER, None, T0)
        case _:
            return day + 1 + n % 3
    return day


steps = st.lists(
    st.tuples(
        st.sampled_from(["login", "feature", "late", "rescore", "alerts", "day"]),
        st.integers(0, 5),
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_the_closed_days_part_changes_only_with_its_mark(script: list[tuple[str, int]]) -> None:
    """The writer skips encoding the closed days while their mark stays: the mark must move
    whenever their encoding would."""
    state = busy_state(12)
    scorer = rescorer()
    day = 0.0
    mark, encoded = closed_days_mark(state), encode_part(state, CLOSED_DAYS)
    for action, n in script:
        day = play(state, scorer, action, n, day)
        now_mark, now_encoded = closed_days_mark(state), encode_part(state, CLOSED_DAYS)
        if now_mark == mark:
            assert now_encoded == encoded, action
        mark, encoded = now_mark, now_encoded


def parent_state(children: int) -> AccountState:
    state = AccountState(account_id="acme")
    for n in range(children):
        apply_report(state, child_report(n, score=50.0 + n % 40, minutes=n))
    return state


def child_report(n: int, score: float | None, minutes: float, leaves: bool = False) -> ChildReport:
    return ChildReport(
        account_id="acme",
        child_id=f"child-{n}",
        score=score,
        at=T0 + timedelta(minutes=minutes),
        leaves=leaves,
        path=[f"child-{n}"],
    )


def test_a_parents_children_are_a_record_each_written_when_their_report_changes() -> None:
    state = parent_state(100)
    writer = StateWriter()
    records: list[tuple[bytes, bytes | None]] = list(writer.records(KEY, state))
    assert sum(key.startswith(PART_PREFIX + b"c") for key, _ in records) == 100
    assert read_back(records).children == state.children
    apply_report(state, child_report(5, score=12.0, minutes=500))
    again = list(writer.records(KEY, state))
    assert [key for key, _ in again] == [child_key(KEY, "child-5"), KEY]
    apply_report(state, child_report(7, score=None, minutes=501, leaves=True))
    left = list(writer.records(KEY, state))
    assert left[0] == (child_key(KEY, "child-7"), None)
    back = read_back([*records, *again, *left])
    assert back.children == state.children
    assert "child-7" not in back.children
    assert back.children["child-5"].score == 12.0
    records += [*again, *left, *((key, None) for key in writer.deleted(KEY))]
    assert replay(records) == {}  # no child record left behind


def test_a_recovered_parent_writes_only_the_children_that_change() -> None:
    state = parent_state(20)
    data: dict[bytes, Any] = {
        key: decode(value) for key, value in StateWriter().records(KEY, state) if value is not None
    }
    writer = StateWriter()
    merge_recovered(data, writer)
    recovered = data[KEY]
    assert list(recovered.children) == list(state.children)  # oldest report first
    written = [key for key, _ in writer.records(KEY, recovered)]
    assert not [key for key in written if key.startswith(PART_PREFIX + b"c")]


def test_children_kept_in_the_account_part_by_an_older_worker_still_load() -> None:
    state = parent_state(3)
    older = state.model_dump_json(include={"account_id", "children"}, exclude_defaults=True)
    records = [
        (part_key(KEY, "a", 0), part_record("a", 0, older.encode())),
        (KEY, encode_input_record(state, {"a": 0})),
    ]
    assert read_back(records).children == state.children


def test_a_window_record_holds_the_changed_parts_inline_one_record_in_all() -> None:
    state = busy_state()
    writer = StateWriter()
    first = list(writer.records(KEY, state))
    fold(state, login(days=1, user="u9"))  # a new day: closed days, users move
    fold(state, feature(days=1, name="new-feature", user="u9"))
    [(key, record)] = writer.records(KEY, state, inline=True)
    assert key == KEY
    assert record is not None
    assert record[0] == WINDOW_RECORD
    assert same(read_back([*first, (key, record)]), state)


def test_a_part_held_only_inline_goes_to_a_slot_when_next_left_out() -> None:
    state = busy_state()
    writer = StateWriter()
    first = list(writer.records(KEY, state))
    fold(state, feature(days=1, name="new-feature", user="u9"))
    window = list(writer.records(KEY, state, inline=True))
    before = AccountState.model_validate(state.model_dump())
    fold(state, login(days=1.1, user="u9"))  # the features are as the window left them
    after = list(writer.records(KEY, state))
    written = {key[1:2] for key, _ in after[:-1]}
    assert b"f" in written  # held inline only: now in a slot, though unchanged
    assert same(read_back([*first, *window, *after[:-1]]), before)  # crash before the record
    assert same(read_back([*first, *window, *after]), state)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["login", "feature", "ticket", "day", "rescore"]),
            st.integers(0, 5),
            st.booleans(),
            st.booleans(),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_any_mix_of_window_and_input_records_reads_back_the_state_even_after_a_crash(
    script: list[tuple[str, int, bool, bool]],
) -> None:
    """Each step changes the state and writes it (inline or not); a crash may cut the step's
    records before its account record: what is read back is the state of a whole step."""
    state = busy_state(8)
    scorer = rescorer()
    writer = StateWriter()
    log = list(writer.records(KEY, state))
    day = 0.0
    for action, n, inline, crash in script:
        day = play(state, scorer, action, n, day)
        before = read_back(log)
        records = list(writer.records(KEY, state, inline=inline))
        assert records[-1][0] == KEY
        if inline:
            assert len(records) == 1
        if crash:
            assert same(read_back([*log, *records[:-1]]), before)
        log += records
        assert same(read_back(log), state)
