"""Erasing a recipient's tracking data: logs, raw events and state go, aggregates stay, exactly."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from functions.consolidate.workflow import WorkResult
from tests.fakes_workflow import Crash, FakeWorkflowStore
from tests.unit.test_workflow import RUN_AT, Clock, campaign, hit, seeded_store, workflow


def names_recipient(store: FakeWorkflowStore, recipient_id: str) -> list[str]:
    """Every place in the store that still names the recipient."""
    places = [f"log {k}" for k, log in store.logs.items() if log.recipient_id == recipient_id]
    places += [
        f"raw {e.sk}" for events in store.raw.values() for e in events if e.recipient_id == recipient_id
    ]
    places += [f"state {k}" for k in store.indicators if k[1] == f"r#{recipient_id}"]
    return places


def test_an_erasure_removes_everything_that_names_the_recipient_and_keeps_the_aggregates() -> None:
    # Given r1's opens and clicks consolidated, and one more click not consolidated yet
    store = seeded_store()
    campaign(store)
    clock = Clock(RUN_AT)
    workflow(store, clock).run("run-1", "schedule")
    stats_before = store.stats("d1")
    hit(store, "r1", "2", person="p1", at=RUN_AT + timedelta(minutes=5))
    # When r1 asks to be erased and the next run goes by
    store.request_erasure("r1")
    clock.now = RUN_AT + timedelta(minutes=10)
    workflow(store, clock).run("run-2", "schedule")
    # Then nothing names r1 any more, the other recipients are untouched, the aggregates stay
    assert names_recipient(store, "r1") == []
    assert names_recipient(store, "r2") != []
    assert store.stats("d1")["total_clicks"] == stats_before["total_clicks"] + 1  # counted, then erased
    done = store.erasures_done["e-1"]
    assert (done.status, done.logs_deleted, done.raw_events_deleted, done.states_deleted) == ("done", 6, 6, 1)
    assert store.erasures_pending == {}


@pytest.mark.parametrize(
    "operation",
    ["recipient_state_keys", "recipient_log_keys", "recipient_raw_keys", "delete_item", "complete_erasure"],
)
def test_an_erasure_interrupted_anywhere_is_finished_by_the_next_run(
    operation: str, reliability: Any
) -> None:
    for nth in range(1, 20):
        store = seeded_store()
        campaign(store)
        clock = Clock(RUN_AT)
        workflow(store, clock).run("run-1", "schedule")
        stats = store.stats("d1")
        store.request_erasure("r1")
        store.fault = lambda op, count, nth=nth: op == operation and count == nth
        try:
            workflow(store, clock).run("crashing", "schedule")
        except Crash:
            pass
        else:
            break
        store.restart()
        clock.now += timedelta(hours=1)
        workflow(store, clock).run("rerun", "schedule")
        left = names_recipient(store, "r1")
        reliability.record(
            "Security",
            f"recipient erasure interrupted at a {operation} call, then run again",
            1,
            f"{len(left)} records still naming the recipient; aggregates unchanged",
            lost=sum(max(0, stats[k] - v) for k, v in store.stats("d1").items()),
            doubled=sum(max(0, v - stats[k]) for k, v in store.stats("d1").items()),
        )
        assert left == []
        assert store.stats("d1") == stats
        assert store.erasures_pending == {} and "e-1" in store.erasures_done


def test_an_erasure_waits_for_a_run_that_consolidated_everything_before_it() -> None:
    # Given the campaign's 13 hits not consolidated yet, and r1 asking to be erased
    store = seeded_store()
    campaign(store)
    store.request_erasure("r1")
    # When a run stops early, its time running low once its first batch is consolidated
    first = workflow(store, batch_size=2).run(
        "run-1", "schedule", remaining_ms=lambda: 1_000 if store.logs else 120_000
    )
    # Then it succeeded but erased nothing: r1's hits it did not reach would never be counted
    assert first.status == "succeeded" and 0 < first.events_processed < 13
    assert list(store.erasures_pending) == ["e-1"] and store.erasures_done == {}
    assert any(event.recipient_id == "r1" for events in store.raw.values() for event in events)
    # When the next run consolidates the rest
    workflow(store, batch_size=2).run("run-2", "schedule")
    # Then r1 is erased and every hit was counted first (test_indicators_count_each_fact_once's figures)
    assert names_recipient(store, "r1") == []
    assert store.erasures_pending == {} and store.erasures_done["e-1"].status == "done"
    stats = store.stats("d1")
    assert (stats["opens"], stats["total_opens"], stats["clicks"], stats["total_clicks"]) == (5, 3, 2, 5)


def test_an_erasure_waits_for_a_run_that_succeeded() -> None:
    # Given the campaign's hits not consolidated yet, and r1 asking to be erased
    store = seeded_store()
    campaign(store)
    store.request_erasure("r1")
    # When a run's only worker is reported failed before it consolidated anything
    flow = workflow(store)
    plan = flow.plan("run-1", "schedule")
    failed = flow.finish("run-1", [WorkResult(0, plan.groups[0], 0, "failed", "States.Timeout")])
    # Then the run failed and erased nothing
    assert failed.status == "failed" and failed.errors == ["States.Timeout"]
    assert list(store.erasures_pending) == ["e-1"] and store.erasures_done == {}
    # When the next run succeeds
    workflow(store, Clock(RUN_AT + timedelta(hours=1))).run("run-2", "schedule")
    # Then r1's hits were counted, then r1 erased
    assert names_recipient(store, "r1") == [] and store.erasures_done["e-1"].status == "done"
    stats = store.stats("d1")
    assert (stats["opens"], stats["total_opens"], stats["clicks"], stats["total_clicks"]) == (5, 3, 2, 5)
