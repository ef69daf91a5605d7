"""The local state machine calls the consolidation function's steps as Step Functions does: plan, the
work steps side by side (retried), finish with the results and the error of a worker that failed."""

from __future__ import annotations

import threading
import time
from typing import Any

from functions.consolidate.config import WORKER_RETRY_ATTEMPTS
from local.context import LocalFunction
from local.state_machine import LocalStateMachine

TRIES = 1 + WORKER_RETRY_ATTEMPTS  # a worker's or slice's tries, as the deployed state machine's Retry

CALLS: list[dict[str, Any]] = []
FAILURES: dict[int, int] = {}  # worker -> attempts that fail before one succeeds
SLICE_FAILURES: dict[int, int] = {}  # slice of the merge -> attempts that fail before one succeeds
MORE: dict[int, int] = {}  # worker -> invocations that stop at their time limit with work left
RUNNING = {"now": 0, "most": 0}
_lock = threading.Lock()


def handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    """A consolidation function that answers each step as the real one does."""
    with _lock:
        CALLS.append(event)
    if event["step"] == "plan":
        groups = [{"worker": n, "shards": [f"r{n:03d}of3"]} for n in range(3)]
        return {
            "run_id": event.get("run_id", "run-x"),
            "trigger": "schedule",
            "skip": False,
            "groups": groups,
        }
    if event["step"] == "work":
        with _lock:
            RUNNING["now"] += 1
            RUNNING["most"] = max(RUNNING["most"], RUNNING["now"])
        time.sleep(0.05)
        with _lock:
            RUNNING["now"] -= 1
            left = FAILURES.get(event["worker"], 0)
            FAILURES[event["worker"]] = left - 1
            more = MORE.get(event["worker"], 0)
            MORE[event["worker"]] = more - 1 if left <= 0 else more
        if left > 0:
            raise RuntimeError(f"worker {event['worker']} fault")
        invoked = [c for c in CALLS if c["step"] == "work" and c["worker"] == event["worker"]]
        return {
            "worker": event["worker"],
            "shards": event["shards"],
            "events_processed": 10 + event["worker"] + len(invoked),
            "status": "succeeded",
            "errors": [*event.get("errors", []), f"note {len(invoked)}"],
            "quarantined": event.get("quarantined", 0) + 1,
            "more": more > 0,
            "next_shard": f"next {len(invoked)}",
        }
    if event["step"] == "close":
        return {"run_id": event["run_id"], "slices": [{"slice": n} for n in range(4)]}
    if event["step"] == "merge_slice":
        with _lock:
            left = SLICE_FAILURES.get(event["slice"], 0)
            SLICE_FAILURES[event["slice"]] = left - 1
        if left > 0:
            raise RuntimeError(f"slice {event['slice']} fault")
        return {"run_id": event["run_id"], "slice": event["slice"]}
    return {"run_id": event["run_id"], "status": "failed" if "error" in event else "succeeded"}


def machine(containers: int) -> LocalStateMachine:
    CALLS.clear()
    FAILURES.clear()
    SLICE_FAILURES.clear()
    MORE.clear()
    RUNNING.update(now=0, most=0)
    return LocalStateMachine(
        [
            LocalFunction(f"c{n}", "tests.unit.test_local_state_machine.handler", timeout_seconds=5)
            for n in range(containers)
        ]
    )


def test_the_workers_run_side_by_side_and_the_finisher_gets_their_results() -> None:
    # Given three containers, When an API-started execution runs
    answer = machine(3).invoke({"run_id": "run-1", "trigger": "api"})
    # Then plan, three work steps at once, and finish with the three results, in that order
    assert CALLS[0] == {"step": "plan", "run_id": "run-1", "trigger": "api"}
    assert sorted(c["worker"] for c in CALLS[1:4]) == [0, 1, 2] and RUNNING["most"] == 3
    finish = CALLS[-1]
    assert finish["step"] == "finish" and "error" not in finish
    assert [w["events_processed"] for w in finish["workers"]] == [11, 12, 13]
    assert answer["status"] == "succeeded"


def test_a_failed_attempt_is_retried_and_a_worker_failing_for_good_fails_the_run() -> None:
    # Given worker 1 failing once and worker 2 on every attempt
    sm = machine(3)
    FAILURES.update({1: 1, 2: 99})
    # When an execution runs
    answer = sm.invoke({})
    # Then worker 1's retry succeeded, worker 2 was tried as often as AWS tries it, the finisher got its error
    workers = [c["worker"] for c in CALLS if c["step"] == "work"]
    assert workers.count(1) == 2 and workers.count(2) == TRIES
    finish = CALLS[-1]
    assert [w["worker"] for w in finish["workers"]] == [0, 1]
    assert finish["error"] == {"Error": "RuntimeError", "Cause": "worker 2 fault"}
    assert answer["status"] == "failed"


def test_the_slices_of_the_merge_run_between_the_workers_and_the_finisher_each_retried() -> None:
    # Given slice 1 failing once and slice 3 on every attempt
    sm = machine(2)
    SLICE_FAILURES.update({1: 1, 3: 99})
    # When an execution runs
    answer = sm.invoke({"run_id": "run-1"})
    # Then close comes after the work steps, every slice after close, finish last
    steps = [call["step"] for call in CALLS]
    assert steps.index("close") == 4 and steps[-1] == "finish"
    slices = [call["slice"] for call in CALLS if call["step"] == "merge_slice"]
    assert all(call["run_id"] == "run-1" for call in CALLS[4:])
    # And a failed slice is tried again (TRIES attempts at most); one failing for good leaves the
    # slice to the finisher without failing the run
    assert sorted(slices) == [0, 1, 1, 2, *[3] * TRIES]
    assert answer["status"] == "succeeded" and "error" not in CALLS[-1]


def test_a_worker_with_more_to_do_is_invoked_again_for_its_group_with_its_notes_until_it_has_none() -> None:
    # Given worker 1 stopping at its invocation's limit twice with work left (once failing on the way)
    sm = machine(3)
    MORE.update({1: 2})
    FAILURES.update({1: 1})
    # When an execution runs
    answer = sm.invoke({"run_id": "run-1"})
    # Then worker 1 was invoked again for the same group, carrying what it noted, until it had no more
    again = [c for c in CALLS if c["step"] == "work" and c["worker"] == 1]
    assert len(again) == 4  # a failed attempt retried, then two more invocations
    assert all(c["shards"] == ["r001of3"] and c["run_id"] == "run-1" for c in again)
    assert [c.get("errors") for c in again] == [None, None, ["note 2"], ["note 2", "note 3"]]
    assert all("quarantined" not in c for c in again)  # the worker's slot holds its count
    assert [c.get("next_shard") for c in again] == [None, None, "next 2", "next 3"]
    # And the finisher got its last result only, with every note; the other workers ran once
    finish = CALLS[-1]
    assert [w["worker"] for w in finish["workers"]] == [0, 1, 2]
    assert finish["workers"][1]["errors"] == ["note 2", "note 3", "note 4"]
    assert finish["workers"][1]["more"] is False and "error" not in finish
    assert [c["worker"] for c in CALLS if c["step"] == "work"].count(0) == 1
    assert answer["status"] == "succeeded"
