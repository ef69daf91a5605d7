"""A worker of the tracking workflow continues over several invocations within its run (README
"Scale-out"): the state machine invokes ``work`` again while a worker says it has ``more``, until the
run's budget is spent; what is left then is the next run's."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.consolidate.workflow import (
    SAFETY_MARGIN_MS,
    STOPPED_EARLY,
    TrackingWorkflow,
    WorkflowConfig,
    WorkResult,
)
from functions.shared.raw_events import RawEvent
from tests.fakes_workflow import FakeWorkflowStore
from tests.unit.test_workflow import CHROME, RUN_AT, T0, Clock, seeded_store
from tests.unit.test_workflow_quarantine_counts import hostile_store
from tests.unit.test_workflow_workers import _eight_shards, clean, first_run_events  # noqa: F401

BUDGET_S = 600  # the run's budget in these tests
# Shard reads an invocation has time for beyond a round over the worker's shards (an invocation goes on
# at the shard after the last one the previous invocation read).
MORE_READS = 2


pytestmark = pytest.mark.usefixtures("_eight_shards")  # imported above: 8 raw-event shards


def workflow(store: FakeWorkflowStore, workers: int, clock: Clock) -> TrackingWorkflow:
    config = WorkflowConfig(batch_size=3, workers=workers, run_budget_seconds=BUDGET_S)
    return TrackingWorkflow(store, config, clock=clock)


def invocation(reads: int) -> Callable[[], int]:
    """An invocation's remaining time as the workflow asks it (before each shard read): plenty for
    ``reads`` reads, then less than the safety margin."""
    asked = 0

    def remaining_ms() -> int:
        nonlocal asked
        asked += 1
        return 120_000 if asked <= reads else SAFETY_MARGIN_MS - 1

    return remaining_ms


def looped(flow: TrackingWorkflow, run_id: str, worker: int, shards: list[str]) -> list[WorkResult]:
    """What the state machine's Workers iteration does: Work, and Work again while the worker has more,
    carrying its notes."""
    results = [flow.work(run_id, worker, shards, invocation(len(shards) + MORE_READS))]
    while results[-1].more:
        assert len(results) < 1_000, "the loop does not end"
        results.append(
            flow.work(run_id, worker, shards, invocation(len(shards) + MORE_READS), earlier=results[-1])
        )
    return results


@pytest.mark.parametrize("workers", [1, 4])
def test_given_workers_whose_invocation_ends_after_a_few_batches_when_invoked_again_while_they_have_more_then_the_run_is_exact(
    workers: int,
) -> None:
    # Given a planned run whose every worker invocation has time for a few batches only
    store = seeded_store()
    first_run_events(store)
    flow = workflow(store, workers, Clock(RUN_AT))
    plan = flow.plan("run-1", "schedule")
    # When each worker is invoked again while it says it has more
    loops = [looped(flow, "run-1", n, group) for n, group in enumerate(plan.groups)]
    run = flow.finish("run-1", [results[-1].as_dict() for results in loops])
    # Then the workers went on over several invocations, each but the last saying it has more
    assert all(len(results) > 2 for results in loops)
    assert all(r.more and r.error == STOPPED_EARLY for results in loops for r in results[:-1])
    assert all(not results[-1].more and results[-1].error is None for results in loops)
    # And the reports are exactly those of one uninterrupted worker, every event counted once
    assert store.snapshot() == clean(1)
    assert run.status == "succeeded" and STOPPED_EARLY not in run.errors
    assert run.events_processed == len(store.logs) == sum(w["events_processed"] for w in run.workers)
    assert [w["events_processed"] for w in run.workers] == [results[-1].events_processed for results in loops]
    # And a worker's count grew over its invocations: they add up, none counted twice
    for results in loops:
        counts = [r.events_processed for r in results]
        assert counts == sorted(counts) and counts[0] < counts[-1]


def test_given_a_run_whose_budget_is_spent_when_a_worker_stops_then_it_has_no_more_and_the_next_run_takes_the_rest(
    reliability: Any,
) -> None:
    # Given a run of two workers whose invocations take a few batches each, four minutes apart
    store = seeded_store()
    first_run_events(store)
    clock = Clock(RUN_AT)
    flow = workflow(store, 2, clock)
    plan = flow.plan("run-1", "schedule")
    loops = {
        n: [flow.work("run-1", n, group, invocation(len(group) + MORE_READS))]
        for n, group in enumerate(plan.groups)
    }
    # When the run's budget runs out while the workers are looping side by side
    while any(results[-1].more for results in loops.values()):
        clock.now += timedelta(minutes=4)
        for n, results in loops.items():
            if results[-1].more:
                reads = invocation(len(plan.groups[n]) + MORE_READS)
                results.append(flow.work("run-1", n, plan.groups[n], reads, earlier=results[-1]))
    lock_expires = store.lock_expires
    run = flow.finish("run-1", [results[-1].as_dict() for results in loops.values()])
    # Then each worker was invoked at 0, 4 and 8 minutes, and at 12 (past the deadline at 10) stopped at
    # once, with no more to do
    for results in loops.values():
        assert len(results) == 4 and all(r.more for r in results[:3])
        assert results[-1].error == STOPPED_EARLY and not results[-1].more
        assert results[-1].events_processed == results[-2].events_processed
    # And every invocation renewed the run's lock: it held a lock's time from the last one
    assert lock_expires == clock.now.timestamp() + WorkflowConfig().lock_seconds
    # And the run succeeded with what it did, saying it stopped early
    assert run.status == "succeeded" and STOPPED_EARLY in run.errors
    assert 0 < run.events_processed == len(store.logs) < len(clean(1)["logs"])
    # And the next run consolidates what is left: the totals of one clean run, nothing lost or doubled
    clock.now += timedelta(minutes=5)
    rerun = workflow(store, 2, clock).run("run-2", "schedule")
    assert rerun.status == "succeeded" and STOPPED_EARLY not in rerun.errors
    assert store.snapshot() == clean(1)
    assert run.events_processed + rerun.events_processed == len(store.logs)
    reliability.record(
        "Faults",
        "a run of the tracking workflow whose budget runs out while its workers loop over invocations",
        1,
        "the workers stopped taking batches at the run's deadline, at a checkpoint; the next run finished",
        0,
        0,
    )


def test_given_a_worker_invoked_again_when_it_returns_then_its_earlier_notes_are_kept_once() -> None:
    # Given a worker whose first invocation noted something and stopped early
    store = seeded_store()
    first_run_events(store)
    flow = workflow(store, 1, Clock(RUN_AT))
    plan = flow.plan("run-1", "schedule")
    earlier = WorkResult(0, plan.groups[0], 0, "succeeded", STOPPED_EARLY, ["a note", STOPPED_EARLY], 0, True)
    # When it is invoked again and drains its group
    result = flow.work("run-1", 0, plan.groups[0], earlier=earlier)
    # Then its result holds the earlier note, and not the earlier early stop
    assert result.errors == ["a note"]
    assert result.error is None and not result.more
    assert WorkResult.from_dict(result.as_dict()) == result


@pytest.mark.parametrize("workers", [1, 4])
def test_given_workers_quarantining_over_several_invocations_when_they_return_then_each_counts_its_run_once(
    workers: int,
) -> None:
    # Given a run where DynamoDB refuses some writes and a poison event waits, its workers' invocations
    # each having time for a few batches only
    store = hostile_store()
    flow = workflow(store, workers, Clock(RUN_AT))
    plan = flow.plan("run-1", "schedule")
    # When each worker is invoked again while it says it has more
    loops = [looped(flow, "run-1", n, group) for n, group in enumerate(plan.groups)]
    # Then each answer counts what its worker quarantined in the run so far, from its slot: growing
    # over the invocations, each item once
    for results in loops:
        counts = [result.quarantined for result in results]
        assert len(results) > 2 and counts == sorted(counts)
    workers_kept = len(store.quarantined)
    assert sum(results[-1].quarantined for results in loops) == workers_kept > 0
    # (the counts travel in the results the state machine passes on, as each worker returned them)
    assert all(WorkResult.from_dict(result.as_dict()) == result for results in loops for result in results)
    # And the run record counts them and what its merge quarantined, once
    for spread in flow.close("run-1"):
        flow.merge_slice("run-1", spread)
    run = flow.finish("run-1", [results[-1].as_dict() for results in loops])
    assert int(run.quarantined) == len(store.quarantined) >= workers_kept


@given(
    st.builds(
        WorkResult,
        worker=st.integers(0, 63),
        shards=st.lists(st.text(max_size=4)),
        events_processed=st.integers(0, 10**9),
        status=st.sampled_from(["succeeded", "failed"]),
        error=st.none() | st.text(max_size=20),
        errors=st.lists(st.text(max_size=20)),
        quarantined=st.integers(0, 10**6),
        more=st.booleans(),
        next_shard=st.none() | st.text(max_size=4),
    )
)
def test_a_workers_result_reads_back_as_it_was_returned_through_the_state_machine(result: WorkResult) -> None:
    # Given any result a worker returns, When the state machine passes it on as JSON, Then Finish reads it
    assert WorkResult.from_dict(json.loads(json.dumps(result.as_dict()))) == result


def test_given_a_budget_as_long_as_the_lock_when_configured_then_it_is_refused() -> None:
    with pytest.raises(ValueError, match="shorter than its lock"):
        WorkflowConfig(lock_seconds=600, run_budget_seconds=600)


def test_given_a_worker_invoked_again_and_again_when_each_invocation_stops_mid_round_then_every_shard_gets_its_share(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given one worker of eight shards, each holding far more batches than the test reads
    store = seeded_store()
    for n in range(200):
        for k in range(3):
            store.add_raw(
                RawEvent(f"o{n}-{k}", "open", "d1", f"r{n}", None, T0 + timedelta(seconds=n * 3 + k), CHROME,
                         None, "203.0.113.0", False)
            )  # fmt: skip
    batches: dict[str, int] = {}
    read_raw = store.read_raw

    def counted(shard: str, after: str | None, upto: str, limit: int) -> Any:
        read = read_raw(shard, after, upto, limit)
        if upto.endswith("#~") and limit == 3 and read:  # a batch of the worker's rounds
            batches[shard] = batches.get(shard, 0) + 1
        return read

    monkeypatch.setattr(store, "read_raw", counted)
    flow = workflow(store, 1, Clock(RUN_AT))
    (shards,) = flow.plan("run-1", "schedule").groups
    # When it is invoked six times, each invocation having time for a round and three more reads
    results = [flow.work("run-1", 0, shards, invocation(len(shards) + 3))]
    for _ in range(5):
        assert results[-1].more
        results.append(flow.work("run-1", 0, shards, invocation(len(shards) + 3), earlier=results[-1]))
    # Then each invocation went on at the shard after the last one read: every shard read the same
    # number of batches, give or take one
    assert sorted(batches) == sorted(shards)
    assert max(batches.values()) - min(batches.values()) <= 1, batches
    assert sum(batches.values()) == 6 * (len(shards) + 3)
    # And the shard to go on at travels in the result the state machine passes back
    assert WorkResult.from_dict(results[-1].as_dict()) == results[-1]
