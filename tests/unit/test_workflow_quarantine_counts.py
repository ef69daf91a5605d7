"""The run record's ``quarantined`` count (README "Quarantined writes"): each item the workflow keeps in
quarantine is counted in exactly one run record, whoever finishes the run (its Finish, a retried
Finish, the next run's Plan) and wherever a step crashes. The count is derived from durable marks
(the workers' slots, the slices' put marks, the finisher's merged mark) and set, never added to."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from functions.consolidate import batch
from functions.consolidate.store import PARTIAL_SPREAD
from functions.consolidate.workflow import TrackingWorkflow
from functions.shared import timeutil
from functions.shared.models import RunModel
from functions.shared.raw_events import RawEvent
from tests.fakes_workflow import Crash, FakeWorkflowStore, refused_by_dynamodb
from tests.unit.test_workflow import CHROME, RUN_AT, T0, Clock, seeded_store
from tests.unit.test_workflow_poison import TRUNCATED_BODY, poison_item
from tests.unit.test_workflow_workers import (  # noqa: F401
    MULTI_FAULT_POINTS,
    _eight_shards,
    add,
    first_run_events,
    workflow,
)

pytestmark = pytest.mark.usefixtures("_eight_shards")  # imported above: 8 raw-event shards

REFUSED = "ValidationException: Item size has exceeded the maximum allowed size"
REFUSED_ROW = batch.url_key("d1", "1")  # a URL row every worker adds to: merged by a slice
REFUSED_LOGS_OF = "r4"  # whose full click logs DynamoDB refuses (their bare logs are put)
CRASH_RECIPIENTS = 12


def refusing(data: dict[str, Any]) -> str | None:
    """DynamoDB refusing link 1's URL row (grown too large) and r4's full click logs."""
    if data.get("delivery_id") == {"S": REFUSED_ROW[0]} and data.get("sk") == {"S": REFUSED_ROW[1]}:
        return REFUSED
    if "label" in data and data.get("recipient_id") == {"S": REFUSED_LOGS_OF}:
        return REFUSED
    return refused_by_dynamodb(data)


def hostile_store(recipients: int = 40) -> FakeWorkflowStore:
    """The first run's events, a poison raw event among them, and DynamoDB refusing some writes."""
    store = seeded_store()
    first_run_events(store, recipients=recipients)
    store.add_raw_item(poison_item("no recipient id", "x0000001", seconds=1_500))
    store.refuse = refusing
    return store


def counted(store: FakeWorkflowStore) -> int:
    """The quarantined items every run record counts, together."""
    return sum(int(run.quarantined or 0) for run in store.runs.values())


def worked(flow: TrackingWorkflow, run_id: str = "run-1") -> list[dict[str, Any]]:
    """A run planned, its workers done, closed and its slices merged, as the state machine does."""
    plan = flow.plan(run_id, "schedule")
    results = [flow.work(run_id, n, group).as_dict() for n, group in enumerate(plan.groups)]
    for spread in flow.close(run_id):
        flow.merge_slice(run_id, spread)
    return results


def _kinds(store: FakeWorkflowStore) -> set[str]:
    return {f"{item.table}/{item.model}" for item in store.quarantined.values()}


@pytest.mark.parametrize("workers", [1, 4])
def test_given_a_run_stopped_past_its_time_limit_when_the_next_plan_finishes_it_then_its_record_counts_every_item_it_quarantined(
    workers: int, reliability: Any
) -> None:
    # Given a run whose workers, and slices, quarantined a log, a poison event and a URL row, and whose
    # execution was stopped before its Finish (past its time limit)
    store = hostile_store()
    clock = Clock(RUN_AT)
    worked(workflow(store, workers, clock))
    assert _kinds(store) == {
        "tracking-logs/TrackingLogModel",
        "raw-events/RawEventModel",
        "indicators/UrlStatsModel",
    }
    # When the next run's Plan finishes it, once its lock has expired
    clock.now += timedelta(hours=1)
    rerun = workflow(store, workers, clock).run("run-2", "schedule")
    # Then the stopped run's record counts every item quarantined, the next run's none again
    stopped = store.runs["run-1"]
    assert stopped.status == "failed" and "interrupted" in stopped.errors[-1]
    assert int(stopped.quarantined) == len(store.quarantined)
    assert rerun.status == "succeeded" and int(rerun.quarantined) == 0
    reliability.record(
        "Faults",
        f"a run of {workers} worker(s) stopped past its time limit after quarantining items, finished "
        "by the next run's Plan",
        1,
        "its run record counts every item its workers and slices quarantined, once",
        0,
        0,
    )


def test_given_a_run_stopped_before_its_merge_when_the_next_plan_merges_it_then_what_it_quarantines_names_that_run() -> (
    None
):
    # Given a run of 4 workers closed, but stopped before any slice of its merge ran (a URL row every
    # worker adds to, which DynamoDB refuses, is merged by a slice; d1's statistics, also refused, by
    # the finisher)
    store = hostile_store()
    store.refuse = lambda data: REFUSED if data.get("sk") == {"S": "stats"} else refusing(data)
    clock = Clock(RUN_AT)
    flow = workflow(store, 4, clock)
    plan = flow.plan("run-1", "schedule")
    for n, group in enumerate(plan.groups):
        flow.work("run-1", n, group)
    flow.close("run-1")
    assert not _kinds(store) & {"indicators/UrlStatsModel", "indicators/DeliveryStatsModel"}
    # When the next run's Plan merges them, once the lock has expired
    clock.now += timedelta(hours=1)
    workflow(store, 4, clock).run("run-2", "schedule")
    # Then the refused URL row is kept as merged for the stopped run, counted in its record, and names
    # the run that kept it (the lock's holder)
    merged = [
        item for item in store.quarantined.values() if item.model in ("UrlStatsModel", "DeliveryStatsModel")
    ]
    assert sorted(item.model for item in merged) == ["DeliveryStatsModel", "UrlStatsModel"]
    assert all(item.sk.endswith("#merged#run-1") and item.run_id == "run-2" for item in merged)
    assert int(store.runs["run-1"].quarantined) == len(store.quarantined)


@pytest.mark.parametrize("workers", [1, 4])
@pytest.mark.parametrize("dies_at", ["release_lock", "save_run"])
def test_given_finish_dying_after_its_merge_when_it_is_retried_then_the_quarantined_count_is_exact(
    workers: int, dies_at: str, reliability: Any
) -> None:
    # Given a run whose Finish dies after the merge (before or after saving the run record)
    store = hostile_store()
    flow = workflow(store, workers, Clock(RUN_AT))
    results = worked(flow)
    store.fault = lambda operation, count: operation == dies_at
    with pytest.raises(Crash):
        flow.finish("run-1", results)
    # When Step Functions retries Finish
    store.restart()
    run = flow.finish("run-1", results)
    # Then the record counts each quarantined item once: none lost with the slices, none twice
    assert run.status == "succeeded"
    assert int(run.quarantined) == len(store.quarantined) == int(store.runs["run-1"].quarantined)
    assert store.lock_owner is None
    reliability.record(
        "Faults",
        f"Finish of a run of {workers} worker(s) that quarantined items, dying at {dies_at}, retried",
        1,
        "the run record counts each quarantined item once",
        0,
        0,
    )


@pytest.mark.parametrize("error", [None, "States.TaskFailed: worker 2 failed"])
def test_given_a_finished_run_when_finish_is_retried_after_the_lock_release_then_its_record_is_unchanged(
    error: str | None, reliability: Any
) -> None:
    # Given a run of four workers that quarantined items, finished (and its lock released)
    store = hostile_store()
    flow = workflow(store, 4, Clock(RUN_AT))
    results = worked(flow)
    first = flow.finish("run-1", results, error)
    assert store.lock_owner is None and int(first.quarantined) == len(store.quarantined)
    # When Finish is retried (its answer was lost), before and after the next run took the lock
    again = flow.finish("run-1", results, error)
    store.lock_owner = "run-2"
    later = flow.finish("run-1", results, error)
    # Then the record is the one the first Finish saved: its status, errors and counts
    for answer in (again, later, store.runs["run-1"]):
        assert _record(answer) == _record(first)
    reliability.record(
        "Faults",
        "Finish retried after it released the lock" + (" (a failed run)" if error else ""),
        2,
        "the run record stays as first saved: status, errors, events and quarantined count",
        0,
        0,
    )


def _record(run: RunModel) -> dict[str, Any]:
    return {
        "status": run.status,
        "errors": list(run.errors),
        "events_processed": int(run.events_processed),
        "quarantined": int(run.quarantined),
        "workers": run.workers,
        "finished_at": run.finished_at,
    }


def test_given_a_slice_put_when_finish_dies_between_the_merged_mark_and_the_record_then_the_next_plan_counts_it(
    reliability: Any,
) -> None:
    # Given a run of four workers whose slice quarantined the merged URL row, whose Finish died after
    # marking the merge merged (the slices' marks deleted) and before saving the run record
    store = hostile_store()
    clock = Clock(RUN_AT)
    flow = workflow(store, 4, clock)
    results = worked(flow)
    store.fault = lambda operation, count: operation == "save_run"
    with pytest.raises(Crash):
        flow.finish("run-1", results)
    assert store.phase == "merged" and store.slices == {}
    # When the next run's Plan finishes it
    store.restart()
    clock.now += timedelta(hours=1)
    workflow(store, 4, clock).run("run-2", "schedule")
    # Then its record still counts the slice's item, and every other
    assert int(store.runs["run-1"].quarantined) == len(store.quarantined)
    assert any(note.startswith("quarantined indicators item") for note in store.runs["run-1"].errors)
    reliability.record(
        "Faults",
        "Finish dying between the merge's merged mark and the run record, after a slice quarantined "
        "an item; finished by the next run's Plan",
        1,
        "the run record counts the slice's quarantined item once",
        0,
        0,
    )


def clean_with_refusals(workers: int) -> FakeWorkflowStore:
    store = hostile_store(CRASH_RECIPIENTS)
    workflow(store, workers, Clock(RUN_AT)).run("clean", "schedule")
    return store


def crashes_then_reruns(
    build: Callable[[], tuple[FakeWorkflowStore, Clock]],
    workers: int,
    operation: str,
    clean: FakeWorkflowStore,
) -> int:
    """A run built by ``build`` dying at the nth call of ``operation``, for every n in turn, each followed
    by a rerun; how many died. Each rerun gives the reports of ``clean``, keeps what it kept, and the
    run records together count each quarantined item once."""
    crashes = 0
    for nth in range(1, 1000):
        store, clock = build()
        store.fault = lambda op, count, nth=nth: op == operation and count == nth
        try:
            workflow(store, workers, clock).run("crashing", "schedule")
        except Crash:
            crashes += 1
        else:
            return crashes  # fewer calls than nth: every call has been tried
        # When a new process runs again once the dead run's lock has expired
        store.restart()
        clock.now += timedelta(hours=1)
        rerun = workflow(store, workers, clock).run("rerun", "schedule")
        # Then the reports are those of a clean run, and the run records together count each
        # quarantined item once
        assert rerun.status == "succeeded"
        assert store.snapshot() == clean.snapshot(), f"crash at {operation} call {nth}"
        assert counted(store) == len(store.quarantined), f"crash at {operation} call {nth}"
        assert {item.key for item in store.quarantined.values()} == {
            item.key for item in clean.quarantined.values()
        }
        assert store.fallback == {}
        # and no run is left recorded as running: the dead run's record says it failed
        assert {run.status for run in store.runs.values()} <= {"succeeded", "failed"}, (
            f"crash at {operation} call {nth}"
        )
    return crashes


FAULT_POINTS = [*MULTI_FAULT_POINTS, "quarantine", "load_worker", "load_run"]
MERGE_ONLY = {"load_partials", "put_partial", "save_merge", "load_merge", "slice_partials"}
MERGE_ONLY |= {
    "save_slice",
    "load_slice",
    "slice_pages",
    "slice_put",
    "delete_slices",
    "delete_slice_partials",
}


@pytest.mark.parametrize(
    ("workers", "operation"),
    [(4, operation) for operation in FAULT_POINTS]
    + [(1, operation) for operation in FAULT_POINTS if operation not in MERGE_ONLY],
)
def test_a_crash_at_any_call_then_a_rerun_counts_each_quarantined_item_in_exactly_one_run_record(
    operation: str, workers: int, reliability: Any
) -> None:
    clean = clean_with_refusals(workers)
    assert counted(clean) == len(clean.quarantined) and len(_kinds(clean)) == 3
    # Given runs that quarantine items and die at each call of an operation in turn
    crashes = crashes_then_reruns(
        lambda: (hostile_store(CRASH_RECIPIENTS), Clock(RUN_AT)), workers, operation, clean
    )
    assert crashes > 0
    reliability.record(
        "Faults",
        f"tracking workflow with {workers} worker(s) quarantining a log, a poison event and a URL row, "
        f"killed at a {operation} call (every call in turn), then run again",
        crashes,
        "the run records together count each quarantined item once",
        0,
        0,
    )


def test_the_slices_of_a_run_of_four_workers_quarantine_the_url_row() -> None:
    # the scenario above reaches the slices: link 1's merged URL row is put (and refused) by one
    store = hostile_store()
    flow = workflow(store, 4, Clock(RUN_AT))
    plan = flow.plan("run-1", "schedule")
    for n, group in enumerate(plan.groups):
        flow.work("run-1", n, group)
    assert flow.close("run-1") == list(range(PARTIAL_SPREAD))
    assert not any(item.model == "UrlStatsModel" for item in store.quarantined.values())
    for spread in range(PARTIAL_SPREAD):
        flow.merge_slice("run-1", spread)
    assert any(item.model == "UrlStatsModel" for item in store.quarantined.values())


# --- what a run quarantines behind its checkpoints: kept once, however often it is read again ---------

LATE_POISON = "no recipient id"
DRAINED_POISON = "a kind the workflow does not know"


def after_a_first_run(workers: int) -> tuple[FakeWorkflowStore, Clock]:
    """The hostile store once a first run consolidated it; then, read by the next run only, a poison
    event timed a second before its shard's checkpoint (in a worker's late-event window), a new click, and in the
    fallback queue a truncated message and a poison event behind every checkpoint (the planner's)."""
    store = hostile_store(CRASH_RECIPIENTS)
    clock = Clock(RUN_AT)
    workflow(store, workers, clock).run("first", "schedule")
    late = poison_item(LATE_POISON, "x0000009")
    checkpoint = store.checkpoints[late["shard"]["S"]]
    at = timeutil.parse(checkpoint.split("#", 1)[0]) - timedelta(seconds=1)
    store.add_raw_item(poison_item(LATE_POISON, "x0000009", seconds=int((at - T0).total_seconds())))
    add(store, "fresh", "r3", "2", RUN_AT + timedelta(minutes=30))  # the workers flush a batch too
    store.fallback["m-truncated"] = TRUNCATED_BODY
    store.fallback["m-behind"] = poison_item(DRAINED_POISON, "y0000001", seconds=-7_200)
    clock.now += timedelta(hours=1)
    store.restart()  # the calls counted from here
    return store, clock


@pytest.mark.parametrize("workers", [1, 4])
def test_given_poison_behind_the_checkpoints_when_a_run_reads_it_then_it_counts_each_item_once(
    workers: int,
) -> None:
    # Given a late poison event behind a checkpoint, and a truncated message and a poison event behind
    # every checkpoint in the fallback queue
    store, clock = after_a_first_run(workers)
    before = len(store.quarantined)
    # When two runs read them
    second = workflow(store, workers, clock).run("second", "schedule")
    clock.now += timedelta(hours=1)
    third = workflow(store, workers, clock).run("third", "schedule")
    # Then the first of them keeps and counts the three, the next neither keeps nor counts them again
    assert second.status == third.status == "succeeded"
    assert len(store.quarantined) == before + 3
    assert int(second.quarantined) == 3 and int(third.quarantined or 0) == 0
    assert counted(store) == len(store.quarantined)


BEHIND_FAULT_POINTS = [
    "acquire_lock",
    "load_state",
    "save_run",
    "receive_fallback",
    "put_raw",
    "in_quarantine",
    "quarantine_counted",
    "logged",
    "delete_fallback",
    "open_run",
    "start_worker",
    "load_worker",
    "read_raw",
    "put_pending_chunk",
    "save_worker_pending",
    "complete_worker_pending",
    "set_phase",
    "release_lock",
]


@pytest.mark.parametrize("workers", [1, 4])
@pytest.mark.parametrize("operation", BEHIND_FAULT_POINTS)
def test_a_crash_at_any_call_while_quarantining_behind_the_checkpoints_then_each_item_is_counted_once(
    operation: str, workers: int, reliability: Any
) -> None:
    clean, clock = after_a_first_run(workers)
    workflow(clean, workers, clock).run("crashing", "schedule")
    assert counted(clean) == len(clean.quarantined)
    # Given runs that quarantine poison behind their checkpoints (the planner's from the fallback queue,
    # a worker's in its late-event window) and die at each call of an operation in turn
    crashes = crashes_then_reruns(lambda: after_a_first_run(workers), workers, operation, clean)
    assert crashes > 0
    reliability.record(
        "Faults",
        f"tracking workflow with {workers} worker(s) quarantining a late poison event and two "
        f"fallback-queue messages behind its checkpoints, killed at a {operation} call (every call in "
        "turn), then run again",
        crashes,
        "the run records together count each quarantined item once",
        0,
        0,
    )


def test_given_the_merge_refused_statistics_on_each_of_its_pages_when_the_run_finishes_then_its_record_counts_them_all() -> (
    None
):
    # Given opens of 201 deliveries consolidated by 4 workers, so that their merged statistics fill two
    # merge pages (200 items a page), and DynamoDB refusing every delivery's statistics
    store = seeded_store()
    for n in range(201):
        store.add_raw(
            RawEvent(f"o{n}", "open", f"m{n:03d}", "r1", None, T0 + timedelta(seconds=n), CHROME, None,
                     "203.0.113.0", False)
        )  # fmt: skip
    store.refuse = lambda data: REFUSED if data.get("sk") == {"S": "stats"} else refused_by_dynamodb(data)
    # When the run finishes
    run = workflow(store, 4, Clock(RUN_AT)).run("run-1", "schedule")
    # Then each refused statistics item is quarantined and counted once, whichever page it was on
    assert sorted(item.model for item in store.quarantined.values()) == ["DeliveryStatsModel"] * 201
    assert {item.sk.rpartition("#merged#")[2] for item in store.quarantined.values()} == {"run-1"}
    assert int(run.quarantined) == 201
