"""The consolidation function's events, exactly as the state machine sends them (README "Scale-out")."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from functions.consolidate import handler
from functions.consolidate.workflow import TrackingWorkflow, WorkflowConfig
from functions.shared import settings
from functions.shared.observability import MetricNames
from tests.apigw import FakeContext
from tests.fakes_workflow import Crash, FakeWorkflowStore
from tests.unit.test_workflow import RUN_AT, Clock, seeded_store
from tests.unit.test_workflow_workers import first_run_events


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeWorkflowStore]:
    """The handler's workflow on an in-memory store, with MSGTRACK_WORKFLOW_WORKERS=3 and 8 shards."""
    monkeypatch.setenv("MSGTRACK_WORKFLOW_WORKERS", "3")
    monkeypatch.setenv("MSGTRACK_RAW_EVENT_SHARDS", "8")
    settings.reset_caches()
    fake = seeded_store()
    first_run_events(fake, recipients=12)
    workers = settings.settings().workflow_workers
    monkeypatch.setattr(
        handler,
        "_workflow",
        lambda: TrackingWorkflow(
            fake, WorkflowConfig(workers=workers), clock=Clock(RUN_AT + timedelta(hours=1))
        ),
    )
    yield fake
    settings.reset_caches()


def step(event: dict[str, object]) -> dict[str, object]:
    return dict(handler.lambda_handler(event, FakeContext()))


def test_plan_work_and_finish_answer_exactly_what_the_state_machine_reads(store: FakeWorkflowStore) -> None:
    # When the state machine plans a scheduled run (no run id), works each group and finishes
    plan = step({"step": "plan", "trigger": "schedule"})
    assert set(plan) == {"run_id", "trigger", "skip", "groups"}
    assert plan["trigger"] == "schedule" and plan["skip"] is False
    groups = plan["groups"]
    assert isinstance(groups, list) and [g["worker"] for g in groups] == [0, 1, 2]
    results = [step({"step": "work", "run_id": plan["run_id"], **group}) for group in groups]
    for group, result in zip(groups, results, strict=True):
        assert set(result) == {"worker", "shards", "events_processed", "status", "more"}
        assert (result["worker"], result["shards"], result["status"], result["more"]) == (
            group["worker"],
            group["shards"],
            "succeeded",
            False,
        )
    finished = step({"step": "finish", "run_id": plan["run_id"], "workers": results})
    # Then the run is recorded with its workers, their events adding up to the run's
    assert finished == {
        "run_id": plan["run_id"],
        "status": "succeeded",
        "events_processed": sum(int(r["events_processed"]) for r in results),  # type: ignore[call-overload]
    }
    assert finished["events_processed"] == len(store.logs)
    assert len(store.runs[str(plan["run_id"])].workers) == 3
    # And a plan while another run holds the lock is skipped, with no groups
    store.acquire_lock("other", (RUN_AT + timedelta(hours=1)).timestamp(), 600)
    assert step({"step": "plan", "run_id": "run-x", "trigger": "api"}) == {
        "run_id": "run-x",
        "trigger": "api",
        "skip": True,
        "groups": [],
    }


def test_finish_with_the_state_machines_error_records_a_failed_run(store: FakeWorkflowStore) -> None:
    plan = step({"step": "plan", "run_id": "run-1", "trigger": "api"})
    results = [step({"step": "work", "run_id": "run-1", **group}) for group in plan["groups"][:2]]  # type: ignore[index]
    error = {"Error": "States.Timeout", "Cause": "worker 2 timed out"}
    finished = step({"step": "finish", "run_id": "run-1", "workers": results, "error": error})
    assert finished["status"] == "failed"
    run = store.runs["run-1"]
    assert run.errors[0] == "States.Timeout: worker 2 timed out"
    assert [w["status"] for w in run.workers] == ["succeeded", "succeeded", "failed"]
    assert store.lock_owner is None


def test_an_event_without_a_step_is_a_whole_run_and_an_unknown_step_is_refused(
    store: FakeWorkflowStore,
) -> None:
    answer = step({"run_id": "run-1", "trigger": "api"})
    assert answer["status"] == "succeeded" and answer["events_processed"] == len(store.logs) > 0
    with pytest.raises(handler.BadStep, match="unknown step"):
        step({"step": "merge", "run_id": "run-2"})
    with pytest.raises(handler.BadStep, match="needs a run_id"):
        step({"step": "work", "worker": 0, "shards": []})


def test_a_worker_invoked_again_returns_the_notes_it_carried_and_refuses_malformed_ones(
    store: FakeWorkflowStore,
) -> None:
    # Given a planned run, When worker 0 is invoked again with what its earlier invocation noted
    plan = step({"step": "plan", "run_id": "run-1", "trigger": "api"})
    group = plan["groups"][0]  # type: ignore[index]
    result = step({"step": "work", "run_id": "run-1", **group, "errors": ["a note"]})
    # Then its result carries the notes on to the finisher
    assert (result["errors"], result.get("quarantined"), result["more"]) == (["a note"], None, False)
    # And carried notes of the wrong shape are the caller's fault
    with pytest.raises(handler.BadStep, match="earlier invocations"):
        step({"step": "work", "run_id": "run-1", **group, "errors": "a note"})
    # And so is a shard to go on at that is not of the group
    for shard in ("r999of8", 3):
        with pytest.raises(handler.BadStep, match="next_shard"):
            step({"step": "work", "run_id": "run-1", **group, "next_shard": shard})
    assert (
        step({"step": "work", "run_id": "run-1", **group, "next_shard": group["shards"][-1]})["more"] is False
    )


def test_close_and_the_merge_slices_put_what_finish_would_have_merged_once(store: FakeWorkflowStore) -> None:
    # Given a planned run whose three workers have worked
    plan = step({"step": "plan", "trigger": "schedule"})
    run_id = plan["run_id"]
    results = [step({"step": "work", "run_id": run_id, **group}) for group in plan["groups"]]  # type: ignore[union-attr, dict-item]
    # When the state machine closes the run and merges every slice, slice 2 twice (a retry)
    closed = step({"step": "close", "run_id": run_id})
    assert closed == {"run_id": run_id, "slices": [{"slice": n} for n in range(16)]}
    for entry in [*closed["slices"], {"slice": 2}]:  # type: ignore[list-item]
        assert step({"step": "merge_slice", "run_id": run_id, **entry}) == {"run_id": run_id, **entry}
    # Then every person is in place before finish, which merges only the statistics
    persons = {key for key in store.indicators if key[1].startswith("p#")}
    assert persons and len(store.slices) == 16
    step({"step": "finish", "run_id": run_id, "workers": results})
    assert store.snapshot() == clean_totals()
    assert store.slices == {} and store.partials == {}
    # And a slice out of range or missing is refused
    for bad in ({"slice": 16}, {"slice": "1"}, {}):
        with pytest.raises(handler.BadStep):
            step({"step": "merge_slice", "run_id": run_id, **bad})


def clean_totals() -> dict[str, object]:
    """One worker's run over the same events, in one process."""
    alone = seeded_store()
    first_run_events(alone, recipients=12)
    TrackingWorkflow(alone, WorkflowConfig(workers=1), clock=Clock(RUN_AT + timedelta(hours=1))).run(
        "alone", "schedule"
    )
    return alone.snapshot()


class RecordedMetrics:
    """The metrics the handler adds, by name (in place of Powertools' metric set)."""

    def __init__(self) -> None:
        self.added: list[tuple[str, float]] = []

    def add_metric(self, *, name: str, unit: object, value: float) -> None:
        self.added.append((name, value))

    def names(self) -> list[str]:
        return sorted(name for name, _ in self.added if name != MetricNames.WORKFLOW_RUN_DURATION)


def run_metrics(outcome: str) -> list[str]:
    """The metrics a recorded run emits (but its duration), as RecordedMetrics.names lists them."""
    return sorted([MetricNames.EVENTS_PROCESSED, outcome, MetricNames.WRITES_QUARANTINED])


@pytest.mark.parametrize("failed", [False, True])
@pytest.mark.parametrize("dies_at", [None, "release_lock"])
def test_given_a_finished_run_when_finish_is_retried_then_its_metrics_are_emitted_once(
    store: FakeWorkflowStore, monkeypatch: pytest.MonkeyPatch, dies_at: str | None, failed: bool
) -> None:
    # Given a run whose Finish recorded it, succeeded or failed (or died at the lock release, after
    # saving its record)
    recorded = RecordedMetrics()
    monkeypatch.setattr(handler, "metrics", recorded)
    plan = step({"step": "plan", "trigger": "schedule"})
    results = [step({"step": "work", "run_id": plan["run_id"], **group}) for group in plan["groups"]]  # type: ignore[dict-item]
    finish = {"step": "finish", "run_id": plan["run_id"], "workers": results}
    if failed:
        finish["error"] = {"Error": "States.Timeout", "Cause": "the run's budget"}
    if dies_at:
        store.fault = lambda operation, count: operation == dies_at
        with pytest.raises(Crash):
            step(finish)
        store.restart()
    else:
        step(finish)
    # When Step Functions retries Finish, twice (its answer lost each time)
    step(finish)
    step(finish)
    # Then the run's metrics were emitted once: by the Finish that completed it; its record is as it
    # left it
    assert recorded.names() == run_metrics(
        MetricNames.WORKFLOW_RUNS_FAILED if failed else MetricNames.WORKFLOW_RUNS_SUCCEEDED
    )
    assert store.lock_owner is None
    run = store.runs[str(plan["run_id"])]
    assert run.errors == (["States.Timeout: the run's budget"] if failed else [])


def test_given_a_run_whose_lock_the_next_run_took_when_its_finish_runs_then_it_is_counted_failed_once(
    store: FakeWorkflowStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a run whose workers finished, then stalled until the next run took its expired lock
    recorded = RecordedMetrics()
    monkeypatch.setattr(handler, "metrics", recorded)
    plan = step({"step": "plan", "trigger": "schedule"})
    results = [step({"step": "work", "run_id": plan["run_id"], **group}) for group in plan["groups"]]  # type: ignore[dict-item]
    store.lock_owner = "the-next-run"
    # When its Finish runs, and is retried
    finish = {"step": "finish", "run_id": plan["run_id"], "workers": results}
    answers = [step(finish), step(finish)]
    # Then it answers failed, and its metrics say one failed run
    assert [answer["status"] for answer in answers] == ["failed", "failed"]
    assert recorded.names() == run_metrics(MetricNames.WORKFLOW_RUNS_FAILED)


@pytest.mark.parametrize("carried", [2, -1, "2"])
def test_given_a_work_on_event_of_an_execution_started_before_the_deploy_when_invoked_then_its_quarantined_is_ignored(
    store: FakeWorkflowStore, carried: object
) -> None:
    # Given a planned run, and a Work on event as an older state machine sent it: carrying the count of
    # quarantined items its worker returned (which the worker's slot holds now), whatever it holds
    plan = step({"step": "plan", "trigger": "schedule"})
    group = plan["groups"][0]  # type: ignore[index]
    # When the handler gets it (an execution in flight across the deploy)
    answer = step({"step": "work", "run_id": plan["run_id"], **group, "errors": [], "quarantined": carried})
    # Then it is worked as any other; the count it answers is its slot's (nothing quarantined here)
    assert answer["status"] == "succeeded" and "quarantined" not in answer
