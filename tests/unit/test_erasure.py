"""Erasing a recipient's tracking data: logs, raw events and state go, aggregates stay, exactly."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

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
