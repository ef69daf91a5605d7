"""The storage migration (functions/consolidate/migrate.py) with an in-memory store: moves, idempotence,
resumption after a crash at every call, the lock, conflicts, the old tracking logs."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from functions.consolidate.migrate import (
    Item,
    Migration,
    MigrationRefused,
    copied_log,
    is_unchained,
    moved,
)
from functions.shared.models import stored_person_key, stored_recipient_key
from functions.shared.tables import legacy_tracking_log_partition, tracking_log_partition
from tests.fakes_migration import FakeMigrationStore
from tests.fakes_workflow import Crash

NOW = 1_800_000_000.0
OLD_LOGS = "msgtrack-tracking-logs-old"


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def legacy_recipient(delivery: str, recipient: str, **extra: Any) -> Item:
    return {
        "delivery_id": _s(delivery),
        "sk": _s(f"r#{recipient}"),
        "recipient_id": _s(recipient),
        "opened": {"BOOL": True},
        **extra,
    }


def legacy_person(delivery: str, person: str) -> Item:
    return {
        "delivery_id": _s(delivery),
        "sk": _s(f"p#{person}"),
        "clicked": {"BOOL": True},
        "human_clicks": {"N": "2"},
    }


def old_log(delivery: str, recipient: str, n: int) -> Item:
    sk = f"2026-12-01T10:{n:02d}:00Z#e{recipient}{n}"
    return {
        "delivery_id": _s(delivery),
        "sk": _s(sk),
        "recipient_id": _s(recipient),
        "event_id": _s(f"e{recipient}{n}"),
        "type": _s("open"),
        "at": _s(sk[:20]),
    }


def seeded() -> FakeMigrationStore:
    """Legacy states of two deliveries, today's items beside them, and an old logs table."""
    store = FakeMigrationStore()
    items = [legacy_recipient(d, f"rcp{n}") for d in ("dlv1", "dlv2") for n in range(7)]
    items += [legacy_person(d, f"psn{n}") for d in ("dlv1", "dlv2") for n in range(4)]
    items.append({"delivery_id": _s("dlv1"), "sk": _s("stats"), "opens": {"N": "14"}})
    items.append(moved(legacy_recipient("dlv3", "rcp0")))  # already at its new key, written today
    store.indicators = {(i["delivery_id"]["S"], i["sk"]["S"]): i for i in items}
    logs = [old_log(d, f"rcp{n}", k) for d in ("dlv1", "dlv2") for n in range(7) for k in range(2)]
    store.old_tables[OLD_LOGS] = {(log["delivery_id"]["S"], log["sk"]["S"]): log for log in logs}
    # logs of last week's layout in the tracking-logs table, an item of their own each, one of them
    # also in its chain already (a run after the upgrade reclassified it): that one is kept
    unchained = [unchained_log("dlv4", f"rcp{n}", k) for n in range(5) for k in range(2)]
    store.logs = {(log["partition"]["S"], log["sk"]["S"]): log for log in unchained}
    newer = {**copied_log(unchained[0]), "machine": _s("scanner")}
    store.logs[(newer["partition"]["S"], newer["sk"]["S"])] = newer
    return store


UNCHAINED = 10  # seeded() logs stored as items of their own


def unchained_log(delivery: str, recipient: str, n: int) -> Item:
    log = old_log(delivery, recipient, n)
    return {**log, "partition": _s(legacy_tracking_log_partition(delivery, recipient))}


def expected_after(store: FakeMigrationStore, with_logs: bool) -> tuple[dict[Any, Item], dict[Any, Item]]:
    """What a clean migration leaves: every legacy state at its new key, logs copied and flagged."""
    expected = {}
    for item in store.indicators.values():
        target = (
            moved(item)
            if item["sk"]["S"][:2] in ("r#", "p#") and "#" not in item["delivery_id"]["S"]
            else item
        )
        expected[(target["delivery_id"]["S"], target["sk"]["S"])] = copy.deepcopy(target)
    logs = {key: log for key, log in store.logs.items() if not is_unchained(log)}
    for log in store.logs.values():
        if is_unchained(log):
            chained = copied_log(log)
            logs.setdefault((chained["partition"]["S"], chained["sk"]["S"]), chained)
    if with_logs:
        for log in store.old_tables[OLD_LOGS].values():
            new = copied_log(log)
            logs[(new["partition"]["S"], new["sk"]["S"])] = new
            key = stored_recipient_key(log["delivery_id"]["S"], log["recipient_id"]["S"])
            expected[key]["logs_overflow"] = {"BOOL": True}
    return expected, logs


LOCK_SECONDS = 900


def migration(
    store: FakeMigrationStore,
    page_items: int = 3,
    remaining_ms: Any = None,
    invocation: str | None = None,
    now: float = NOW,
) -> Migration:
    return Migration(
        store,
        lock_seconds=LOCK_SECONDS,
        clock=lambda: now,
        page_items=page_items,
        remaining_ms=remaining_ms,
        invocation=invocation,
    )


def test_legacy_states_move_to_their_new_keys_and_the_answer_counts_them() -> None:
    # Given legacy r# and p# states under their delivery's key, and other items beside them
    store = seeded()
    expected, _ = expected_after(store, with_logs=False)
    # When the migration runs
    answer = migration(store).run()
    # Then every legacy state is at its new key only, the rest untouched, and the lock released
    assert store.indicators == expected
    assert ("dlv1#p" + "") not in store.indicators
    assert stored_person_key("dlv1", "psn0") in store.indicators
    assert ("dlv1", "r#rcp0") not in store.indicators
    assert answer == {
        "done": True,
        "phase": "done",
        "moved": 22,
        "already_there": 0,
        "conflicts": 0,
        "conflict_keys": [],
        "logs_copied": 0,
        "logs_from": None,
        "logs_chained": UNCHAINED,
    }
    assert store.lock_owner is None


def test_run_twice_the_second_run_changes_nothing_and_answers_the_same() -> None:
    # Given a finished migration
    store = seeded()
    first = migration(store).run(OLD_LOGS)
    indicators, logs = copy.deepcopy(store.indicators), copy.deepcopy(store.logs)
    # When it is invoked again
    second = migration(store).run(OLD_LOGS)
    # Then nothing moves and the answer is the same
    assert second == first
    assert store.indicators == indicators and store.logs == logs


def test_the_old_tracking_logs_are_copied_with_their_partition_and_flag_their_recipients_states() -> None:
    # Given legacy states and the old logs table
    store = seeded()
    expected, logs = expected_after(store, with_logs=True)
    # When the migration runs with the old table named
    answer = migration(store).run(OLD_LOGS)
    # Then each log is in the new table at (its partition, the same sort key), and its recipient's
    # state has logs_overflow, so the recipient tab queries the partition for them
    assert store.logs == logs
    assert store.indicators == expected
    assert answer["logs_copied"] == 28 and answer["logs_from"] == OLD_LOGS and answer["done"]
    partition = tracking_log_partition("dlv1", "rcp3")
    assert {sk for (p, sk) in store.logs if p == partition} >= {
        log["sk"]["S"]
        for log in store.old_tables[OLD_LOGS].values()
        if log["recipient_id"]["S"] == "rcp3" and log["delivery_id"]["S"] == "dlv1"
    }


def test_a_later_invocation_naming_the_old_logs_table_copies_them_after_the_states_were_moved() -> None:
    # Given a migration that ran without the old logs table
    store = seeded()
    expected, logs = expected_after(store, with_logs=True)
    migration(store).run()
    # When it is invoked again naming it
    answer = migration(store).run(OLD_LOGS)
    # Then the logs are copied as if named the first time
    assert store.logs == logs and store.indicators == expected
    assert answer["moved"] == 22 and answer["logs_copied"] == 28


def test_naming_the_granted_old_logs_table_after_one_it_could_not_read_copies_the_granted_one(
    reliability: Any,
) -> None:
    # Given a migration invoked with an old logs table it cannot read (not the one the deploy granted):
    # it moves the states, then fails on the logs' first page
    store = seeded()
    expected, logs = expected_after(store, with_logs=True)
    with pytest.raises(KeyError):
        migration(store).run("msgtrack-tracking-logs-typo")
    assert store.lock_owner is None and store.logs == seeded().logs
    # When it is invoked again naming the granted table
    answer = migration(store).run(OLD_LOGS)
    # Then it copies that table's logs, as if it had been named the first time
    reliability.record(
        "Bad input",
        "storage migration naming an old tracking-logs table it cannot read",
        1,
        "fails after moving the states; invoked with the granted table, it copies that one",
        0,
        0,
    )
    assert store.logs == logs and store.indicators == expected
    assert answer["done"] and answer["logs_from"] == OLD_LOGS
    assert answer["moved"] == 22 and answer["logs_copied"] == 28


def test_it_refuses_while_a_tracking_run_holds_the_lock(reliability: Any) -> None:
    # Given a tracking run holding the workflow lock
    store = seeded()
    before = copy.deepcopy(store.indicators)
    store.lock_owner, store.lock_expires = "20261206T150000-run", NOW + 300
    # When the migration is invoked
    with pytest.raises(MigrationRefused, match="20261206T150000-run holds the workflow lock"):
        migration(store).run()
    # Then it wrote nothing and left the run its lock
    reliability.record(
        "Faults",
        "storage migration invoked while a tracking run holds the lock",
        1,
        "refused with the run's id; wrote nothing",
        0,
        0,
    )
    assert store.indicators == before and store.lock_owner == "20261206T150000-run"


def test_a_state_a_run_wrote_after_the_upgrade_is_kept_and_reported_as_a_conflict() -> None:
    # Given a legacy state and, at its new key, a different one a run wrote after the upgrade
    store = seeded()
    newer = moved(legacy_recipient("dlv1", "rcp0", clicked={"BOOL": True}))
    store.indicators[(newer["delivery_id"]["S"], newer["sk"]["S"])] = newer
    # When the migration runs
    answer = migration(store).run()
    # Then the newer state stays, the legacy one is left for the operator, and the key is reported
    assert store.indicators[(newer["delivery_id"]["S"], newer["sk"]["S"])] == newer
    assert ("dlv1", "r#rcp0") in store.indicators
    assert answer["conflicts"] == 1 and answer["conflict_keys"] == ["dlv1 r#rcp0"]
    assert answer["moved"] == 21


def test_it_stops_taking_pages_when_the_invocation_runs_short_and_the_next_one_goes_on() -> None:
    # Given an invocation with only a little more than the safety margin left
    store = seeded()
    expected, logs = expected_after(store, with_logs=True)
    remaining = iter([200_000, 90_000, 59_000])
    # When it runs
    first = migration(store, remaining_ms=lambda: next(remaining)).run(OLD_LOGS)
    # Then it answers done: false after two pages, and the next invocation finishes the work
    assert first["done"] is False and store.calls["legacy_states"] == 2
    legacy_left = [k for k in store.indicators if k[1][:2] in ("r#", "p#") and "#" not in k[0]]
    assert 0 < first["moved"] == 22 - len(legacy_left)
    assert store.lock_owner is None
    second = migration(store).run(OLD_LOGS)
    assert second["done"] is True and second["moved"] == 22 and second["logs_copied"] == 28
    assert store.indicators == expected and store.logs == logs


OPERATIONS = [
    "acquire_lock",
    "load_progress",
    "renew_lock",
    "legacy_states",
    "put_if_absent",
    "delete",
    "save_progress",
    "old_logs",
    "unchained_logs",
    "chain_logs",
    "delete_logs",
    "mark_overflow",
    "release_lock",
]


@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_crash_at_any_call_then_an_invocation_again_gives_the_clean_result(
    operation: str, reliability: Any
) -> None:
    clean = seeded()
    expected, logs = expected_after(clean, with_logs=True)
    crashes = 0
    for nth in range(1, 200):
        # Given an invocation that dies at the nth call of an operation (nothing after it runs)
        store = seeded()
        store.fault = lambda op, count, nth=nth: op == operation and count == nth
        try:
            migration(store).run(OLD_LOGS)
        except Crash:
            crashes += 1
        else:
            break  # fewer calls than nth: every point has been tried
        # When the operator invokes it again once the crashed invocation's lock has expired
        store.restart()
        answer = migration(store, now=NOW + LOCK_SECONDS + 1).run(OLD_LOGS)
        # Then the data is exactly that of a clean migration, and every state is counted once
        lost = len(set(expected) - set(store.indicators)) + len(set(logs) - set(store.logs))
        doubled = len(set(store.indicators) - set(expected)) + len(set(store.logs) - set(logs))
        reliability.record(
            "Faults",
            f"storage migration killed at a {operation} call (every call in turn), then invoked again",
            1,
            "resumed from its last saved page; redone moves found equal at the new key",
            lost,
            doubled,
        )
        assert store.indicators == expected, f"crash at {operation} call {nth}"
        assert store.logs == logs
        assert answer["done"] and answer["moved"] + answer["already_there"] == 22
        assert answer["conflicts"] == 0 and answer["logs_copied"] == 28
        assert answer["logs_chained"] == UNCHAINED
        assert store.lock_owner is None
    assert crashes > 0


def test_a_second_migration_is_refused_while_the_first_holds_the_lock_and_the_first_finishes(
    reliability: Any,
) -> None:
    # Given a migration in the middle of its first page, holding the workflow lock
    store = seeded()
    expected, _ = expected_after(seeded(), with_logs=False)
    first_page = store.legacy_states
    second: dict[str, Any] = {}

    def page_with_a_second_migration(cursor: Item | None, limit: int) -> Any:
        if not second:  # When a second migration is invoked meanwhile
            before = copy.deepcopy(store.indicators)
            with pytest.raises(MigrationRefused) as refused:
                migration(store).run()
            second.update(message=str(refused.value), wrote=store.indicators != before)
        return first_page(cursor, limit)

    store.legacy_states = page_with_a_second_migration  # type: ignore[method-assign]
    answer = migration(store).run()
    # Then the second is refused, naming the first, and wrote nothing
    assert "migration " in second["message"] and "holds the workflow lock" in second["message"]
    assert second["wrote"] is False
    # And the first kept its lock, finished and released it: every state moved once
    assert answer["done"] is True and answer["moved"] == 22 and answer["already_there"] == 0
    assert store.indicators == expected and store.lock_owner is None
    reliability.record(
        "Faults",
        "storage migration invoked twice at once",
        1,
        "the second refused while the first holds the lock; the first finished alone",
    )


def test_a_retried_invocation_takes_its_own_lock_back_and_another_waits_for_it_to_expire() -> None:
    # Given a migration invocation that crashed holding the lock
    store = seeded()
    store.fault = lambda op, count: (op == "put_if_absent" and count == 2) or op == "release_lock"
    with pytest.raises(Crash):
        migration(store, invocation="request-1").run()
    store.restart()
    # When another invocation comes before the lock expires, Then it is refused
    with pytest.raises(MigrationRefused, match="migration request-1 holds the workflow lock"):
        migration(store, invocation="request-2", now=NOW + LOCK_SECONDS - 1).run()
    # And when the same invocation is retried (Lambda retries with its request id), it goes on at once
    answer = migration(store, invocation="request-1", now=NOW + 1).run()
    assert answer["done"] is True and answer["moved"] + answer["already_there"] == 22
    assert store.lock_owner is None


def test_msgtrack_migrate_prints_the_counts_and_exits_0_only_when_done_without_conflicts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from functions.consolidate import migrate as migrate_module
    from local.cli import main

    # Given the command line over an in-memory store with legacy states
    store = seeded()
    monkeypatch.setattr(migrate_module, "DynamoMigrationStore", lambda: store)
    # When msgtrack migrate runs, Then it prints the counts and exits 0
    assert main(["migrate", "--old-logs-table", OLD_LOGS]) == 0
    assert '"moved": 22' in capsys.readouterr().out
    # And with a run holding the lock it says so and exits 1
    store.lock_owner, store.lock_expires = "run-y", 1e12
    assert main(["migrate"]) == 1
    assert "run-y holds the workflow lock" in capsys.readouterr().err
    # And a conflict makes it exit 1 too
    store.lock_owner, store.progress = None, None
    store.indicators[("dlv9", "r#rcp0")] = legacy_recipient("dlv9", "rcp0")
    store.indicators[stored_recipient_key("dlv9", "rcp0")] = moved(
        legacy_recipient("dlv9", "rcp0", clicked={"BOOL": True})
    )
    assert main(["migrate"]) == 1


def test_logs_stored_as_items_of_their_own_go_into_their_chains_and_the_items_are_deleted() -> None:
    # Given logs of last week's layout, one of them in its chain already as a run reclassified it
    store = seeded()
    first = store.logs[(legacy_tracking_log_partition("dlv4", "rcp0"), old_log("dlv4", "rcp0", 0)["sk"]["S"])]
    _, logs = expected_after(store, with_logs=False)
    # When the migration runs
    answer = migration(store).run()
    # Then each log is in its recipient's chain under its sort key, no item of the old layout is left,
    # and the chain's newer copy is the one kept
    assert store.logs == logs
    assert not [log for log in store.logs.values() if is_unchained(log)]
    chain = tracking_log_partition("dlv4", "rcp0")
    assert store.logs[(chain, first["sk"]["S"])]["machine"] == _s("scanner")
    assert answer["logs_chained"] == UNCHAINED and answer["done"]


def test_a_deployment_that_finished_last_weeks_migration_runs_only_the_chaining() -> None:
    # Given a migration that finished before chains (its saved progress knows no chaining)
    store = seeded()
    _, logs = expected_after(store, with_logs=False)
    migration(store).run()
    store.progress = store.progress.replace('"chained": true', '"chained": false').replace(
        '"logs_chained": 10', '"logs_chained": 0'
    )
    unchained = [unchained_log("dlv5", "rcp9", k) for k in range(3)]
    store.logs.update({(log["partition"]["S"], log["sk"]["S"]): log for log in unchained})
    logs.update({(c["partition"]["S"], c["sk"]["S"]): c for c in map(copied_log, unchained)})
    store.calls.clear()
    # When it is invoked again
    answer = migration(store).run()
    # Then it chains the logs left as items of their own and reads no state again
    assert answer["done"] and answer["logs_chained"] == 3
    assert store.calls["legacy_states"] == 0
    assert store.logs == logs
