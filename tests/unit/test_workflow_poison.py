"""The tracking workflow against poison raw events: items of the raw-events table or the fallback queue
that it cannot read or consolidate (a field missing or garbled, a time that does not parse, a kind it
does not know). Each is quarantined once, its checkpoint moves past it, everything else counts once."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from functions.consolidate import batch
from functions.consolidate.batch import fault
from functions.shared import raw_events
from functions.shared.models import RawEventModel
from functions.shared.raw_events import RawEvent
from tests.fakes_workflow import Crash, FakeWorkflowStore, refused_by_dynamodb
from tests.unit.test_workflow import (
    CHROME,
    RUN_AT,
    T0,
    Clock,
    campaign,
    clean_snapshot,
    lost_and_doubled,
    seeded_store,
    workflow,
)

Item = dict[str, Any]


def good_item(event_id: str, seconds: int, kind: str = "click", **fields: Any) -> Item:
    event = RawEvent(
        event_id=event_id,
        kind=kind,
        delivery_id="d1",
        recipient_id="r2",
        url_id="2" if kind == "click" else None,
        at=T0 + timedelta(seconds=seconds),
        user_agent=CHROME,
        person_id="p9",
        ip="203.0.113.0",
        proof=False,
        **fields,
    )
    return raw_events.to_item(event, 30)


def _without(name: str) -> Callable[[Item], None]:
    return lambda item: item.pop(name)


def _set(name: str, value: Any) -> Callable[[Item], None]:
    return lambda item: item.__setitem__(name, value)


# name -> how a good click's item is spoiled (the item keeps a valid shard and sort key: DynamoDB
# refuses any other, so the table can hold nothing else)
POISONS: dict[str, Callable[[Item], None]] = {
    "an at that does not parse": _set("at", {"S": "yesterday at noon"}),
    "an at past the year 9999 once its tracking log's TTL is added": _set(
        "at", {"S": "9999-12-31T23:00:00Z"}
    ),
    "a kind the workflow does not know": _set("kind", {"S": "bounce"}),
    "no recipient id": _without("recipient_id"),
    "no delivery id": _without("delivery_id"),
    "an empty delivery id": _set("delivery_id", {"S": ""}),
    "a numeric amount (N, not a decimal string)": _set("amount", {"N": "12.5"}),
    "a recipient id of the wrong DynamoDB type (N)": _set("recipient_id", {"N": "42"}),
    "a proof flag of the wrong DynamoDB type (S)": _set("proof", {"S": "yes"}),
    "an attribute holding a binary value": _set("user_agent", {"B": b"\x00\xff"}),
}


def poison_item(name: str, event_id: str = "x0000001", seconds: int = 1_500) -> Item:
    item = good_item(event_id, seconds)
    POISONS[name](item)
    return item


def quarantine_key(item: Item) -> str:
    return f"raw-events#{item['shard']['S']}#{item['sk']['S']}"


def kept_item(store: FakeWorkflowStore, key: str) -> Any:
    return json.loads(zlib.decompress(store.quarantined[key].item))


@pytest.mark.parametrize("name", sorted(POISONS))
def test_a_poison_raw_event_is_quarantined_and_every_other_event_counts_once(
    name: str, reliability: Any
) -> None:
    # Given a campaign's raw events and one poison item among them in the raw-events table
    expected = clean_snapshot(batch_size=2)
    store = seeded_store()
    campaign(store)
    poison = poison_item(name)
    store.add_raw_item(poison)
    # When the workflow runs
    run = workflow(store, batch_size=2).run("run-1", "schedule")
    # Then the run succeeds, the poison is kept with its key, item and error, and the rest counts once
    assert run.status == "succeeded"
    assert int(run.events_processed) == 13
    assert int(run.quarantined) == 1
    assert any(poison["sk"]["S"] in error for error in run.errors)
    assert list(store.quarantined) == [quarantine_key(poison)]
    kept = store.quarantined[quarantine_key(poison)]
    assert (kept.table, kept.model, json.loads(kept.key)) == (
        "raw-events",
        "RawEventModel",
        [poison["shard"]["S"], poison["sk"]["S"]],
    )
    assert kept.error and kept.run_id == "run-1"
    assert kept_item(store, quarantine_key(poison))["event_id"] == {"S": "x0000001"}
    assert store.checkpoints[poison["shard"]["S"]] >= poison["sk"]["S"]  # moved past it
    assert store.log("d1", poison["sk"]["S"]) is None  # it could not be read: no tracking log
    assert store.snapshot() == expected
    # And a second run, whose late-event window reads the poison again, neither counts nor keeps it again
    again = workflow(store, Clock(RUN_AT + timedelta(minutes=2)), batch_size=2).run("run-2", "schedule")
    assert again.status == "succeeded"
    assert (int(again.events_processed), int(again.quarantined or 0)) == (0, 0)
    assert store.quarantined[quarantine_key(poison)].run_id == "run-1"
    lost, doubled = lost_and_doubled(expected, store.snapshot())
    reliability.record(
        "Bad input",
        f"a poison raw event in the raw-events table: {name}",
        1,
        "quarantined once with its item, key and error, named in the run's errors and counted in "
        "WritesQuarantined; the checkpoint moved past it, the run succeeded and every other event counted once",
        lost,
        doubled,
    )
    assert (lost, doubled) == (0, 0)


def _spoiled(name: str, value: str | None) -> RawEventModel:
    """A good click read from its item with one string attribute changed (None: left out)."""
    item = good_item("x0000001", 1_500)
    if value is None:
        item.pop(name)
    else:
        item[name] = {"S": value}
    return RawEventModel.from_raw_data(item)


def test_a_poison_events_error_names_what_is_wrong_with_at_most_100_characters_of_it() -> None:
    # Given raw events with a recipient id missing or empty, a kind of 300 letters, an at whose log
    # would expire past the year 9999, and an at of 2,000 letters
    # When the workflow asks what is wrong with each (the error it keeps in quarantine and the run's errors)
    # Then the error names the field and shows at most 100 characters of its value
    assert fault(_spoiled("recipient_id", None), 30) == "recipient_id is missing"
    assert fault(_spoiled("recipient_id", ""), 30) == "recipient_id is ''"
    assert fault(_spoiled("kind", "b" * 300), 30) == f"kind '{'b' * 100}' is not one the workflow knows"
    assert (
        fault(_spoiled("at", "9999-12-31T23:00:00Z"), 30)
        == "at '9999-12-31T23:00:00Z': OverflowError: date value out of range"
    )
    # And a long error (the parser's message repeats the whole value) is cut at 1,000 characters
    long = fault(_spoiled("at", "y" * 2_000), 30)
    assert long is not None and len(long) == 1_000
    assert long.startswith(f"at '{'y' * 100}': ValueError: Invalid isoformat string: 'yyy")
    assert set(long[long.index("string: '") + 9 :]) == {"y"}
    # And a good click has nothing wrong
    assert fault(_spoiled("kind", "click"), 30) is None


def test_a_user_agent_the_parser_fails_on_is_the_events_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a parser that raises on one User-Agent (ua-parser has not on any string tried; the check keeps
    # a regression of it, or of the names cut from it, from stopping every run at the same event)
    real = batch.parse_user_agent

    def parse(user_agent: str | None) -> Any:
        if user_agent == "breaks the parser":
            raise ValueError("no pattern for it")
        return real(user_agent)

    monkeypatch.setattr(batch, "parse_user_agent", parse)
    # When the workflow asks what is wrong with a click carrying it, and with one carrying Chrome's
    # Then the first names the User-Agent and the parser's error, the second has nothing wrong
    assert (
        fault(_spoiled("user_agent", "breaks the parser"), 30)
        == "user_agent 'breaks the parser': ValueError: no pattern for it"
    )
    assert fault(_spoiled("user_agent", CHROME), 30) is None


def test_a_run_of_poison_events_filling_whole_batches_still_moves_on() -> None:
    # Given a shard whose next batches hold nothing but poison, then a good event behind them
    store = seeded_store()
    campaign(store)
    names = sorted(POISONS)
    for n, name in enumerate(names):
        item = good_item("x0000001", 1_000 + n)  # one event id: one shard, in time order
        item["sk"] = {"S": raw_events.sort_key(item["sk"]["S"].split("#")[0], f"x{n:07d}")}
        POISONS[name](item)
        store.add_raw_item(item)
    late_good = good_item("x0000001", 1_000 + len(names))
    store.add_raw_item(late_good)
    # When the workflow runs with batches of two
    run = workflow(store, batch_size=2).run("run-1", "schedule")
    # Then every poison is quarantined and the good event behind them counts
    assert run.status == "succeeded"
    assert int(run.quarantined) == len(names) == len(store.quarantined)
    assert int(run.events_processed) == 14
    assert store.log("d1", late_good["sk"]["S"]) is not None
    assert len(run.errors) <= 20  # the run item stays small


def malformed_messages(store: FakeWorkflowStore) -> dict[str, Item]:
    """Fallback-queue messages that decode (JSON naming shard, sk and event_id) but hold no raw event."""
    behind = poison_item("a kind the workflow does not know", "y0000001", seconds=-7_200)
    ahead = poison_item("a numeric amount (N, not a decimal string)", "y0000002", seconds=7_200)
    keys_not_values = {"shard": "03", "sk": "2026-11-23T09:00:00.000Z#y0000003", "event_id": "y0000003"}
    messages = {"behind": behind, "ahead": ahead, "keys_not_values": keys_not_values}
    for receipt, item in messages.items():
        store.fallback[receipt] = item
    store.fallback["truncated"] = TRUNCATED_BODY  # bodies as SQS holds them
    store.fallback["a list"] = LIST_BODY
    return messages


TRUNCATED_BODY = '{"shard":{"S":"03"},"sk":{"S":"2026-11-23T09:00:00.000Z#y0000004"},"event_id":{"S":"y00'
LIST_BODY = '[{"shard":{"S":"03"}}]'


def test_malformed_fallback_messages_are_quarantined_and_leave_the_queue(reliability: Any) -> None:
    # Given a first run, then five malformed messages in the fallback queue: one behind every checkpoint,
    # one ahead of them, one whose attributes are not DynamoDB attribute values, a truncated body, and
    # a body that is JSON but not an item
    store = seeded_store()
    campaign(store)
    clock = Clock(RUN_AT)
    workflow(store, clock).run("run-1", "schedule")
    before = store.snapshot()
    messages = malformed_messages(store)
    # When the next runs drain the queue
    clock.now = RUN_AT + timedelta(hours=3)
    second = workflow(store, clock).run("run-2", "schedule")
    third = workflow(store, clock).run("run-3", "schedule")
    # Then each is quarantined once, the queue is empty, and nothing else changed
    assert second.status == third.status == "succeeded"
    assert store.fallback == {}
    assert int(second.quarantined) == 5 and int(third.quarantined or 0) == 0
    assert len(store.quarantined) == 5
    assert {
        quarantine_key(messages["behind"]),
        quarantine_key(messages["ahead"]),
        "raw-events#03#2026-11-23T09:00:00.000Z#y0000003",
    } < set(store.quarantined)
    kept = store.quarantined["raw-events#03#2026-11-23T09:00:00.000Z#y0000003"]
    assert "ParamValidationError" in kept.error
    assert (
        json.loads(zlib.decompress(kept.item)) == messages["keys_not_values"]
    )  # kept whole, to fix and resend
    bodies = {
        json.loads(zlib.decompress(kept.item))["body"]["S"]: kept
        for key, kept in store.quarantined.items()
        if key.startswith("raw-events#fallback-queue#")
    }
    assert sorted(bodies) == sorted([TRUNCATED_BODY, LIST_BODY])
    assert all("not a raw-event item" in kept.error for kept in bodies.values())
    assert store.snapshot() == before
    reliability.record(
        "Bad input",
        "malformed fallback-queue messages (a garbled event behind and ahead of the checkpoints, "
        "attributes that are not DynamoDB attribute values, a truncated body, JSON that is no item)",
        5,
        "each quarantined once and deleted from the queue; the runs succeeded and counted nothing else",
        0,
        0,
    )


def test_a_run_interrupted_after_its_planner_quarantined_a_message_keeps_that_note_when_finished() -> None:
    # Given a run whose planner quarantined a truncated fallback-queue message, and whose state
    # machine then died (no worker, no finisher)
    store = seeded_store()
    campaign(store)
    store.fallback["truncated"] = TRUNCATED_BODY
    clock = Clock(RUN_AT)
    workflow(store, clock).plan("run-1", "schedule")
    [note] = store.runs["run-1"].errors
    assert "quarantined" in note
    # When the next run starts once the lock has expired, and finishes the first
    clock.now = RUN_AT + timedelta(hours=1)
    assert workflow(store, clock).run("run-2", "schedule").status == "succeeded"
    # Then the first run's record keeps its planner's note before why it failed, and counts the item
    interrupted = store.runs["run-1"]
    assert interrupted.status == "failed"
    assert interrupted.errors == [note, "interrupted; what its workers flushed was merged by run run-2"]
    assert int(interrupted.quarantined) == len(store.quarantined) == 1


def test_a_finish_after_the_next_run_took_the_lock_records_the_run_failed_with_its_notes() -> None:
    # Given a run whose planner quarantined a truncated fallback-queue message and whose worker
    # finished, then stalled until its lock expired and the next run took it
    store = seeded_store()
    campaign(store)
    store.fallback["truncated"] = TRUNCATED_BODY
    clock = Clock(RUN_AT)
    flow = workflow(store, clock)
    plan = flow.plan("run-1", "schedule")
    [note] = store.runs["run-1"].errors
    done = [flow.work("run-1", n, group) for n, group in enumerate(plan.groups)]
    clock.now = RUN_AT + timedelta(hours=1)
    assert store.acquire_lock("run-2", clock.now.timestamp(), 600)
    # When run-1's Finish runs at last, with no error of its own
    run = flow.finish("run-1", done)
    # Then it is recorded failed: its planner's note kept, then why (and no error it was not given)
    assert run.status == store.runs["run-1"].status == "failed"
    assert run.errors == [note, "run run-1 no longer holds the tracking workflow lock"]
    assert store.lock_owner == "run-2"


def test_a_run_whose_planner_quarantined_a_message_keeps_its_note_when_it_finishes() -> None:
    # Given a truncated message in the fallback queue
    store = seeded_store()
    campaign(store)
    store.fallback["truncated"] = TRUNCATED_BODY
    # When a run drains it and finishes
    run = workflow(store).run("run-1", "schedule")
    # Then its record succeeded, counts the quarantined item and keeps the planner's note on it
    assert (run.status, int(run.quarantined)) == ("succeeded", 1)
    [note] = run.errors
    assert note.startswith("quarantined raw-events item") and "not a raw-event item" in note
    assert store.runs["run-1"].errors == [note]


def test_a_log_dynamodb_refuses_when_the_planner_drains_the_fallback_queue_is_counted_in_the_run() -> None:
    # Given a first run, then a click far behind every checkpoint handed to the fallback queue, whose full
    # tracking log DynamoDB refuses (its bare log it takes)
    store = seeded_store()
    campaign(store)
    clock = Clock(RUN_AT)
    workflow(store, clock).run("run-1", "schedule")
    late = RawEvent("f0000001", "click", "d1", "r6", "2", T0 - timedelta(hours=2), CHROME, "pf", None, False)
    store.send_fallback(late)

    def refusing(data: dict[str, Any]) -> str | None:
        if data.get("event_id") == {"S": late.event_id} and "label" in data:
            return "ValidationException: Item size has exceeded the maximum allowed size"
        return refused_by_dynamodb(data)

    store.refuse = refusing
    # When the next run's planner drains it
    clock.now = RUN_AT + timedelta(hours=1)
    run = workflow(store, clock).run("run-2", "schedule")
    # Then the click counts once, and the run counts the one log kept in quarantine
    assert (run.status, run.events_processed, int(run.quarantined)) == ("succeeded", 1, 1)
    assert len(store.quarantined) == 1
    assert store.indicators[("d1", "url#2")].clicks == 2


def test_an_item_refused_again_when_finish_replays_a_workers_batch_is_noted_in_the_run() -> None:
    # Given a worker that died after applying its pending batch, in which DynamoDB refused link 2's
    # URL row, and before completing it
    store = seeded_store()
    campaign(store)
    refused = "ValidationException: Item size has exceeded the maximum allowed size"
    store.refuse = lambda data: refused if data.get("sk") == {"S": "url#2"} else refused_by_dynamodb(data)
    flow = workflow(store)
    plan = flow.plan("run-1", "schedule")
    store.fault = lambda operation, count: operation == "complete_worker_pending"
    with pytest.raises(Crash):
        flow.work("run-1", 0, plan.groups[0])
    store.restart()
    # When the run's Finish replays that batch (the row refused again)
    run = flow.finish("run-1", [], "States.TaskFailed: the worker died")
    # Then the run's record names the item kept in quarantine and counts it once
    assert [error for error in run.errors if "url#2" in error] == [
        f'quarantined indicators item ["d1", "url#2"]: {refused}'  # its table and key
    ]
    assert int(run.quarantined) == len(store.quarantined) == 1


def test_the_same_malformed_message_twice_in_one_receive_is_quarantined_once() -> None:
    # Given the same truncated body twice in the fallback queue (sent twice), and the same garbled event
    store = seeded_store()
    campaign(store)
    garbled = poison_item("no recipient id", "y0000001")
    store.fallback.update({"m1": TRUNCATED_BODY, "m2": TRUNCATED_BODY, "m3": garbled, "m4": dict(garbled)})
    # When the workflow runs
    run = workflow(store).run("run-1", "schedule")
    # Then each is kept once, the queue is empty, and the campaign counts as in a clean run
    assert run.status == "succeeded"
    assert int(run.quarantined) == len(store.quarantined) == 2
    assert store.fallback == {}
    assert store.snapshot() == clean_snapshot(batch_size=100)


def test_a_quarantined_event_fixed_and_sent_back_through_the_fallback_queue_counts_once() -> None:
    # Given a click whose kind a buggy writer misspelled, quarantined by a run
    store = seeded_store()
    campaign(store)
    clock = Clock(RUN_AT)
    poison = good_item("x0000001", 1_500)
    poison["kind"] = {"S": "clik"}
    store.add_raw_item(poison)
    workflow(store, clock).run("run-1", "schedule")
    clicks = store.stats("d1")["total_clicks"]
    fixed = kept_item(store, quarantine_key(poison))
    assert fixed["kind"] == {"S": "clik"}
    # When an operator fixes it and sends it to the fallback queue, twice (a redelivery, a second try)
    fixed["kind"] = {"S": "click"}
    for n in (1, 2):
        store.fallback[f"redrive-{n}"] = dict(fixed)
        clock.now += timedelta(hours=1)
        run = workflow(store, clock).run(f"redrive-{n}", "operator")
        assert run.status == "succeeded"
    # Then it counts once, with its tracking log, and is not quarantined again
    assert store.stats("d1")["total_clicks"] == clicks + 1
    assert getattr(store.log("d1", poison["sk"]["S"]), "type", None) == "click"
    assert list(store.quarantined) == [quarantine_key(poison)]


POISON_FAULT_POINTS = [
    "receive_fallback",
    "put_raw",
    "read_raw",
    "in_quarantine",
    "quarantine",
    "save_worker_pending",
    "put_item",
    "complete_worker_pending",
    "delete_fallback",
]


def poisoned_campaign() -> FakeWorkflowStore:
    """The campaign with two poison events in the table (one in the first batch of its shard), a
    garbled fallback event ahead of every checkpoint and a truncated fallback message."""
    store = seeded_store()
    campaign(store)
    store.add_raw_item(poison_item("an at that does not parse", "x0000001", seconds=1))
    store.add_raw_item(poison_item("no recipient id", "x0000002", seconds=2_000))
    store.fallback["m-poison"] = poison_item("a kind the workflow does not know", "y0000001", seconds=2_500)
    store.fallback["m-truncated"] = TRUNCATED_BODY
    return store


@pytest.mark.parametrize("operation", POISON_FAULT_POINTS)
def test_a_crash_at_any_call_while_quarantining_poison_events_then_a_rerun_gives_the_clean_totals(
    operation: str, reliability: Any
) -> None:
    expected = clean_snapshot(batch_size=2)
    clean = poisoned_campaign()
    workflow(clean, batch_size=2).run("clean", "schedule")
    assert clean.snapshot() == expected and len(clean.quarantined) == 4
    crashes = 0
    for nth in range(1, 60):
        # Given a run that dies at the nth call of an operation (nothing after it runs)
        store = poisoned_campaign()
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
        # Then the totals are those of a clean run without the poison, each poison is kept once
        assert rerun.status == "succeeded"
        assert store.snapshot() == expected, f"crash at {operation} call {nth}"
        assert sorted(store.quarantined) == sorted(clean.quarantined)
        assert store.fallback == {} and store.pending is None
    assert crashes > 0
    lost, doubled = lost_and_doubled(expected, store.snapshot())
    reliability.record(
        "Faults",
        f"poison raw events (table and fallback queue), the workflow killed at a {operation} call "
        "(every call in turn), then run again",
        crashes,
        "the rerun kept each poison event once, moved past it and counted every other event once",
        lost,
        doubled,
    )
    assert (lost, doubled) == (0, 0)


def test_late_events_behind_a_batch_of_poison_are_still_counted() -> None:
    # Given a run that moved a shard's checkpoint, then, visible only afterwards and timed before that
    # checkpoint, two poison events and a good one behind them in that shard
    store = seeded_store()
    store.add_raw_item(good_item("x0000001", 1_500))
    clock = Clock(RUN_AT)
    workflow(store, clock).run("run-1", "schedule")
    names = sorted(POISONS)[:2]
    for n, name in enumerate(names):
        item = good_item("x0000001", 1_400 + n)
        item["sk"] = {"S": raw_events.sort_key(item["sk"]["S"].split("#")[0], f"x{n + 2:07d}")}
        POISONS[name](item)
        store.add_raw_item(item)
    late_good = good_item("x0000001", 1_402)
    late_good["sk"] = {"S": raw_events.sort_key(late_good["sk"]["S"].split("#")[0], "x0000009")}
    store.add_raw_item(late_good)
    # When the next run reads the late events two at a time
    clock.now += timedelta(hours=1)
    run = workflow(store, clock, batch_size=2).run("run-2", "schedule")
    # Then the poison is quarantined and the good late event counts
    assert run.status == "succeeded"
    assert int(run.quarantined) == 2
    assert int(run.events_processed) == 1
    assert store.log("d1", late_good["sk"]["S"]) is not None
