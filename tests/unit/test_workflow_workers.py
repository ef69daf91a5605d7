"""The tracking workflow with N workers (README "Scale-out"): every report equals that of one worker,
whatever crashes, whichever worker is retried; the plan / work / finish steps as the state machine
calls them."""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from functions.consolidate.store import FINISH, PARTIAL_SPREAD
from functions.consolidate.workflow import Plan, TrackingWorkflow, WorkflowConfig
from functions.shared import log_chains, raw_events, settings
from functions.shared.models import MessageModel
from functions.shared.raw_events import RawEvent
from tests.fakes_workflow import Crash, FakeWorkflowStore
from tests.unit.test_workflow import CHROME, IPHONE, RUN_AT, T0, Clock, seeded_store

SHARDS = 8  # few shards, so that a crash can be tried at every call
MPP = "Mozilla/5.0"
H = RUN_AT - timedelta(seconds=10)  # r10's and r3's bursts, just before the first run


@pytest.fixture(autouse=True)
def _eight_shards(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("MSGTRACK_RAW_EVENT_SHARDS", str(SHARDS))
    settings.reset_caches()
    yield
    monkeypatch.delenv("MSGTRACK_RAW_EVENT_SHARDS")
    settings.reset_caches()


def workflow(
    store: FakeWorkflowStore, workers: int, clock: Clock, batch_size: int = 3, max_carried_items: int = 10_000
) -> TrackingWorkflow:
    config = WorkflowConfig(batch_size=batch_size, workers=workers, max_carried_items=max_carried_items)
    return TrackingWorkflow(store, config, clock=clock)


def add(
    store: FakeWorkflowStore,
    event_id: str,
    recipient: str,
    url_id: str | None,
    at: datetime,
    *,
    person: str | None = None,
    machine: str | None = None,
    client: str | None = None,
    honeypot: bool = False,
    ua: str = CHROME,
) -> None:
    store.add_raw(
        RawEvent(
            event_id,
            "click" if url_id or honeypot else "open",
            "d1",
            recipient,
            url_id,
            at,
            ua,
            person,
            "203.0.113.0",
            False,
            machine=machine,
            machine_reason=f"{machine} signal" if machine else None,
            client_key=client,
            honeypot=honeypot,
            burst_seconds=30 if honeypot else None,
        )
    )


def transaction(store: FakeWorkflowStore, event_id: str, recipient: str, amount: str, at: datetime) -> None:
    store.add_raw(
        RawEvent(
            event_id, "transaction", "d1", recipient, None, at, CHROME, None, None, False,
            site_id="s1", via_url_id="1", page_url="https://shop.example/checkout", amount=amount, currency="EUR",
        )
    )  # fmt: skip


def first_run_events(store: FakeWorkflowStore, seed: int = 7, recipients: int = 40) -> None:
    """Forty recipients' opens and clicks: people, Apple's prefetches, bots, a person (browser) who
    clicks for many recipients, opt-outs, mirror views, transactions, and a burst of r10's hits from
    one address, with a human click of the browser "pf" among them."""
    rng = random.Random(seed)
    for n in range(8, 40):
        store.add_message(
            MessageModel(delivery_id="d1", sk=f"msg#r{n}", recipient_id=f"r{n}", email_domain=f"d{n % 3}.example", rendered_at="x")
        )  # fmt: skip
    for n in range(recipients):
        recipient = f"r{n}"
        at = T0 + timedelta(seconds=rng.randrange(3600))
        add(store, f"o{n}", recipient, None, at, client=f"k{n}", ua=rng.choice((CHROME, IPHONE)))
        if n % 4 == 0:
            add(store, f"m{n}", recipient, None, at, machine="apple_mpp", client=f"a{n}", ua=MPP)
        for c in range(rng.randrange(4)):
            url_id = rng.choice("11223345")
            person = "pshared" if n % 5 == 0 else f"p{n}"
            add(
                store,
                f"c{n}-{c}",
                recipient,
                url_id,
                at + timedelta(seconds=c + 1),
                person=person,
                client=f"k{n}",
            )
        if n % 7 == 0:
            add(
                store,
                f"b{n}",
                recipient,
                "1",
                at,
                person=f"bot{n}",
                machine="bot",
                client=f"x{n}",
                ua="curl/8",
            )
        if n % 9 == 0:
            transaction(store, f"t{n}", recipient, f"{n}.5", at)
    # r10's burst: b1 (open) and b2 (a click by "pf") from k10 within 30 s of the honeypot hit to come
    add(store, "burst1", "r10", None, H - timedelta(seconds=10), client="k10-burst")
    add(store, "burst2", "r10", "1", H + timedelta(seconds=5), person="pf", client="k10-burst")
    # "pf" also clicks r1's message as a person: still a human person when r10's click is a scanner's
    add(store, "pf-1", "r1", "2", H, person="pf", client="k1")
    # "pg" clicks only in r3's burst: no human person left once the honeypot gives it away
    add(store, "pg-3", "r3", "2", H, person="pg", client="k3-burst")


def second_run_events(store: FakeWorkflowStore) -> None:
    """The honeypot hits of r10's and r3's messages (their bursts consolidated by the first run), and
    more clicks, of "pshared" too."""
    add(
        store,
        "hp10",
        "r10",
        None,
        RUN_AT + timedelta(seconds=5),
        client="k10-burst",
        honeypot=True,
        machine="scanner",
    )
    add(
        store,
        "hp3",
        "r3",
        None,
        RUN_AT + timedelta(seconds=15),
        client="k3-burst",
        honeypot=True,
        machine="scanner",
    )
    for n in range(0, 40, 3):
        add(store, f"late{n}", f"r{n}", "2", RUN_AT + timedelta(minutes=5), person="pshared", client=f"k{n}")


def story(workers: int, *, parallel: bool = False) -> tuple[FakeWorkflowStore, list[Any]]:
    """Two runs over the same events with ``workers`` workers: the store and the run records."""
    store = seeded_store()
    clock = Clock(RUN_AT)
    first_run_events(store)
    first = workflow(store, workers, clock).run("run-1", "schedule", parallel=parallel)
    second_run_events(store)
    clock.now += timedelta(hours=1)
    second = workflow(store, workers, clock).run("run-2", "schedule", parallel=parallel)
    return store, [first, second]


def test_four_workers_leave_every_report_exactly_as_one_worker_does() -> None:
    # Given the same events, When two runs consolidate them with one worker and with four in parallel
    alone, _ = story(1)
    four, runs = story(4, parallel=True)
    # Then every tracking log and every indicator item is the same (so is every report)
    assert four.snapshot() == alone.snapshot()
    # And the human / machine split and the honeypot bursts across runs are in it
    stats = four.indicators[("d1", "stats")]
    human = stats.human.as_dict()
    assert stats.machine.as_dict()["by_kind"]["scanner"] == 5  # two honeypot hits, three burst hits
    assert int(stats.person_clicks) == len(
        {log.person_id for log in four.logs.values() if log.type == "click" and log.counted and log.person_id}
    )
    assert human["person_clicks"] == len(
        {log.person_id for log in four.logs.values() if log.type == "click" and log.counted and log.machine is None}
    )  # fmt: skip
    assert "pf" in {log.person_id for log in four.logs.values() if log.machine is None} and "pg" not in {
        log.person_id for log in four.logs.values() if log.machine is None
    }
    # And each run names its four workers, whose events add up to the run's
    for run in runs:
        assert run.status == "succeeded"
        assert [w["status"] for w in run.workers] == ["succeeded"] * 4
        assert sum(w["events_processed"] for w in run.workers) == run.events_processed > 0
        assert sorted(s for w in run.workers for s in w["shards"]) == raw_events.shards()
    assert sum(run.events_processed for run in runs) == len(four.logs)
    # And no partial item or merge page is left behind
    assert four.partials == {} and four.merges == {} and four.slices == {}


@pytest.mark.parametrize("workers", [2, 3, 8])
def test_any_number_of_workers_gives_the_reports_of_one(workers: int) -> None:
    alone, _ = story(1)
    many, runs = story(workers)
    assert many.snapshot() == alone.snapshot()
    assert [len(run.workers) for run in runs] == [workers, workers]


def test_a_lone_worker_writes_no_partial_items() -> None:
    store, runs = story(1)
    assert store.calls.get("put_partial", 0) == 0 and runs[0].workers[0]["shards"] == raw_events.shards()


def test_a_worker_of_several_reads_its_partial_items_and_the_stored_ones_in_one_go() -> None:
    """The DynamoDB store sends the two reads at once (``load_partials_and_indicators``): a worker of
    several never reads its partial items on their own, waiting for them before the stored ones."""
    # Given four workers, When two runs consolidate the events
    store, runs = story(4)
    # Then every read of a worker's partial items went with the read of the stored items
    assert store.reads_at_once > 0 and store.calls["load_partials"] == store.reads_at_once
    # And the reports are one worker's
    assert store.snapshot() == story(1)[0].snapshot() and all(run.status == "succeeded" for run in runs)


MULTI_FAULT_POINTS = [
    "read_raw",
    "load_indicators",
    "load_partials",
    "put_pending_chunk",
    "save_worker_pending",
    "put_item",
    "put_partial",
    "complete_worker_pending",
    "open_run",
    "start_worker",
    "set_phase",
    "save_merge",
    "load_merge",
    "slice_partials",
    "save_slice",
    "load_slice",
    "slice_pages",
    "slice_put",
    "delete_slices",
    "delete_slice_partials",
    "save_run",
    "release_lock",
]


def clean(workers: int, recipients: int = 40) -> dict[str, Any]:
    store = seeded_store()
    first_run_events(store, recipients=recipients)
    workflow(store, workers, Clock(RUN_AT)).run("clean", "schedule")
    return store.snapshot()


CRASH_RECIPIENTS = 12  # fewer hits, so that every call of every operation can be crashed in turn


@pytest.mark.parametrize("operation", MULTI_FAULT_POINTS)
def test_a_crash_at_any_call_of_any_worker_then_a_rerun_gives_the_clean_totals(
    operation: str, reliability: Any
) -> None:
    expected = clean(1, CRASH_RECIPIENTS)
    crashes = 0
    for nth in range(1, 1000):
        # Given a run of four workers that dies at the nth call of an operation (nothing runs after it)
        store = seeded_store()
        first_run_events(store, recipients=CRASH_RECIPIENTS)
        clock = Clock(RUN_AT)
        store.fault = lambda op, count, nth=nth: op == operation and count == nth
        try:
            workflow(store, 4, clock).run("crashing", "schedule")
        except Crash:
            crashes += 1
        else:
            break  # fewer calls than nth: every call has been tried
        # When a new process runs again once the dead run's lock has expired
        store.restart()
        clock.now += timedelta(hours=1)
        rerun = workflow(store, 4, clock).run("rerun", "schedule")
        # Then the totals are exactly those of one clean run with one worker
        assert rerun.status == "succeeded"
        assert store.snapshot() == expected, f"crash at {operation} call {nth}"
        assert store.pending is None and store.lock_owner is None
        # And no partial item, slice or merge page of either run is left behind
        assert not any(store.partials.values()) and not store.slices and not store.merges
        # And no run is left recorded as running: the dead one failed (or succeeded, if it died after that)
        assert {run.status for run in store.runs.values()} <= {"succeeded", "failed"}
    assert crashes > 0
    reliability.record(
        "Faults",
        f"tracking workflow with 4 workers killed at a {operation} call (every call in turn), then run again",
        crashes,
        "the next run finished the interrupted one (replayed its workers' pending batches, merged their "
        "partial items once) and gave the totals of one worker",
        0,
        0,
    )


def test_a_retried_worker_counts_nothing_twice(reliability: Any) -> None:
    # Given a planned run of four workers
    store = seeded_store()
    first_run_events(store)
    clock = Clock(RUN_AT)
    flow = workflow(store, 4, clock, batch_size=2, max_carried_items=4)
    plan = flow.plan("run-1", "schedule")
    # When worker 1 fails after two flushes (a transient DynamoDB error) and Step Functions retries it
    store.restart()
    store.die_on_fault = False
    store.fault = lambda op, count: op == "complete_worker_pending" and count == 3
    with pytest.raises(Crash):
        flow.work("run-1", 1, plan.groups[1])
    store.restart()
    results = [flow.work("run-1", n, group) for n, group in enumerate(plan.groups)]
    # And once more after it succeeded (a retry of an attempt that timed out but finished)
    again = flow.work("run-1", 1, plan.groups[1])
    run = flow.finish("run-1", [r.as_dict() for r in results])
    # Then the reports are those of one worker, and the worker's count is the same both times
    assert store.snapshot() == clean(1)
    assert again.events_processed == results[1].events_processed
    assert run.events_processed == sum(r.events_processed for r in results) == len(store.logs)
    reliability.record(
        "Faults",
        "a worker of the tracking workflow failing mid-way, retried by the state machine (and once more)",
        1,
        "the retry replayed the worker's pending batch and went on from its checkpoints; counted once",
        0,
        0,
    )


def test_a_failed_worker_fails_the_run_and_loses_nothing() -> None:
    # Given a run whose worker 2 fails for good (the state machine gives up on it)
    store = seeded_store()
    first_run_events(store)
    clock = Clock(RUN_AT)
    flow = workflow(store, 4, clock, batch_size=2)
    plan = flow.plan("run-1", "schedule")
    store.restart()
    store.die_on_fault = False
    store.fault = lambda op, count: op == "read_raw" and count == 5
    results = []
    for n, group in enumerate(plan.groups):
        with contextlib.suppress(Crash):  # the state machine gave up on that worker
            results.append(flow.work("run-1", n, group).as_dict())
    store.restart()
    # When the finisher is called with the state machine's error
    run = flow.finish("run-1", results, "States.TaskFailed: injected fault in read_raw")
    # Then the run is failed with that error, names the failed worker, and the lock is released
    assert run.status == "failed" and "injected fault" in run.errors[0]
    assert "failed" in [w["status"] for w in run.workers]
    assert store.lock_owner is None
    # And the next run finishes the work: the totals are those of one clean run
    clock.now += timedelta(hours=1)
    workflow(store, 4, clock).run("run-2", "schedule")
    assert store.snapshot() == clean(1)


def test_a_worker_failing_in_a_run_in_one_process_is_recorded_failed_with_the_error() -> None:
    # Given a run of four workers in one process (the local stack's, the tests') whose worker 2 fails
    store = seeded_store()
    first_run_events(store)
    clock = Clock(RUN_AT)
    flow = workflow(store, 4, clock, batch_size=2)
    store.die_on_fault = False  # the process lives on: the other workers, close and finish go on
    failing = 2
    store.fault = lambda operation, count: operation == "start_worker" and count == failing + 1
    # When it runs
    with pytest.raises(Crash):
        flow.run("run-1", "schedule")
    # Then its record names the failed worker (its shards, nothing counted) and the error's type
    run = store.runs["run-1"]
    assert run.status == "failed"
    (error,) = run.errors  # once, though both the run and its worker report it
    assert error == f"Crash: injected fault in start_worker (call {failing + 1})"
    workers = [dict(worker) for worker in run.workers]
    assert [worker["status"] for worker in workers] == ["succeeded", "succeeded", "failed", "succeeded"]
    assert workers[failing]["events_processed"] == 0
    assert workers[failing]["shards"] == store.groups[failing]
    # And the next run finishes the work: the totals are those of one clean run
    clock.now += timedelta(hours=1)
    store.fault = lambda operation, count: False
    workflow(store, 4, clock).run("run-2", "schedule")
    assert store.snapshot() == clean(1)


def test_a_slice_of_the_merge_failing_in_a_run_in_one_process_is_recorded_and_finish_merges_it() -> None:
    # Given a run of four workers in one process whose first slice of the merge fails once
    store = seeded_store()
    first_run_events(store)
    store.die_on_fault = False
    store.fault = lambda operation, count: operation == "save_slice" and count == 1
    # When it runs
    with pytest.raises(Crash):
        workflow(store, 4, Clock(RUN_AT)).run("run-1", "schedule")
    # Then its record is failed with that error, and the finisher merged what the slice left: the
    # reports are those of one clean run
    run = store.runs["run-1"]
    assert run.status == "failed"
    assert run.errors == ["Crash: injected fault in save_slice (call 1)"]
    assert store.snapshot() == clean(1)


def test_a_run_whose_finisher_never_ran_is_merged_and_recorded_failed_by_the_next_run() -> None:
    # Given a run of four workers that all finished, and a state machine that died before the finisher
    store = seeded_store()
    first_run_events(store)
    clock = Clock(RUN_AT)
    flow = workflow(store, 4, clock)
    plan = flow.plan("run-1", "schedule")
    done = [flow.work("run-1", n, group) for n, group in enumerate(plan.groups)]
    assert store.partials  # their shared counts wait in partial items
    # When the next run starts once the lock has expired
    clock.now += timedelta(hours=1)
    run = workflow(store, 4, clock).run("run-2", "schedule")
    # Then the first run's work is merged once, and its record says it was interrupted
    assert run.status == "succeeded" and run.events_processed == 0
    assert store.snapshot() == clean(1)
    interrupted = store.runs["run-1"]
    assert interrupted.status == "failed"
    assert interrupted.errors == ["interrupted; what its workers flushed was merged by run run-2"]
    assert interrupted.finished_at == "2026-11-23T11:00:00.000Z"  # when run-2 finished it
    assert interrupted.events_processed == sum(result.events_processed for result in done) > 0
    # each worker as the state machine never reported it: failed, with what it had flushed
    assert [dict(worker) for worker in interrupted.workers] == [
        {"shards": group, "events_processed": result.events_processed, "status": "failed"}
        for group, result in zip(plan.groups, done, strict=True)
    ]


def test_the_next_run_leaves_a_finished_runs_record_as_it_was() -> None:
    # Given a run of four workers that finished (the workflow's state still names it, merged)
    store = seeded_store()
    first_run_events(store)
    clock = Clock(RUN_AT)
    first = workflow(store, 4, clock).run("run-1", "schedule")
    assert first.status == "succeeded" and first.events_processed > 0

    def record() -> tuple[Any, ...]:
        run = store.runs["run-1"]
        workers = [dict(worker) for worker in run.workers]
        return (run.status, list(run.errors), run.events_processed, run.finished_at, workers)

    before = record()
    # When the next run starts and finishes
    clock.now += timedelta(hours=1)
    assert workflow(store, 4, clock).run("run-2", "schedule").status == "succeeded"
    # Then the first run's record is as its finisher left it (not finished again as interrupted)
    assert record() == before


def test_a_worker_still_writing_after_the_finisher_closed_the_run_stops() -> None:
    # Given a run whose finisher ran (the state machine failed the run) while worker 0 had not started
    store = seeded_store()
    first_run_events(store)
    flow = workflow(store, 4, Clock(RUN_AT))
    plan = flow.plan("run-1", "schedule")
    flow.finish("run-1", [], "States.Timeout")
    # When worker 0 starts late
    late = flow.work("run-1", 0, plan.groups[0])
    # Then it writes nothing
    assert late.status == "failed" and late.events_processed == 0
    assert store.logs == {}


def test_a_run_whose_record_was_lost_is_recorded_again_by_its_finish_from_the_workflows_state() -> None:
    # Given a run started by the API whose workers finished, and whose record was then deleted by hand
    store = seeded_store()
    first_run_events(store)
    clock = Clock(RUN_AT)
    flow = workflow(store, 4, clock)
    plan = flow.plan("run-1", "api")
    done = [flow.work("run-1", n, group) for n, group in enumerate(plan.groups)]
    del store.runs["run-1"]
    # When its Finish step runs
    clock.now += timedelta(minutes=5)
    flow.finish("run-1", [result.as_dict() for result in done])
    # Then the run is recorded again under its id, with the trigger and start the workflow's state kept
    run = store.runs["run-1"]
    assert (run.sk, run.trigger, run.status) == ("run-1", "api", "succeeded")
    assert (run.started_at, run.finished_at) == ("2026-11-23T10:00:00.000Z", "2026-11-23T10:05:00.000Z")
    assert run.events_processed == sum(result.events_processed for result in done) > 0
    assert store.snapshot() == clean(4)


def test_a_finish_for_a_run_the_workflow_never_planned_records_it_failed_and_changes_nothing_else() -> None:
    # Given a finished run, and the Finish step of a run the workflow never planned (invoked by hand)
    store = seeded_store()
    first_run_events(store)
    clock = Clock(RUN_AT)
    workflow(store, 4, clock).run("run-1", "schedule")
    before = store.snapshot()
    # When it runs
    clock.now += timedelta(minutes=5)
    workflow(store, 4, clock).finish("run-x", [], "States.Timeout")
    # Then that run is recorded failed with its error, no trigger (none is known) and the time it was
    # recorded
    run = store.runs["run-x"]
    assert (run.status, run.trigger) == ("failed", None)
    assert run.started_at == run.finished_at == "2026-11-23T10:05:00.000Z"
    assert run.errors == ["States.Timeout", "run run-x no longer holds the tracking workflow lock"]
    # And nothing else changed: the finished run's record, the reports, the lock
    assert store.runs["run-1"].status == "succeeded" and store.lock_owner is None
    assert store.snapshot() == before


def test_a_run_opened_by_an_older_version_without_drained_counts_is_worked_and_finished() -> None:
    # Given a run of four workers opened by a version that kept no count of the events its planner
    # drained from the fallback queue (none here)
    store = seeded_store()
    first_run_events(store)
    clock = Clock(RUN_AT)
    flow = workflow(store, 4, clock)
    plan = flow.plan("run-1", "schedule")
    assert store.drained == [0, 0, 0, 0]
    store.drained = []
    # When its workers and its Finish run
    done = [flow.work("run-1", n, group) for n, group in enumerate(plan.groups)]
    run = flow.finish("run-1", done)
    # Then each worker and the run count what the workers consolidated, no more
    assert [result.events_processed for result in done] == [
        worker["events_processed"] for worker in run.workers
    ]
    assert run.events_processed == sum(store.workers[n]["events"] for n in range(4)) > 0
    assert store.snapshot() == clean(4)


def test_a_workflow_configured_with_its_own_shard_count_plans_over_those_shards() -> None:
    # Given the deploy-time setting of 8 raw-event shards, and a workflow configured for 16 (as the
    # benchmarks configure it)
    store = seeded_store()
    config = WorkflowConfig(workers=4, raw_event_shards=16)
    # When a run is planned
    plan = TrackingWorkflow(store, config, clock=Clock(RUN_AT)).plan("run-1", "schedule")
    # Then its four workers share the 16 shards
    assert sorted(shard for group in plan.groups for shard in group) == raw_events.shards(16)
    assert len(plan.groups) == 4


def test_a_worker_reported_failed_without_an_error_fails_the_run_all_the_same() -> None:
    # Given a run of four workers that all finished, and worker 1 reported failed in a result that
    # carries no error
    store = seeded_store()
    first_run_events(store)
    flow = workflow(store, 4, Clock(RUN_AT))
    plan = flow.plan("run-1", "schedule")
    done = [flow.work("run-1", n, group).as_dict() for n, group in enumerate(plan.groups)]
    done[1] = {"worker": 1, "shards": plan.groups[1], "status": "failed"}
    # When the run's Finish runs
    run = flow.finish("run-1", done)
    # Then the run failed, its errors saying so, and its counts are its workers' (from their slots)
    assert run.status == "failed" and run.errors[0] == "failed"
    assert store.snapshot() == clean(4)


def test_a_late_close_of_a_run_whose_lock_the_next_run_took_changes_nothing() -> None:
    # Given a run of four workers that all finished, whose state machine stalled before its Close step
    # until its lock expired and the next run took it
    store = seeded_store()
    first_run_events(store)
    clock = Clock(RUN_AT)
    flow = workflow(store, 4, clock)
    plan = flow.plan("run-1", "schedule")
    for n, group in enumerate(plan.groups):
        flow.work("run-1", n, group)
    clock.now += timedelta(hours=1)
    assert store.acquire_lock("run-2", clock.now.timestamp(), 600)
    before = (store.phase, store.lock_owner, store.lock_expires, dict(store.partials))
    # When run-1's Close step runs at last
    slices = flow.close("run-1")
    # Then it closes nothing and leaves no slice to merge: the lock, the phase and the partial items are
    # the next run's to finish
    assert slices == []
    assert (store.phase, store.lock_owner, store.lock_expires, dict(store.partials)) == before


def others_done_and_worker_0_dead_before_applying(
    flow: TrackingWorkflow, store: FakeWorkflowStore
) -> tuple[Any, list[Any]]:
    """Plan run-1; its workers but 0 finish; worker 0 dies once it has saved its first pending batch,
    before applying it. The plan and the other workers' results."""
    plan = flow.plan("run-1", "schedule")
    done = [flow.work("run-1", n, group) for n, group in enumerate(plan.groups) if n]
    store.calls.clear()  # the other workers' calls
    store.fault = lambda operation, count: operation == "put_item" and "save_worker_pending" in store.calls
    with pytest.raises(Crash):
        flow.work("run-1", 0, plan.groups[0])
    store.restart()
    return plan, done


@pytest.mark.parametrize(("workers", "refused"), [(1, False), (2, False), (4, False), (4, True)])
def test_the_close_step_completes_the_batch_a_dead_worker_left_pending(workers: int, refused: bool) -> None:
    # Given a run whose other workers finished and whose worker 0 died once it had saved its first
    # pending batch, before applying it (DynamoDB may refuse an item of it)
    store = seeded_store()
    first_run_events(store)
    if refused:  # r10's recipient state, in worker 0's first batch
        store.refuse = lambda data: (
            "ValidationException: too large" if data.get("sk") == {"S": "r#r10"} else None
        )
    flow = workflow(store, workers, Clock(RUN_AT))
    _, done = others_done_and_worker_0_dead_before_applying(flow, store)
    assert store.workers[0]["pending"] is not None
    # When the run's Close step runs
    slices = flow.close("run-1")
    # Then it applied and completed that batch (its events, and the item refused, counted once in the
    # worker's slot), and lists the slices of the merge (none for one worker)
    assert store.workers[0]["pending"] is None and store.workers[0]["events"] > 0
    assert store.workers[0]["quarantined"] == (1 if refused else 0)
    assert slices == (list(range(PARTIAL_SPREAD)) if workers > 1 else [])
    # And once the slices are merged and the run finished, the reports are a clean run's
    for spread in slices:
        flow.merge_slice("run-1", spread)
    flow.finish("run-1", done)
    if not refused:
        assert store.snapshot() == clean(workers)


def test_a_worker_starting_while_finish_merges_writes_nothing_and_the_next_run_counts_its_shards() -> None:
    # Given a run of four workers whose worker 3 was never started, and its Finish merging the others'
    # work when worker 3 starts at last
    store = seeded_store()
    first_run_events(store)
    clock = Clock(RUN_AT)
    flow = workflow(store, 4, clock)
    plan = flow.plan("run-1", "schedule")
    done = [flow.work("run-1", n, group) for n, group in enumerate(plan.groups) if n < 3]
    late: list[Any] = []

    def worker_3_starts(operation: str, count: int) -> bool:
        if operation == "save_slice" and not late:
            late.append(None)
            late[0] = flow.work("run-1", 3, plan.groups[3])
        return False

    store.fault = worker_3_starts
    flow.finish("run-1", done)
    # Then worker 3 wrote nothing: the run was closed for its workers before the merge began
    assert late[0].status == "failed" and late[0].events_processed == 0
    assert store.workers.get(3, {}).get("events", 0) == 0
    # And the next run consolidates its shards: the reports are a clean run's
    store.restart()
    clock.now += timedelta(hours=1)
    assert workflow(store, 4, clock).run("run-2", "schedule").status == "succeeded"
    assert store.snapshot() == clean(4)


def test_a_dead_workers_batch_of_a_run_that_never_finished_is_applied_by_the_next_run() -> None:
    # Given a run of four workers whose worker 0 died once it had saved a pending batch, before applying
    # it, and whose state machine died too (no Close, no Finish)
    store = seeded_store()
    first_run_events(store)
    clock = Clock(RUN_AT)
    others_done_and_worker_0_dead_before_applying(workflow(store, 4, clock), store)
    # When the next run starts once the lock has expired
    clock.now += timedelta(hours=1)
    assert workflow(store, 4, clock).run("run-2", "schedule").status == "succeeded"
    # Then it applied that batch under its own lock and merged the first run: a clean run's reports
    assert store.workers[0]["pending"] is None
    assert store.snapshot() == clean(4)


def finish_died_at(operation: str) -> tuple[FakeWorkflowStore, Clock, list[Any]]:
    """A run of four workers that all finished, whose Finish died at its first ``operation`` call and
    whose state machine died with it (no retry); the store, its clock, the workers' results."""
    store = seeded_store()
    first_run_events(store)
    clock = Clock(RUN_AT)
    flow = workflow(store, 4, clock)
    plan = flow.plan("run-1", "schedule")
    done = [flow.work("run-1", n, group) for n, group in enumerate(plan.groups)]
    store.fault = lambda called, count: called == operation
    with pytest.raises(Crash):
        flow.finish("run-1", done)
    store.restart()
    return store, clock, done


def test_a_finish_that_died_in_its_merge_is_finished_by_the_next_run() -> None:
    # Given a run whose Finish died while saving its first slice of the merge, never retried
    store, clock, _ = finish_died_at("save_slice")
    # When the next run starts once the lock has expired
    clock.now += timedelta(hours=1)
    assert workflow(store, 4, clock).run("run-2", "schedule").status == "succeeded"
    # Then it merged the first run's work (once): the reports are a clean run's, the first run failed
    assert store.snapshot() == clean(4)
    assert store.runs["run-1"].status == "failed"


@pytest.mark.parametrize("workers", [1, 4])
def test_a_finished_run_leaves_no_merge_behind(workers: int) -> None:
    # Given a run of one worker (nothing to merge) or four
    store = seeded_store()
    first_run_events(store)
    # When it runs
    assert workflow(store, workers, Clock(RUN_AT)).run("run-1", "schedule").status == "succeeded"
    # Then no saved slice, merged page or partial item of it is left in the workflow table
    assert (store.slices, store.merges, store.partials) == ({}, {}, {})


def test_a_run_an_older_version_merged_without_an_outcome_is_recorded_by_the_next_run() -> None:
    # Given a run of four workers whose Finish (an older version, which saved no outcome with the
    # merged phase) merged and died before recording the run
    store, clock, done = finish_died_at("save_run")
    assert store.phase == "merged"
    store.merge_outcome = b""
    # When the next run starts once the lock has expired
    clock.now += timedelta(hours=1)
    assert workflow(store, 4, clock).run("run-2", "schedule").status == "succeeded"
    # Then the first run is recorded failed with what its workers counted, nothing quarantined
    interrupted = store.runs["run-1"]
    assert (interrupted.status, int(interrupted.quarantined)) == ("failed", 0)
    assert interrupted.events_processed == sum(result.events_processed for result in done) > 0
    assert store.snapshot() == clean(4)


def test_a_run_counts_only_what_its_own_workers_did_not_what_a_slot_kept_from_the_last_run() -> None:
    # Given a first run of four workers, whose worker 3 kept an item DynamoDB refused in quarantine, then
    # a second run whose worker 3 is never started (its slot still holds the first run's counts)
    store = seeded_store()
    first_run_events(store)
    clock = Clock(RUN_AT)
    flow = workflow(store, 4, clock)
    groups = flow.plan("run-0", "schedule").groups
    flow.finish("run-0", [])  # a plan only, to learn worker 3's shards: nothing consolidated
    ours = next(f"r{n}" for n in range(8, 40) if raw_events.shard_of("d1", f"r{n}", SHARDS) in groups[3])
    store.refuse = lambda data: (
        "ValidationException: too large" if data.get("sk") == {"S": f"r#{ours}"} else None
    )
    clock.now += timedelta(hours=1)
    first = workflow(store, 4, clock).run("run-1", "schedule")
    assert store.workers[3]["events"] > 0 and store.workers[3]["quarantined"] == 1 == first.quarantined
    clock.now += timedelta(hours=1)
    flow = workflow(store, 4, clock)
    plan = flow.plan("run-2", "schedule")
    done = [flow.work("run-2", n, group) for n, group in enumerate(plan.groups) if n < 3]
    # When its Finish runs
    second = flow.finish("run-2", done)
    # Then it counts nothing of the first run's (no event is new) and says worker 3 did not report
    assert first.events_processed > 0 and second.events_processed == 0
    assert [worker["events_processed"] for worker in second.workers] == [0, 0, 0, 0]
    assert "worker 3 did not report" in second.errors
    assert int(second.quarantined or 0) == 0


def test_a_worker_whose_run_is_closed_while_it_applies_a_batch_leaves_that_batch_to_the_closer() -> None:
    # Given a run of four workers, and worker 0 applying its first pending batch when the run's Close
    # step closes the run (its state machine gave up on the worker)
    store = seeded_store()
    first_run_events(store)
    flow = workflow(store, 4, Clock(RUN_AT))
    plan = flow.plan("run-1", "schedule")
    closed_at_its_next_batch(store)
    # When the worker goes to complete that batch
    late = flow.work("run-1", 0, plan.groups[0])
    # Then it stops there, failed: the batch is still pending, for the closer to complete (once)
    assert late.status == "failed" and late.events_processed == 0
    assert store.workers[0]["pending"] is not None and store.workers[0]["events"] == 0
    done = [flow.work("run-1", n, group) for n, group in enumerate(plan.groups) if n]
    assert all(result.status == "failed" for result in done)  # closed: the others write nothing
    flow.finish("run-1", [late, *done])
    assert store.workers[0]["pending"] is None and store.workers[0]["events"] > 0


def test_persons_whose_bot_clicks_several_workers_counted_are_each_counted_once_whatever_their_slice() -> (
    None
):
    # Given 16 persons, each clicking (as a bot: no human click) in the messages of two recipients, whose
    # raw events lie in different shards, so several workers each count the person as new; the persons
    # fall in several slices of the merge
    def clicks(store: FakeWorkflowStore) -> None:
        for n in range(16):
            for k in range(2):
                add(store, f"b{n}-{k}", f"r{n}-{k}", "1", T0 + timedelta(seconds=n * 2 + k), person=f"p{n}",
                    machine="bot")  # fmt: skip

    alone, four = seeded_store(), seeded_store()
    clicks(alone)
    clicks(four)
    # When one worker and four consolidate them
    workflow(alone, 1, Clock(RUN_AT)).run("run-1", "schedule")
    workflow(four, 4, Clock(RUN_AT)).run("run-1", "schedule")
    # Then each person counts once in all traffic and none in the human figures, as with one worker
    for store in (alone, four):
        stats = store.indicators[("d1", "stats")]
        assert (int(stats.person_clicks), int(stats.human.as_dict().get("person_clicks", 0))) == (16, 0)
    assert four.snapshot() == alone.snapshot()


def _four_workers_done() -> tuple[FakeWorkflowStore, TrackingWorkflow, list[dict[str, Any]]]:
    """The first run's events, run-1 planned for 4 workers and each worker done; not closed yet."""
    store = seeded_store()
    first_run_events(store)
    flow = workflow(store, 4, Clock(RUN_AT))
    plan = flow.plan("run-1", "schedule")
    return store, flow, [flow.work("run-1", n, group).as_dict() for n, group in enumerate(plan.groups)]


def test_a_slice_of_the_merge_invoked_before_its_run_is_closed_merges_nothing() -> None:
    # Given a run whose workers are done, not closed yet (their pending batches may be unapplied)
    store, flow, results = _four_workers_done()
    partials = {key: dict(items) for key, items in store.partials.items()}
    # When every slice of its merge is invoked early
    for spread in range(PARTIAL_SPREAD):
        flow.merge_slice("run-1", spread)
    # Then none merged, saved or deleted anything, and the run then closes and finishes as it should
    assert store.slices == {} and store.partials == partials != {}
    for spread in flow.close("run-1"):
        flow.merge_slice("run-1", spread)
    assert flow.finish("run-1", results).status == "succeeded"
    alone = seeded_store()
    first_run_events(alone)
    workflow(alone, 1, Clock(RUN_AT)).run("run-1", "schedule")
    assert store.snapshot() == alone.snapshot()


def test_slices_an_older_version_marked_put_without_an_outcome_finish_with_nothing_quarantined() -> None:
    # Given a closed run whose slices were all merged and put, marked put by an older version (no outcome:
    # a deploy between the slices and the finisher)
    store, flow, results = _four_workers_done()
    for spread in flow.close("run-1"):
        flow.merge_slice("run-1", spread)
    for saved in store.slices.values():
        saved["outcome"] = b""
    # When the finisher runs
    run = flow.finish("run-1", results)
    # Then the run succeeds, with nothing quarantined and the reports of a run in one worker
    assert run.status == "succeeded" and not run.quarantined and run.errors == []
    assert store.snapshot() == clean(1)


def test_a_slice_of_a_closed_run_whose_lock_another_run_took_merges_nothing() -> None:
    # Given a closed run whose lock expired and was taken by the next run's planner
    store, flow, _ = _four_workers_done()
    spreads = flow.close("run-1")
    partials = {key: dict(items) for key, items in store.partials.items()}
    store.lock_owner = "run-2"
    # When a slice of the first run's merge is invoked late
    flow.merge_slice("run-1", spreads[0])
    # Then it merged, saved and deleted nothing: the next run's planner merges what is left, once
    assert store.slices == {} and store.partials == partials != {}


def test_a_plan_names_each_shard_once_and_is_skipped_while_another_run_holds_the_lock() -> None:
    store = seeded_store()
    flow = workflow(store, 3, Clock(RUN_AT))
    plan = flow.plan("run-1", "api").as_dict()
    assert plan["skip"] is False and [g["worker"] for g in plan["groups"]] == [0, 1, 2]
    assert sorted(s for g in plan["groups"] for s in g["shards"]) == raw_events.shards()
    assert flow.plan("run-1", "api").as_dict() == plan  # a retried plan step: the same plan
    other = flow.plan("run-2", "schedule").as_dict()
    assert other == {"run_id": "run-2", "trigger": "schedule", "skip": True, "groups": []}


@pytest.mark.parametrize(("shards", "workers"), [(256, 3), (256, 8), (128, 10), (64, 5), (16, 3)])
def test_shards_feeding_one_log_chain_are_planned_into_one_group(
    monkeypatch: pytest.MonkeyPatch, shards: int, workers: int
) -> None:
    # Given a raw shard count and a number of workers
    monkeypatch.setenv("MSGTRACK_RAW_EVENT_SHARDS", str(shards))
    settings.reset_caches()
    # When a run plans
    plan = workflow(seeded_store(), workers, Clock(RUN_AT)).plan("run-1", "api")
    group_of = {shard: n for n, group in enumerate(plan.groups) for shard in group}
    assert sorted(group_of) == sorted(raw_events.shards()) and len(group_of) == shards
    assert len(plan.groups) == min(workers, shards, log_chains.LOG_CHAINS)
    # Then the hits of every recipient whose logs share a chain are read by one worker: no two
    # workers write one chain
    writers: dict[int, set[int]] = defaultdict(set)
    for n in range(5_000):
        recipient = f"r{n}"
        writers[log_chains.chain_number("d1", recipient)].add(group_of[raw_events.shard_of("d1", recipient)])
    assert len(writers) == log_chains.LOG_CHAINS
    assert all(len(groups) == 1 for groups in writers.values())


def test_old_shards_of_the_event_id_sharding_are_drained_by_one_worker_first() -> None:
    # Given events still under the shard names of the sharding by event id ("00".."15")
    store = seeded_store()
    for n in range(6):
        event = RawEvent(f"old{n}", "open", "d1", f"r{n}", None, T0, CHROME, None, None, False)
        item = raw_events.to_item(event, 30)
        item["shard"] = {"S": f"{n % 3:02d}"}
        store.add_raw_item(item)
    first_run_events(store)
    clock = Clock(RUN_AT)
    # When a run with four workers plans
    first = workflow(store, 4, clock).run("run-1", "schedule")
    # Then it runs as one worker over every shard, old ones too (a recipient's hits may be in both)
    assert len(first.workers) == 1 and {"00", "01", "02"} <= set(first.workers[0]["shards"])
    assert store.stats("d1")["opens"] == 40
    # And once they are drained (past the late-event window), runs split again
    clock.now += timedelta(hours=1)
    second = workflow(store, 4, clock).run("run-2", "schedule")
    assert len(second.workers) == 4


def refused(worker: int, shards: list[str], error: str) -> dict[str, Any]:
    """A worker's result saying it failed with ``error``: its number and shards, nothing counted, no notes."""
    return {
        "worker": worker,
        "shards": shards,
        "events_processed": 0,
        "status": "failed",
        "error": error,
        "more": False,
    }


def test_a_worker_is_turned_away_unless_its_run_is_open_for_work_and_planned_it_with_those_shards() -> None:
    # Given a run of four workers, planned
    store = seeded_store()
    first_run_events(store)
    clock = Clock(RUN_AT)
    flow = workflow(store, 4, clock)
    plan = flow.plan("run-1", "schedule")
    groups = plan.groups
    not_planned = "worker {} is not planned with these shards"
    # When a worker comes with another worker's shards, shards no worker has, or a number past the
    # planned ones, Then it is turned away, under the number it came with
    assert flow.work("run-1", 0, groups[1]).as_dict() == refused(0, groups[1], not_planned.format(0))
    assert flow.work("run-1", 1, groups[1][:1]).as_dict() == refused(1, groups[1][:1], not_planned.format(1))
    assert flow.work("run-1", 4, groups[0]).as_dict() == refused(4, groups[0], not_planned.format(4))
    # And a worker of another run, while this one is open for work
    assert flow.work("run-0", 0, groups[0]).as_dict() == refused(
        0, groups[0], "run run-0 is not open for work"
    )
    assert store.logs == {} and all(store.load_worker(n).events == 0 for n in range(4))
    # When the run is closed (its Close step ran: it holds the lock still), Then worker 2 is turned away
    flow.close("run-1")
    assert flow.work("run-1", 2, groups[2]).as_dict() == refused(
        2, groups[2], "run run-1 is not open for work"
    )
    # When the run's lock lapses and another run takes it before that run's planner opened it
    store2 = seeded_store()
    first_run_events(store2)
    flow2 = workflow(store2, 4, clock)
    plan2 = flow2.plan("run-1", "schedule")
    assert store2.acquire_lock("run-2", store2.lock_expires + 1, 600)
    # Then a worker of the first run is turned away, writing nothing
    late = flow2.work("run-1", 3, plan2.groups[3])
    assert late.as_dict() == refused(3, plan2.groups[3], "run run-1 is not open for work")
    assert store2.logs == {}


def planned_run_of_four() -> tuple[FakeWorkflowStore, TrackingWorkflow, Plan]:
    """The first run's events, and run-1 of four workers planned over them."""
    store = seeded_store()
    first_run_events(store)
    flow = workflow(store, 4, Clock(RUN_AT))
    return store, flow, flow.plan("run-1", "schedule")


def closed_at_its_next_batch(store: FakeWorkflowStore) -> None:
    """The run is closed (its Close step ran) while a worker applies its next pending batch."""

    def closed_meanwhile(operation: str, count: int) -> bool:
        if operation == "complete_worker_pending":
            store.phase = FINISH
        return False

    store.fault = closed_meanwhile


def test_a_worker_invoked_again_that_finds_its_run_closed_midway_reports_its_notes_and_earlier_counts() -> (
    None
):
    # Given a run of four workers; worker 0 invoked again after an invocation that stopped early, noted
    # something and quarantined 2 items; its run is closed while it applies its next pending batch
    store, flow, plan = planned_run_of_four()
    earlier = flow.work("run-1", 0, plan.groups[0], remaining_ms=lambda: 1_000 if store.logs else 120_000)
    assert earlier.more
    earlier = dataclasses.replace(earlier, errors=["an earlier note"], quarantined=2)
    closed_at_its_next_batch(store)
    # When it goes on
    late = flow.work("run-1", 0, plan.groups[0], earlier=earlier)
    # Then its result is failed with the lock's error, keeps the earlier notes and count, counts nothing
    assert late.as_dict() == {
        "worker": 0,
        "shards": plan.groups[0],
        "events_processed": 0,
        "status": "failed",
        "error": "LockLost: run run-1 is closed",
        "errors": ["an earlier note"],
        "quarantined": 2,
        "more": False,
    }


def test_a_worker_that_finds_its_run_closed_midway_at_its_first_invocation_reports_no_notes_or_counts() -> (
    None
):
    # Given a run of four workers, closed while worker 1 applies its first pending batch
    store, flow, plan = planned_run_of_four()
    closed_at_its_next_batch(store)
    # When worker 1 runs, Then it reports the lock's error, no notes, nothing counted or quarantined
    assert flow.work("run-1", 1, plan.groups[1]).as_dict() == refused(
        1, plan.groups[1], "LockLost: run run-1 is closed"
    )


def test_a_plan_answers_the_state_machine_with_its_run_and_groups_once_retried_or_skipped() -> None:
    # Given the first run's events
    store = seeded_store()
    first_run_events(store)
    clock = Clock(RUN_AT)
    flow = workflow(store, 4, clock)
    # When the planner plans a run of four workers, Then it answers with the run, its trigger, its groups
    plan = flow.plan("run-1", "api")
    groups = [{"worker": n, "shards": shards} for n, shards in enumerate(store.groups)]
    assert len(groups) == 4
    assert plan.as_dict() == {"run_id": "run-1", "trigger": "api", "skip": False, "groups": groups}
    # And the run is recorded running, opened with its trigger and start
    run = store.runs["run-1"]
    assert (run.status, run.trigger, run.started_at, run.finished_at) == (
        "running",
        "api",
        "2026-11-23T10:00:00.000Z",
        None,
    )
    assert (run.events_processed, run.quarantined, list(run.errors)) == (0, 0, [])  # nothing done yet
    assert (store.run_id, store.run_trigger, store.run_started) == (
        "run-1",
        "api",
        "2026-11-23T10:00:00.000Z",
    )
    # When the plan step is retried, Then it answers the same and plans nothing again
    clock.now += timedelta(seconds=30)
    assert flow.plan("run-1", "api").as_dict() == plan.as_dict()
    assert store.runs["run-1"].started_at == store.run_started == "2026-11-23T10:00:00.000Z"
    # When another run is planned meanwhile, Then it is skipped: recorded so, with why and when
    skipped = flow.plan("run-2", "schedule")
    assert skipped.as_dict() == {"run_id": "run-2", "trigger": "schedule", "skip": True, "groups": []}
    other = store.runs["run-2"]
    assert (other.status, other.trigger, other.errors, other.started_at, other.finished_at) == (
        "skipped",
        "schedule",
        ["another run of the tracking workflow holds the lock"],
        "2026-11-23T10:00:30.000Z",
        "2026-11-23T10:00:30.000Z",
    )


def old_shard_events(store: FakeWorkflowStore, at: datetime, shard: str = "00", count: int = 2) -> None:
    """Opens stored under a shard name of the sharding by event id, as an older redirect stored them."""
    for n in range(count):
        event = RawEvent(
            f"old-{shard}-{at:%H%M%S}-{n}", "open", "d1", f"r{n}", None, at, CHROME, None, None, False
        )
        item = raw_events.to_item(event, 30)
        item["shard"] = {"S": shard}
        store.add_raw_item(item)


def workers_planned_at(at: datetime, late: datetime | None = None) -> int:
    """The workers a run planned at ``at`` gets, after a first run at RUN_AT consolidated old-shard opens
    of a minute before it (and ``late``: old-shard opens stored after that run)."""
    store = seeded_store()
    old_shard_events(store, RUN_AT - timedelta(minutes=1))
    first_run_events(store)
    assert len(workflow(store, 4, Clock(RUN_AT)).run("run-1", "schedule").workers) == 1
    if late is not None:
        old_shard_events(store, late, shard="01")
    return len(workflow(store, 4, Clock(at)).plan("run-2", "schedule").groups)


def test_an_old_shard_counts_as_drained_once_its_late_event_window_has_passed_with_nothing_after_it() -> None:
    # Given old-shard opens a minute before a first run, consolidated by it (its checkpoint: 09:59),
    # and the late-event window of 5 minutes
    checkpoint = RUN_AT - timedelta(minutes=1)
    window_ends = checkpoint + timedelta(seconds=WorkflowConfig().late_event_grace_seconds)
    # When the next run is planned within the window, or at its last instant, Then it runs as one
    # worker: a late event may still come into the old shard
    assert workers_planned_at(RUN_AT + timedelta(minutes=1)) == 1
    assert workers_planned_at(window_ends) == 1
    # When it is planned just after the window, Then it splits into four
    assert workers_planned_at(window_ends + timedelta(milliseconds=1)) == 4
    # When an old shard holds an event its checkpoint has not passed (one with no checkpoint yet),
    # Then runs stay one worker however late, until it is consolidated
    assert workers_planned_at(RUN_AT + timedelta(hours=1), late=RUN_AT + timedelta(minutes=30)) == 1
