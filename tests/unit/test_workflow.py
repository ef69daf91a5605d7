"""The tracking workflow with an in-memory store: counts, exactly-once, crashes, late events, lock."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.consolidate.store import PendingBatch
from functions.consolidate.workflow import SAFETY_MARGIN_MS, TrackingWorkflow, WorkflowConfig
from functions.shared import raw_events, timeutil
from functions.shared.models import MessageModel, RunModel, TrackedUrlModel
from functions.shared.raw_events import RawEvent
from tests.fakes_workflow import Crash, FakeWorkflowStore

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
RUN_AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)
APPLE_MAIL = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"

URLS = {"1": "click", "2": "click", "3": "opt_out", "4": "mirror", "5": "click"}


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def seeded_store() -> FakeWorkflowStore:
    store = FakeWorkflowStore()
    for url_id, category in URLS.items():
        store.add_url(
            TrackedUrlModel(
                delivery_id="d1",
                url_id=url_id,
                url=f"https://shop.example/{url_id}",
                label=f"link {url_id}",
                category=category,
                tracked=url_id != "5",
            )
        )
    for n in range(1, 8):
        domain = "gmail.com" if n % 2 else "example.org"
        store.add_message(
            MessageModel(
                delivery_id="d1", sk=f"msg#r{n}", recipient_id=f"r{n}", email_domain=domain, rendered_at="x"
            )
        )
    return store


_sequence = iter(range(10**6))


def hit(
    store: FakeWorkflowStore,
    recipient: str,
    url_id: str | None = None,
    *,
    person: str | None = None,
    ua: str = CHROME,
    proof: bool = False,
    at: datetime | None = None,
) -> None:
    n = next(_sequence)
    store.add_raw(
        RawEvent(
            event_id=f"e{n:08d}",
            kind="click" if url_id else "open",
            delivery_id="d1",
            recipient_id=recipient,
            url_id=url_id,
            at=at or T0 + timedelta(seconds=n % 3000),
            user_agent=ua,
            person_id=person,
            ip="203.0.113.0",
            proof=proof,
        )
    )


def campaign(store: FakeWorkflowStore) -> None:
    """13 hits whose indicators are worked out by hand in test_indicators_count_each_fact_once."""
    global _sequence
    _sequence = iter(range(10**6))  # the same event ids and times every time
    hit(store, "r1", ua=APPLE_MAIL)  # open
    hit(store, "r1", "1", person="p1")
    hit(store, "r1", "1", person="p1")  # same link again
    hit(store, "r1", "2", person="p1", ua=IPHONE)
    hit(store, "r2", "1", person="p2")  # a click without an open
    hit(store, "r3", ua=APPLE_MAIL)
    hit(store, "r3", ua=APPLE_MAIL)
    hit(store, "r1", "1", person="p3")  # r1's message forwarded, clicked in another browser
    hit(store, "r4", "3", person="p4")  # opt-out
    hit(store, "r5", "4", person="p5")  # mirror page, twice
    hit(store, "r5", "4", person="p5")
    hit(store, "r6", "5", person="p6")  # untracked URL: logged, not counted
    hit(store, "r7", "1", person="p7", proof=True)  # proof: logged, not counted


def workflow(store: FakeWorkflowStore, clock: Clock | None = None, batch_size: int = 100) -> TrackingWorkflow:
    return TrackingWorkflow(store, WorkflowConfig(batch_size=batch_size), clock=clock or Clock(RUN_AT))


def test_the_stats_item_says_when_a_batch_last_changed_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a campaign's raw events, and the clock at 10:07:30.25 when the workflow consolidates them
    store = seeded_store()
    campaign(store)
    monkeypatch.setattr(timeutil, "now", lambda: datetime(2026, 11, 23, 10, 7, 30, 250_000, tzinfo=UTC))
    # When the workflow runs
    workflow(store).run("run-1", "schedule")
    # Then the delivery's stats item carries that time (operators read it in the table: how fresh it is)
    assert store.indicators[("d1", "stats")].updated_at == "2026-11-23T10:07:30.250Z"


def test_an_open_stored_with_a_url_id_is_logged_and_counted_as_an_open_of_no_link() -> None:
    # Given an open whose raw event names a tracked URL (the pixel's token names none: written around
    # the redirect, by hand or an older version)
    store = seeded_store()
    store.add_raw(RawEvent("e1", "open", "d1", "r1", "1", T0, CHROME, None, "203.0.113.0", False))
    # When the workflow runs
    workflow(store).run("run-1", "schedule")
    # Then it is an open of the message: logged without the link, counted as an open and no click
    [log] = store.logs.values()
    assert (log.type, log.url_id, log.url, log.label) == ("open", None, None, None)
    assert store.stats("d1")["opens"] == 1 and store.stats("d1")["total_clicks"] == 0


def test_a_clicks_log_names_its_link_and_expires_when_the_retention_ends() -> None:
    # Given a click on link 2 at 09:00, and a workflow keeping tracking logs 30 days
    store = seeded_store()
    store.add_raw(RawEvent("e1", "click", "d1", "r1", "2", T0, CHROME, "p1", "203.0.113.0", False))
    config = WorkflowConfig(batch_size=100, log_ttl_days=30)
    # When the workflow runs
    TrackingWorkflow(store, config, clock=Clock(RUN_AT)).run("run-1", "schedule")
    # Then its log names the link (id, URL, label) and expires 30 days after the click
    [log] = store.logs.values()
    assert (log.type, log.url_id, log.url, log.label) == ("click", "2", "https://shop.example/2", "link 2")
    assert log.expires_at == int(datetime(2026, 12, 23, 9, 0, tzinfo=UTC).timestamp())


def test_a_deleted_deliverys_events_are_not_counted_whatever_other_deliveries_come_between() -> None:
    # Given d1 deleted, and opens of d1 and of d2 (a live delivery) interleaved, read one at a time
    store = seeded_store()
    store.add_url(
        TrackedUrlModel(
            delivery_id="d2", url_id="1", url="https://shop.example/", label="shop", category="click"
        )
    )
    store.delete_delivery("d1")
    for n in range(12):
        delivery = ("d1", "d2")[n % 2]
        store.add_raw(
            RawEvent(
                f"e{n}", "open", delivery, f"r{n}", None, T0 + timedelta(seconds=n), CHROME, None, None, False
            )
        )
    # When the workflow runs
    TrackingWorkflow(store, WorkflowConfig(batch_size=1), clock=Clock(RUN_AT)).run("run-1", "schedule")
    # Then d2's six opens count, and none of d1's
    assert store.stats("d2")["opens"] == 6
    assert ("d1", "stats") not in store.indicators or store.stats("d1")["opens"] == 0


def test_indicators_count_each_fact_once() -> None:
    # Given a campaign's raw events
    store = seeded_store()
    campaign(store)
    # When the workflow runs
    run = workflow(store).run("run-1", "schedule")
    # Then every hit is logged and the indicators match the hand count
    assert run.status == "succeeded"
    assert run.events_processed == 13
    assert len(store.logs) == 13
    assert store.stats("d1") == {
        "opens": 5,  # r1 r2 r3 r4 r5 (r6 untracked, r7 proof)
        "total_opens": 3,
        "clicks": 2,  # r1 r2
        "person_clicks": 3,  # p1 p2 p3
        "total_clicks": 5,
        "opt_outs": 1,
        "mirror_page_views": 2,
    }
    url1 = store.indicators[("d1", "url#1")]
    assert (url1.clicks, url1.distinct_clicks) == (4, 2)
    url4 = store.indicators[("d1", "url#4")]
    assert (url4.clicks, url4.distinct_clicks) == (2, 1)
    assert ("d1", "url#5") not in store.indicators
    types = sorted(log.type for log in store.logs.values())
    assert types.count("open") == 3 and types.count("opt_out") == 1 and types.count("mirror") == 2
    proof_logs = [log for log in store.logs.values() if log.proof]
    assert len(proof_logs) == 1 and not proof_logs[0].counted


def test_breakdowns_and_timeline() -> None:
    store = seeded_store()
    campaign(store)
    workflow(store).run("run-1", "schedule")
    stats = store.indicators[("d1", "stats")]
    breakdowns = stats.breakdowns.as_dict()
    # opens: r1 and r3 twice in Apple Mail on a Mac; clicks: r1 twice (p1), r2 and the forward (p3) in
    # Chrome on Windows, r1 once on an iPhone (the opt-out and the mirror page views are no clicks)
    assert breakdowns["browser"] == {
        "Apple Mail": {"opens": 3, "clicks": 0},
        "Chrome": {"opens": 0, "clicks": 4},
        "Mobile Safari": {"opens": 0, "clicks": 1},
    }
    assert breakdowns["os"] == {
        "Mac OS X": {"opens": 3, "clicks": 0},
        "Windows": {"opens": 0, "clicks": 4},
        "iOS": {"opens": 0, "clicks": 1},
    }
    assert breakdowns["device"] == {"desktop": {"opens": 3, "clicks": 4}, "mobile": {"opens": 0, "clicks": 1}}
    # domains: odd recipients at gmail.com (r1 r3 r5 opened; r1 clicked), even at example.org (r2 r4)
    assert breakdowns["domain"]["gmail.com"] == {"opens": 3, "clicks": 1}
    assert breakdowns["domain"]["example.org"] == {"opens": 2, "clicks": 1}
    hours = [v for k, v in store.indicators.items() if k[1].startswith("hour#")]
    assert sum(h.opens for h in hours) == 3 and sum(h.clicks for h in hours) == 5


def test_a_second_run_changes_nothing() -> None:
    store = seeded_store()
    campaign(store)
    workflow(store).run("run-1", "schedule")
    before = store.snapshot()
    run = workflow(store).run("run-2", "schedule")
    assert run.events_processed == 0
    assert store.snapshot() == before


def lost_and_doubled(expected: dict[str, Any], actual: dict[str, Any]) -> tuple[int, int]:
    """Tracking logs missing, and logs plus indicator units above the clean run's."""
    expected_logs, actual_logs = dict(expected["logs"]), dict(actual["logs"])
    lost = len(set(expected_logs) - set(actual_logs))
    doubled = len(set(actual_logs) - set(expected_logs))
    expected_stats = json.loads(dict(expected["indicators"]).get(("d1", "stats"), "{}"))
    actual_stats = json.loads(dict(actual["indicators"]).get(("d1", "stats"), "{}"))
    for name, value in actual_stats.items():
        if "N" in value:
            doubled += max(0, int(value["N"]) - int(expected_stats.get(name, {"N": "0"})["N"]))
            lost += max(0, int(expected_stats.get(name, {"N": "0"})["N"]) - int(value["N"]))
    return lost, doubled


def clean_snapshot(batch_size: int) -> dict[str, Any]:
    store = seeded_store()
    campaign(store)
    workflow(store, batch_size=batch_size).run("clean", "schedule")
    return store.snapshot()


FAULT_POINTS = [
    "read_raw",
    "load_indicators",
    "put_pending_chunk",
    "save_worker_pending",
    "put_item",
    "complete_worker_pending",
    "renew_lock",
    "open_run",
    "start_worker",
    "load_worker",
    "set_phase",
]


@pytest.mark.parametrize("operation", FAULT_POINTS)
def test_a_crash_at_any_point_then_a_rerun_gives_the_clean_totals(operation: str, reliability: Any) -> None:
    expected = clean_snapshot(batch_size=2)
    crashes = 0
    for nth in range(1, 60):
        # Given a run that dies at the nth call of an operation (nothing after it runs, not even cleanup)
        store = seeded_store()
        campaign(store)
        clock = Clock(RUN_AT)
        store.fault = lambda op, count, nth=nth: op == operation and count == nth
        try:
            workflow(store, clock, batch_size=2).run("crashing", "schedule")
        except Crash:
            crashes += 1
        else:
            break  # fewer calls than nth: every point has been tried
        # When a new process runs again once the dead run's lock has expired
        store.restart()
        clock.now += timedelta(hours=1)
        rerun = workflow(store, clock, batch_size=2).run("rerun", "schedule")
        # Then the totals are exactly those of one clean run
        lost, doubled = lost_and_doubled(expected, store.snapshot())
        reliability.record(
            "Faults",
            f"tracking workflow killed at a {operation} call (every call in turn), then run again",
            1,
            "crashed run left tracking logs and at most a pending batch; the next run replayed it, "
            "read the unflushed events again and finished",
            lost,
            doubled,
        )
        assert rerun.status == "succeeded"
        assert store.snapshot() == expected, f"crash at {operation} call {nth}"
        assert store.pending is None
        # And every run is recorded finished: the dead one failed (or succeeded, if it died after that)
        assert {run.status for run in store.runs.values()} <= {"succeeded", "failed"}
    assert crashes > 0


def test_a_run_whose_planner_died_before_opening_it_is_recorded_failed_by_the_next_with_its_notes() -> None:
    # Given a run left "running" by a planner that died before it opened the run, with the 20 notes a
    # run keeps at most, and its lock expired
    store = seeded_store()
    notes = [f"note {n}" for n in range(20)]
    store.runs["dead"] = RunModel(
        sk="dead", status="running", trigger="schedule", started_at=timeutil.iso(RUN_AT), errors=notes
    )
    store.lock_owner, store.lock_expires = "dead", RUN_AT.timestamp() + 60
    # When the next run takes the lock
    clock = Clock(RUN_AT + timedelta(hours=1))
    workflow(store, clock).run("next", "schedule")
    # Then the dead run is recorded failed when the next one found it, its last notes kept and why
    dead = store.runs["dead"]
    assert (dead.status, dead.finished_at) == ("failed", timeutil.iso(clock.now))
    assert dead.errors == [
        *notes[1:],
        "interrupted while planning, before its workers started; run next took the lock after it expired",
    ]
    assert store.runs["next"].status == "succeeded"


@pytest.mark.parametrize("trigger", ["schedule", "api"])
def test_a_runs_record_says_what_started_it_and_when(trigger: str) -> None:
    # Given a campaign's events
    store = seeded_store()
    campaign(store)
    # When a run is started by the hourly rule or on demand
    run = workflow(store).run("run-1", trigger)
    # Then its record says so, and when it started and finished
    recorded = store.runs["run-1"]
    assert (recorded.status, recorded.trigger) == ("succeeded", trigger)
    assert recorded.started_at == recorded.finished_at == "2026-11-23T10:00:00.000Z"  # the fake clock
    assert run.trigger == trigger


def test_a_failed_run_is_recorded_with_its_error(reliability: Any) -> None:
    store = seeded_store()
    campaign(store)
    store.die_on_fault = False  # a transient error: the process lives on and records the failure
    store.fault = lambda op, count: op == "put_item" and count == 3
    with pytest.raises(Crash):
        workflow(store).run("run-1", "schedule")
    run = store.runs["run-1"]
    assert run.status == "failed"
    assert run.errors[0] == "Crash: injected fault in put_item (call 3)"  # the error's type, for operators
    assert store.lock_owner is None  # released, so the next run need not wait for the expiry
    store.restart()
    workflow(store).run("run-2", "schedule")
    lost, doubled = lost_and_doubled(clean_snapshot(batch_size=100), store.snapshot())
    reliability.record(
        "Faults",
        "transient DynamoDB error in the middle of a run",
        1,
        "run recorded failed with its error, lock released, next run finished the work",
        lost,
        doubled,
    )
    assert store.snapshot() == clean_snapshot(batch_size=100)


def test_late_events_are_counted_by_the_next_run_once() -> None:
    # Given a run that consolidated the events recorded before it started
    store = seeded_store()
    campaign(store)
    clock = Clock(RUN_AT)
    workflow(store, clock).run("run-1", "schedule")
    # When an event timed before that run only becomes visible afterwards (a slow write)
    hit(store, "r2", "2", person="p2", at=RUN_AT - timedelta(seconds=30))
    clock.now += timedelta(hours=1)
    second = workflow(store, clock).run("run-2", "schedule")
    third = workflow(store, clock).run("run-3", "schedule")
    # Then the next run counts it, and only once
    assert second.events_processed == 1
    assert third.events_processed == 0
    assert store.indicators[("d1", "url#2")].clicks == 2


def test_a_links_first_and_last_click_are_its_earliest_and_latest_whatever_order_the_runs_see_them_in() -> (
    None
):
    # Given a run at 09:10 that consolidated two clicks on link 1, at 09:07 and 09:09
    store = seeded_store()
    for recipient, minute in (("r1", 7), ("r2", 9)):
        hit(store, recipient, "1", person=f"p-{recipient}", at=T0 + timedelta(minutes=minute))
    clock = Clock(T0 + timedelta(minutes=10))
    workflow(store, clock).run("run-1", "schedule")
    # When two clicks timed before it, at 09:06 and 09:08, only become visible afterwards (slow writes)
    # and the next run consolidates them
    for recipient, minute in (("r3", 6), ("r4", 8)):
        hit(store, recipient, "1", person=f"p-{recipient}", at=T0 + timedelta(minutes=minute))
    clock.now = T0 + timedelta(minutes=20)
    second = workflow(store, clock).run("run-2", "schedule")
    # Then the link's first click is the earliest of the four and its last click the latest
    assert second.events_processed == 2
    url = store.indicators[("d1", "url#1")]
    assert (url.clicks, url.first_click, url.last_click) == (
        4,
        "2026-11-23T09:06:00.000Z",
        "2026-11-23T09:09:00.000Z",
    )


def test_events_after_the_run_started_wait_for_the_next_run() -> None:
    store = seeded_store()
    campaign(store)
    hit(store, "r3", "2", person="p3b", at=RUN_AT + timedelta(seconds=5))
    clock = Clock(RUN_AT)
    first = workflow(store, clock).run("run-1", "schedule")
    clock.now = RUN_AT + timedelta(minutes=1)
    second = workflow(store, clock).run("run-2", "schedule")
    assert (first.events_processed, second.events_processed) == (13, 1)


def test_a_run_that_finds_the_lock_taken_is_skipped_and_changes_nothing() -> None:
    store = seeded_store()
    campaign(store)
    assert store.acquire_lock("other-run", RUN_AT.timestamp(), 600)
    run = workflow(store).run("run-1", "api")
    assert run.status == "skipped"
    assert store.logs == {} and store.indicators == {}
    assert store.runs["run-1"].status == "skipped"


def test_a_run_near_its_time_limit_stops_at_a_checkpoint_and_the_next_one_finishes(reliability: Any) -> None:
    store = seeded_store()
    campaign(store)
    # the time runs low once the first batch is consolidated
    first = workflow(store, batch_size=2).run(
        "run-1", "schedule", remaining_ms=lambda: 1_000 if store.logs else 120_000
    )
    assert first.status == "succeeded" and 0 < first.events_processed < 13
    assert "time limit" in first.errors[0]
    workflow(store, batch_size=2).run("run-2", "schedule")
    lost, doubled = lost_and_doubled(clean_snapshot(batch_size=2), store.snapshot())
    reliability.record(
        "Faults",
        "more events than fit in one invocation (time budget runs out)",
        1,
        "run stopped at a checkpoint before the limit; the next invocation finished",
        lost,
        doubled,
    )
    assert store.snapshot() == clean_snapshot(batch_size=2)


def fallback_event(n: int, at: datetime, url_id: str | None = "2") -> RawEvent:
    return RawEvent(
        f"f{n:07d}", "click" if url_id else "open", "d1", "r6", url_id, at, CHROME, "pf", None, False
    )


def test_fallback_events_are_consolidated_once_whether_ahead_of_or_behind_the_checkpoint() -> None:
    # Given a first run, then the redirect handing events to the fallback queue
    store = seeded_store()
    campaign(store)
    clock = Clock(RUN_AT)
    workflow(store, clock).run("run-1", "schedule")
    ahead = fallback_event(1, RUN_AT + timedelta(minutes=10))
    behind = fallback_event(2, T0 - timedelta(hours=2))  # far behind every checkpoint and the grace window
    store.send_fallback(ahead)
    store.send_fallback(behind)
    # When the next runs drain the queue
    clock.now = RUN_AT + timedelta(hours=1)
    second = workflow(store, clock).run("run-2", "schedule")
    third = workflow(store, clock).run("run-3", "schedule")
    # Then each event is counted exactly once and the queue is empty
    assert (second.events_processed, third.events_processed) == (2, 0)
    assert store.fallback == {}
    assert store.indicators[("d1", "url#2")].clicks == 3
    assert any(e.event_id == "f0000001" for shard in store.raw.values() for e in shard)  # back in the table


def late_fallback_clicks_after_a_first_run(count: int) -> tuple[FakeWorkflowStore, Clock]:
    """A first run, then ``count`` clicks far behind every checkpoint handed to the fallback queue; the
    clock an hour after the first run."""
    store = seeded_store()
    campaign(store)
    clock = Clock(RUN_AT)
    workflow(store, clock).run("run-1", "schedule")
    for n in range(count):
        store.send_fallback(fallback_event(n, T0 - timedelta(hours=2, seconds=n)))
    clock.now = RUN_AT + timedelta(hours=1)
    return store, clock


def test_more_fallback_events_behind_the_checkpoints_than_one_receive_holds_are_each_counted_once() -> None:
    # Given a first run, then 25 clicks far behind every checkpoint handed to the fallback queue (a
    # receive takes 10: the planner consolidates and flushes them in three batches)
    store, clock = late_fallback_clicks_after_a_first_run(25)
    # When the next run drains the queue
    second = workflow(store, clock).run("run-2", "schedule")
    # Then each click counts once
    assert (second.status, second.events_processed) == ("succeeded", 25)
    assert store.fallback == {}
    assert store.indicators[("d1", "url#2")].clicks == 1 + 25


def test_while_a_run_works_its_record_counts_the_fallback_events_its_planner_consolidated() -> None:
    # Given a first run, then three clicks far behind every checkpoint handed to the fallback queue
    store, clock = late_fallback_clicks_after_a_first_run(3)
    # When the next run is planned (its planner drains the queue), before its workers start
    workflow(store, clock).plan("run-2", "schedule")
    # Then its record, still running, counts the three events consolidated so far
    run = store.runs["run-2"]
    assert (run.status, run.events_processed) == ("running", 3)


def test_a_run_started_with_no_time_left_leaves_the_fallback_queue_to_the_next_run() -> None:
    # Given a first run, then the redirect handing an event to the fallback queue
    store = seeded_store()
    campaign(store)
    clock = Clock(RUN_AT)
    workflow(store, clock).run("run-1", "schedule")
    store.send_fallback(fallback_event(1, RUN_AT + timedelta(minutes=10)))
    # When a run starts in an invocation already within its safety margin of the time limit
    clock.now = RUN_AT + timedelta(hours=1)
    short = workflow(store, clock).run("run-2", "schedule", remaining_ms=lambda: SAFETY_MARGIN_MS - 1)
    # Then its planner drains nothing (the queue waits), and the next run with time drains it
    assert short.events_processed == 0 and len(store.fallback) == 1
    assert workflow(store, clock).run("run-3", "schedule").events_processed == 1
    assert store.fallback == {}


def test_a_fallback_copy_of_an_event_that_reached_the_table_is_not_counted_twice() -> None:
    # Given a write that timed out but landed, so the event is in the table and in the queue
    store = seeded_store()
    campaign(store)
    twice = fallback_event(3, T0 + timedelta(minutes=1))
    store.add_raw(twice)
    store.send_fallback(twice)
    clock = Clock(RUN_AT)
    # When two runs go by (the copy drained before and after the table copy was consolidated)
    first = workflow(store, clock).run("run-1", "schedule")
    store.send_fallback(twice)  # redelivered, as SQS may
    clock.now += timedelta(hours=1)
    second = workflow(store, clock).run("run-2", "schedule")
    # Then it is counted once
    assert (first.events_processed, second.events_processed) == (14, 0)
    assert store.indicators[("d1", "url#2")].clicks == 2


def fallback_campaign(store: FakeWorkflowStore) -> None:
    campaign(store)
    store.send_fallback(fallback_event(4, T0 + timedelta(minutes=2)))
    store.send_fallback(fallback_event(5, T0 + timedelta(minutes=3), url_id=None))


@pytest.mark.parametrize("operation", ["receive_fallback", "put_raw", "delete_fallback", "logged"])
def test_a_crash_while_draining_the_fallback_queue_loses_and_doubles_nothing(
    operation: str, reliability: Any
) -> None:
    clean = seeded_store()
    fallback_campaign(clean)
    workflow(clean, batch_size=2).run("clean", "schedule")
    expected = clean.snapshot()
    for nth in range(1, 10):
        store = seeded_store()
        fallback_campaign(store)
        clock = Clock(RUN_AT)
        store.fault = lambda op, count, nth=nth: op == operation and count == nth
        try:
            workflow(store, clock, batch_size=2).run("crashing", "schedule")
        except Crash:
            pass
        else:
            break
        store.restart()
        clock.now += timedelta(hours=1)
        workflow(store, clock, batch_size=2).run("rerun", "schedule")
        lost, doubled = lost_and_doubled(expected, store.snapshot())
        reliability.record(
            "Faults",
            f"tracking workflow killed at a {operation} call while draining the fallback queue",
            1,
            "queue messages redelivered; duplicates recognised by their tracking log",
            lost,
            doubled,
        )
        assert store.snapshot() == expected, f"crash at {operation} call {nth}"
        assert store.fallback == {}


def test_a_permanent_dynamodb_error_fails_every_run_cleanly_until_it_is_fixed(reliability: Any) -> None:
    # Given DynamoDB refusing every write of the workflow for three runs in a row
    store = seeded_store()
    campaign(store)
    store.die_on_fault = False
    store.fault = lambda op, count: op == "put_item"
    clock = Clock(RUN_AT)
    for n in range(3):
        with pytest.raises(Crash):
            workflow(store, clock).run(f"broken-{n}", "schedule")
        clock.now += timedelta(hours=1)
    # Then each run is recorded failed with the error and releases the lock
    assert [store.runs[f"broken-{n}"].status for n in range(3)] == ["failed"] * 3
    assert all("injected fault" in store.runs[f"broken-{n}"].errors[0] for n in range(3))
    assert store.lock_owner is None
    # And once DynamoDB takes writes again, one run gives the clean totals
    store.restart()
    workflow(store, clock).run("fixed", "schedule")
    lost, doubled = lost_and_doubled(clean_snapshot(batch_size=100), store.snapshot())
    reliability.record(
        "Faults",
        "permanent DynamoDB error on every workflow write, three runs in a row",
        3,
        "each run recorded failed with its error and released the lock; the first run after the fix finished",
        lost,
        doubled,
    )
    assert (lost, doubled) == (0, 0)


def test_a_run_whose_pending_batch_cannot_be_completed_records_its_failure_and_releases_the_lock(
    reliability: Any,
) -> None:
    # Given DynamoDB refusing to complete a worker's pending batch for one run (its worker fails, and
    # so does the closing replay of that batch)
    store = seeded_store()
    campaign(store)
    store.die_on_fault = False
    store.fault = lambda op, count: op == "complete_worker_pending"
    clock = Clock(RUN_AT)
    with pytest.raises(Crash):
        workflow(store, clock).run("refused", "schedule")
    # Then the run is recorded failed with the error, finished, and the lock is released
    assert store.runs["refused"].status == "failed"
    assert store.runs["refused"].finished_at == timeutil.iso(RUN_AT)
    assert "injected fault" in store.runs["refused"].errors[0]
    assert store.lock_owner is None
    # And the next run replays the pending batch and gives the clean totals
    store.restart()
    clock.now += timedelta(minutes=5)
    assert workflow(store, clock).run("next", "schedule").status == "succeeded"
    lost, doubled = lost_and_doubled(clean_snapshot(batch_size=100), store.snapshot())
    reliability.record(
        "Faults",
        "DynamoDB refusing to complete a worker's pending batch for a whole run",
        1,
        "run recorded failed with its error, lock released; the next run replayed the batch",
        lost,
        doubled,
    )
    assert (lost, doubled) == (0, 0)


def crowd(store: FakeWorkflowStore, recipients: int, clicks: int = 3) -> None:
    """Many recipients, each opening once and clicking a few links: many ``r#`` and ``p#`` items.

    After ``campaign`` (which restarts the event ids), so two stores seeded alike hold the same events.
    """
    for n in range(recipients):
        recipient = hashlib.sha256(f"recipient {n}".encode()).hexdigest()[
            :24
        ]  # compresses as badly as real ids
        hit(store, recipient, ua=APPLE_MAIL)
        for k in range(clicks):
            hit(store, recipient, str(1 + k % 2), person=hashlib.sha256(f"person {n}".encode()).hexdigest())


def test_every_indicator_item_is_written_once_per_run_however_many_batches() -> None:
    # Given a campaign read in many small batches from every shard (several rounds)
    store = seeded_store()
    campaign(store)
    crowd(store, 20)
    # When one run consolidates it
    run = workflow(store, batch_size=1).run("run-1", "schedule")
    # Then the run took one flush, and each indicator item was put once, each tracking log once
    assert run.events_processed == 13 + 20 * 4
    assert store.workers[0]["seq"] == 1
    assert store.writes[("d1", "stats")] == 1
    indicator_writes = [n for key, n in store.writes.items() if key in store.indicators]
    assert len(indicator_writes) == len(store.indicators) > 40 and set(indicator_writes) == {1}
    assert [n for key, n in store.writes.items() if key in store.logs] == [1] * len(store.logs)
    # And the totals are those of reading everything in one batch per shard
    clean = seeded_store()
    campaign(clean)
    crowd(clean, 20)
    workflow(clean, batch_size=1000).run("clean", "schedule")
    assert store.snapshot() == clean.snapshot()


def test_a_crash_after_the_logs_are_written_but_before_the_flush_loses_and_doubles_nothing(
    reliability: Any,
) -> None:
    # Given a run that consolidated every batch, put their tracking logs, and died saving the flush
    expected = clean_snapshot(batch_size=2)
    store = seeded_store()
    campaign(store)
    clock = Clock(RUN_AT)
    store.fault = lambda op, count: op == "save_worker_pending"
    with pytest.raises(Crash):
        workflow(store, clock, batch_size=2).run("crashing", "schedule")
    assert len(store.logs) == 13  # every log is there already
    assert store.indicators == {} and store.checkpoints == {}  # no count, no checkpoint moved
    # When the next run starts once the dead run's lock has expired
    store.restart()
    clock.now += timedelta(hours=1)
    rerun = workflow(store, clock, batch_size=2).run("rerun", "schedule")
    # Then it reads the same events again and counts each once
    lost, doubled = lost_and_doubled(expected, store.snapshot())
    reliability.record(
        "Faults",
        "tracking workflow killed after putting a run's tracking logs, before its flush",
        1,
        "no checkpoint had moved: the next run read the events again, re-put the logs, counted them once",
        lost,
        doubled,
    )
    assert rerun.events_processed == 13
    assert store.snapshot() == expected


def test_a_pending_batch_stays_under_its_size_bound_with_many_recipients() -> None:
    # Given hundreds of recipients, more than one pending batch of 6 KB can hold (scaled down from the
    # real 200 KB bound and batches of 100 events, to keep the test, run against every mutant, quick)
    bound = 6_000
    store = seeded_store()
    campaign(store)
    crowd(store, 300)
    # When one run consolidates them under that bound, 10 events at a time
    config = WorkflowConfig(batch_size=10, max_pending_bytes=bound)
    run = TrackingWorkflow(store, config, clock=Clock(RUN_AT)).run("run-1", "schedule")
    # Then it flushed several times, never past the bound by more than the batch that crossed it
    # (a batch of 10 events adds well under 2 KB encoded)
    assert run.events_processed == 13 + 1_200
    assert len(store.pending_sizes) > 3
    assert max(store.pending_sizes) < bound + 2_000
    # And the totals are those of one unbounded flush
    clean = seeded_store()
    campaign(clean)
    crowd(clean, 300)
    workflow(clean, batch_size=1000).run("clean", "schedule")
    assert len(clean.pending_sizes) == 1 and clean.pending_sizes[0] > 3 * bound
    assert store.snapshot() == clean.snapshot()


def test_after_its_first_flush_a_run_estimates_the_pending_size_instead_of_encoding_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a run that will flush several times under a small bound, counting every encoding
    encodings: list[int] = []
    real_encode = PendingBatch._encode

    def counted(pending: PendingBatch) -> bytes:
        encodings.append(len(pending.items))
        return real_encode(pending)

    monkeypatch.setattr(PendingBatch, "_encode", counted)
    store = seeded_store()
    campaign(store)
    crowd(store, 300)
    config = WorkflowConfig(batch_size=10, max_pending_bytes=8_000)
    # When it runs
    TrackingWorkflow(store, config, clock=Clock(RUN_AT)).run("run-1", "schedule")
    # Then each flush encodes its pending batch once (saving reuses it); only the first flush's batch
    # is measured on the way, a few times
    flushes = len(store.pending_sizes)
    assert flushes > 3
    assert flushes <= len(encodings) <= flushes + 5, repr((flushes, encodings))
    # and the bound still holds
    assert max(store.pending_sizes) < 8_000 + 2_000


def test_a_run_flushes_when_it_carries_too_many_items() -> None:
    store = seeded_store()
    campaign(store)
    crowd(store, 50)
    config = WorkflowConfig(batch_size=10, max_carried_items=25)
    TrackingWorkflow(store, config, clock=Clock(RUN_AT)).run("run-1", "schedule")
    assert store.workers[0]["seq"] >= 4
    clean = seeded_store()
    campaign(clean)
    crowd(clean, 50)
    workflow(clean).run("clean", "schedule")
    assert store.snapshot() == clean.snapshot()


def late_event(event_id: str, at: datetime, url_id: str | None) -> RawEvent:
    kind = "click" if url_id else "open"
    return RawEvent(event_id, kind, "d1", "r2", url_id, at, CHROME, "p2", None, False)


def late_event_runs(store: FakeWorkflowStore, clock: Clock) -> None:
    """A first run, then events timed just before its checkpoints that become visible only afterwards."""
    campaign(store)
    workflow(store, clock, batch_size=2).run("run-1", "schedule")
    for event in (late_event("late1", T0 - timedelta(seconds=1), "2"), late_event("late2", T0, None)):
        model = store.add_raw(event)
        assert model.sk <= store.checkpoints[str(model.shard)]  # behind the checkpoint: a late event
    clock.now += timedelta(hours=1)


@pytest.mark.parametrize(
    "operation", ["logged", "read_raw", "save_worker_pending", "put_item", "complete_worker_pending"]
)
def test_late_events_are_counted_once_whatever_the_crash_after_they_are_read(
    operation: str, reliability: Any
) -> None:
    clean = seeded_store()
    late_event_runs(clean, Clock(RUN_AT))
    workflow(clean, Clock(RUN_AT + timedelta(hours=1)), batch_size=2).run("run-2", "schedule")
    expected = clean.snapshot()
    for nth in range(1, 60):
        # Given late events, and the run that reads them dying at the nth call of an operation
        store = seeded_store()
        clock = Clock(RUN_AT)
        late_event_runs(store, clock)
        store.restart()
        store.fault = lambda op, count, nth=nth: op == operation and count == nth
        try:
            workflow(store, clock, batch_size=2).run("crashing", "schedule")
        except Crash:
            pass
        else:
            break
        # Then a late event has a tracking log only once its counts are stored (or pending) too
        logged = {("d1", sk) for sk in store.logs if sk[1].endswith(("#late1", "#late2"))}
        counted = store.stats("d1")["total_clicks"] - 5 + store.stats("d1")["total_opens"] - 3
        assert store.pending is not None or counted == len(logged), f"crash at {operation} call {nth}"
        # And the next run counts each late event once
        store.restart()
        clock.now += timedelta(hours=1)
        workflow(store, clock, batch_size=2).run("rerun", "schedule")
        lost, doubled = lost_and_doubled(expected, store.snapshot())
        reliability.record(
            "Faults",
            f"tracking workflow killed at a {operation} call while consolidating late events",
            1,
            "late events' logs are written with their counts: the next run found and counted them once",
            lost,
            doubled,
        )
        assert store.snapshot() == expected, f"crash at {operation} call {nth}"


@pytest.mark.parametrize(
    "operation", ["put_pending_chunk", "save_pending", "put_item", "complete_pending", "delete_fallback"]
)
def test_a_crash_after_consolidating_fallback_events_behind_the_checkpoint_loses_and_doubles_nothing(
    operation: str, reliability: Any
) -> None:
    def after_a_first_run(store: FakeWorkflowStore, clock: Clock) -> None:
        campaign(store)
        workflow(store, clock).run("run-1", "schedule")
        for event in (fallback_event(2, T0 - timedelta(hours=2)), fallback_event(3, T0, url_id=None)):
            shard = raw_events.shard_of(event.delivery_id, event.recipient_id)
            assert shard in store.checkpoints  # behind its shard's checkpoint (the first, far behind)
            store.send_fallback(event)
        clock.now += timedelta(hours=1)

    clean = seeded_store()
    clean_clock = Clock(RUN_AT)
    after_a_first_run(clean, clean_clock)
    workflow(clean, clean_clock).run("run-2", "schedule")
    expected = clean.snapshot()
    for nth in range(1, 30):
        store = seeded_store()
        clock = Clock(RUN_AT)
        after_a_first_run(store, clock)
        store.restart()
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
        lost, doubled = lost_and_doubled(expected, store.snapshot())
        reliability.record(
            "Faults",
            f"tracking workflow killed at a {operation} call after consolidating fallback events "
            "behind the checkpoint",
            1,
            "flushed before the queue messages were deleted: redelivered or replayed, counted once",
            lost,
            doubled,
        )
        assert store.snapshot() == expected, f"crash at {operation} call {nth}"
        assert store.fallback == {}


def test_a_pending_batch_left_by_the_previous_version_is_replayed() -> None:
    # Given a pending batch in the format that moved one shard's checkpoint per batch
    import zlib

    from functions.consolidate.store import PendingBatch
    from functions.shared.models import DeliveryStatsModel

    item = DeliveryStatsModel(delivery_id="d1", sk="stats", breakdowns={}, opens=4)
    document = {
        "seq": 7,
        "shard": "03",
        "checkpoint": "2026-11-23T09:00:00.000Z#e1",
        "events": 5,
        "items": [["DeliveryStatsModel", item.serialize()]],
    }
    old = zlib.compress(json.dumps(document).encode())
    # When it is decoded
    pending = PendingBatch.decode(old)
    # Then it moves that shard's checkpoint and writes its items
    assert pending.checkpoints == {"03": "2026-11-23T09:00:00.000Z#e1"}
    assert (pending.seq, pending.events, pending.items[0].opens) == (7, 5, 4)
    late = PendingBatch.decode(zlib.compress(json.dumps({**document, "checkpoint": None}).encode()))
    assert late.checkpoints == {}


CAMPAIGN_TOTALS = {  # test_indicators_count_each_fact_once's hand count
    "opens": 5,
    "total_opens": 3,
    "clicks": 2,
    "person_clicks": 3,
    "total_clicks": 5,
    "opt_outs": 1,
    "mirror_page_views": 2,
}


def test_a_recipient_who_opts_out_again_is_one_opt_out() -> None:
    # Given r4's opt-out (campaign) clicked twice more, once in the same run and once after it
    store = seeded_store()
    campaign(store)
    hit(store, "r4", "3", person="p4", at=T0 + timedelta(minutes=30))
    clock = Clock(RUN_AT)
    workflow(store, clock).run("run-1", "schedule")
    hit(store, "r4", "3", person="p4", at=RUN_AT + timedelta(minutes=5))
    # And r6 opting out for the first time in the second run
    hit(store, "r6", "3", person="p6", at=RUN_AT + timedelta(minutes=6))
    clock.now += timedelta(hours=1)
    workflow(store, clock).run("run-2", "schedule")
    # Then opt-outs count recipients: r4 and r6, however often they clicked the link, in all traffic and
    # in the human figures alike
    assert store.stats("d1")["opt_outs"] == 2
    assert int(store.indicators[("d1", "stats")].human.as_dict()["opt_outs"]) == 2
    assert store.indicators[("d1", "url#3")].clicks == 4
    assert store.indicators[("d1", "url#3")].distinct_clicks == 2


def _r3_checkpoint(store: FakeWorkflowStore) -> tuple[str, str]:
    """The shard of r3's hits (shards are by recipient) and its checkpoint."""
    shard = raw_events.shard_of("d1", "r3")
    return shard, store.checkpoints[shard]


def _late_click(store: FakeWorkflowStore, event_id: str, recipient: str, person: str, at: datetime) -> str:
    event = RawEvent(event_id, "click", "d1", recipient, "2", at, CHROME, person, None, False)
    return str(store.add_raw(event).sk)


def test_an_event_visible_late_but_within_the_grace_window_is_counted_by_the_next_run_once() -> None:
    # Given a run that consolidated the campaign and moved a shard's checkpoint
    store = seeded_store()
    campaign(store)
    clock = Clock(RUN_AT)
    config = WorkflowConfig(late_event_grace_seconds=300)
    TrackingWorkflow(store, config, clock=clock).run("run-1", "schedule")
    _, checkpoint = _r3_checkpoint(store)
    checkpoint_at = timeutil.parse(checkpoint.split("#", 1)[0])
    # When a click timed 60 s before that checkpoint becomes visible only after the run (a slow write)
    sk = _late_click(store, "late-1", "r3", "p8", checkpoint_at - timedelta(seconds=60))
    assert sk < checkpoint  # behind the checkpoint: the shard's normal read will never reach it
    clock.now += timedelta(hours=1)
    second = TrackingWorkflow(store, config, clock=clock).run("run-2", "schedule")
    third = TrackingWorkflow(store, config, clock=clock).run("run-3", "schedule")
    # Then the next run counts it (r3's first click, a new person, link 2's second click), once
    assert (second.events_processed, third.events_processed) == (1, 0)
    assert store.stats("d1") == {**CAMPAIGN_TOTALS, "clicks": 3, "person_clicks": 4, "total_clicks": 6}
    assert store.indicators[("d1", "url#2")].clicks == 2
    assert store.log("d1", sk) is not None


def test_an_event_visible_later_than_the_grace_window_behind_a_checkpoint_is_not_counted() -> None:
    # Given a run that consolidated the campaign and moved a shard's checkpoint
    store = seeded_store()
    campaign(store)
    clock = Clock(RUN_AT)
    config = WorkflowConfig(late_event_grace_seconds=300)
    TrackingWorkflow(store, config, clock=clock).run("run-1", "schedule")
    _, checkpoint = _r3_checkpoint(store)
    checkpoint_at = timeutil.parse(checkpoint.split("#", 1)[0])
    # When a click timed 301 s before that checkpoint becomes visible only afterwards
    sk = _late_click(store, "stale-1", "r3", "p8", checkpoint_at - timedelta(seconds=301))
    clock.now += timedelta(hours=1)
    second = TrackingWorkflow(store, config, clock=clock).run("run-2", "schedule")
    # Then it is not counted nor logged (README "Limits"): the totals are the campaign's
    assert second.events_processed == 0
    assert store.stats("d1") == CAMPAIGN_TOTALS
    assert store.log("d1", sk) is None


def test_many_late_events_are_read_in_batches_so_the_pending_batch_stays_under_its_bound() -> None:
    # Given a run that moved a shard's checkpoint, then 200 clicks by distinct recipients, timed 60 s
    # before that checkpoint in its shard, that become visible only afterwards (slow writes)
    store = seeded_store()
    campaign(store)
    clock = Clock(RUN_AT)
    workflow(store, clock).run("run-1", "schedule")
    shard, checkpoint = sorted(store.checkpoints.items())[0]
    at = timeutil.parse(checkpoint.split("#", 1)[0]) - timedelta(seconds=60)
    people = (hashlib.sha256(f"late-{n}".encode()).hexdigest() for n in range(100_000))
    late = [person for person in people if raw_events.shard_of("d1", person[:24]) == shard][:200]
    for n, person in enumerate(late):
        assert _late_click(store, f"late-{n}", person[:24], person, at) < checkpoint
    flushed_before = len(store.pending_sizes)
    # When the next run consolidates them, 10 events at a time, under a 3 KB pending batch
    clock.now += timedelta(hours=1)
    bound = 3_000
    config = WorkflowConfig(batch_size=10, max_pending_bytes=bound)
    run = TrackingWorkflow(store, config, clock=clock).run("run-2", "schedule")
    # Then each is counted once, through several pending batches none past the bound by more than the
    # 10 events that crossed it
    assert run.events_processed == 200
    assert store.indicators[("d1", "url#2")].clicks == 1 + 200
    sizes = store.pending_sizes[flushed_before:]
    assert len(sizes) > 1
    assert max(sizes) < bound + 2_000


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[tuple[str, Any, Any]]:
    logged = [r for r in caplog.records if r.levelname == "ERROR"]
    caplog.clear()
    return [(r.getMessage(), getattr(r, "run_id", None), getattr(r, "errors", None)) for r in logged]


def test_a_failed_run_is_logged_as_an_error_naming_it_and_a_run_that_succeeded_is_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given the campaign's hits (the dashboard's "Last runs" widget shows the lines at level ERROR)
    store = seeded_store()
    campaign(store)
    flow = workflow(store)
    # When a run's only worker is reported failed
    plan = flow.plan("run-1", "schedule")
    failed = {"worker": 0, "shards": plan.groups[0], "status": "failed", "error": "States.Timeout"}
    flow.finish("run-1", [failed])
    # Then one error line names the run and its error
    assert errors_logged(caplog) == [("tracking workflow run failed", "run-1", ["States.Timeout"])]
    # When the next run succeeds, Then it logs no error
    assert workflow(store, Clock(RUN_AT + timedelta(hours=1))).run("run-2", "schedule").status == "succeeded"
    assert errors_logged(caplog) == []
