"""The tracking workflow against hostile input: crafted User-Agents, writes DynamoDB refuses (poison
items), and deleted deliveries, with the in-memory store."""

from __future__ import annotations

import json
import random
import zlib
from datetime import timedelta
from typing import Any

import pytest

from functions.consolidate.workflow import TrackingWorkflow, WorkflowConfig
from functions.shared import limits
from functions.shared.limits import item_size
from functions.shared.models import DeliveryStatsModel, MessageModel, TrackingLogModel
from functions.shared.raw_events import RawEvent, to_item
from functions.shared.tables import tracking_log_partition
from tests.fakes_workflow import Crash, FakeWorkflowStore, refused_by_dynamodb
from tests.unit.test_workflow import (
    APPLE_MAIL,
    CHROME,
    FAULT_POINTS,
    RUN_AT,
    T0,
    Clock,
    campaign,
    seeded_store,
    workflow,
)

CRAFTED_SUFFIX = "/1.0 CFNetwork/1 Darwin/1"  # ua_parser names the browser after whatever precedes it
LETTERS = "abcdefghijklmnopqrstuvwxyz"
REFUSED = "ValidationException: One or more parameter values were invalid"


class Hits:
    """Raw events of any delivery, with unique ids and increasing times."""

    def __init__(self, store: FakeWorkflowStore) -> None:
        self.store = store
        self.n = 0

    def open(
        self, delivery_id: str, recipient: str, user_agent: str | None, at_offset: int | None = None
    ) -> None:
        self.n += 1
        self.store.add_raw(self.event(delivery_id, recipient, user_agent, at_offset))

    def event(
        self, delivery_id: str, recipient: str, user_agent: str | None, at_offset: int | None = None
    ) -> RawEvent:
        return RawEvent(
            event_id=f"h{self.n:07d}",
            kind="open",
            delivery_id=delivery_id,
            recipient_id=recipient,
            url_id=None,
            at=T0 + timedelta(seconds=self.n if at_offset is None else at_offset),
            user_agent=user_agent,
            person_id=None,
            ip="203.0.113.0",
            proof=False,
        )


def crafted_user_agents(count: int, seed: int = 11) -> list[str]:
    """Half 200 random letters, half 200 random CJK characters (3 UTF-8 bytes each), then the suffix."""
    chance = random.Random(seed)
    agents = []
    for n in range(count):
        if n % 2:
            name = "".join(chr(chance.randrange(0x4E00, 0x9FFF)) for _ in range(200))
        else:
            name = "".join(chance.choice(LETTERS) for _ in range(200))
        agents.append(name + CRAFTED_SUFFIX)
    return agents


def stats_of(store: FakeWorkflowStore, delivery_id: str) -> DeliveryStatsModel:
    item = store.indicators[(delivery_id, "stats")]
    assert isinstance(item, DeliveryStatsModel)
    return item


def plain(value: Any) -> dict[str, Any]:
    return value.as_dict() if hasattr(value, "as_dict") else dict(value or {})


# --- crafted names ----------------------------------------------------------------------------


def test_a_thousand_crafted_user_agents_leave_the_stats_item_bounded_and_its_totals_exact(
    reliability: Any,
) -> None:
    # Given a bystander campaign on d1, and on d2 1,000 opens with distinct crafted User-Agents
    # among 31 opens from Chrome (every 33rd) and 13 from Apple Mail (every 83rd)
    store = seeded_store()
    campaign(store)
    hits = Hits(store)
    for n, agent in enumerate(crafted_user_agents(1_000)):
        hits.open("d2", "victim", agent)
        if n % 33 == 0:
            hits.open("d2", "victim", CHROME)
        if n % 83 == 0:
            hits.open("d2", "victim", APPLE_MAIL)
    bystander = seeded_store()
    campaign(bystander)

    # When the workflow runs
    run = workflow(store).run("run-1", "schedule")
    workflow(bystander).run("clean", "schedule")

    # Then the run succeeded without refusing anything, and d2 counts every open
    assert run.status == "succeeded" and store.quarantined == {}
    stats = stats_of(store, "d2")
    assert int(stats.total_opens) == 1_044 and int(stats.opens) == 1
    breakdowns, other = plain(stats.breakdowns), plain(stats.other_breakdowns)
    # And the browser breakdown names 100 browsers, Chrome and Apple Mail's among them, the rest "other"
    browsers = breakdowns["browser"]
    assert len(browsers) == limits.MAX_BREAKDOWN_NAMES
    assert browsers["Chrome"] == {"opens": 31, "clicks": 0}
    assert browsers["Apple Mail"] == {"opens": 13, "clicks": 0}
    assert sum(int(row["opens"]) for row in browsers.values()) + int(other["browser"]["opens"]) == 1_044
    assert all(len(name.encode()) <= limits.MAX_NAME_BYTES for name in browsers)
    assert item_size(stats.serialize()) <= limits.ITEM_BUDGET
    # And the bystander delivery's counts are those of a run without the attack
    assert store.stats("d1") == bystander.stats("d1")
    reliability.record(
        "Bad input",
        "1,000 opens of one pixel with distinct crafted User-Agents (200 random letters or CJK characters "
        "+ /1.0 CFNetwork/1 Darwin/1), in-memory store",
        1,
        "run succeeded; 100 browser names kept (Chrome, Apple Mail among them), the rest in Other; "
        "totals exact, bystander exact",
        abs(int(stats.total_opens) - 1_044),
        0,
    )


# --- poison items -----------------------------------------------------------------------------


def refuse_stats_of(delivery_id: str) -> Any:
    def refuse(data: dict[str, Any]) -> str | None:
        if data.get("delivery_id") == {"S": delivery_id} and data.get("sk") == {"S": "stats"}:
            return REFUSED
        return refused_by_dynamodb(data)

    return refuse


def poisoned_store() -> FakeWorkflowStore:
    """The bystander campaign on d1, and three opens on d2, whose stats item DynamoDB refuses."""
    store = seeded_store()
    campaign(store)
    hits = Hits(store)
    for n in range(3):
        hits.open("d2", f"r{n}", CHROME)
    store.refuse = refuse_stats_of("d2")
    return store


def bystander_snapshot() -> dict[str, Any]:
    clean = seeded_store()
    campaign(clean)
    workflow(clean, batch_size=2).run("clean", "schedule")
    return clean.snapshot()


def only(delivery_id: str, snapshot: dict[str, Any]) -> dict[str, Any]:
    return {
        part: [(key, value) for key, value in rows if key[0] == delivery_id]
        for part, rows in snapshot.items()
    }


def test_names_tied_at_the_bound_are_kept_by_name_and_the_last_of_them_goes_to_other() -> None:
    # Given 101 browser names opened once each, in an order that is not their names'
    store = seeded_store()
    hits = Hits(store)
    names = [f"b{n:03d}" for n in range(limits.MAX_BREAKDOWN_NAMES + 1)]
    for name in reversed(names):
        hits.open("d2", "victim", name + CRAFTED_SUFFIX)
    # When the workflow consolidates them
    workflow(store).run("run-1", "schedule")
    # Then the 100 first by name are kept and the last one is counted in "other"
    stats = stats_of(store, "d2")
    browsers = plain(stats.breakdowns)["browser"]
    assert sorted(browsers) == names[:-1]
    assert plain(stats.other_breakdowns)["browser"] == {"opens": 1, "clicks": 0}


def test_an_indicator_item_dynamodb_refuses_is_quarantined_and_the_run_goes_on(reliability: Any) -> None:
    # Given DynamoDB refusing d2's stats item
    store = poisoned_store()
    # When the workflow runs
    run = workflow(store, batch_size=2).run("run-1", "schedule")
    # Then the run succeeded, saying what it quarantined
    assert run.status == "succeeded"
    assert int(run.quarantined) == 1
    assert [error for error in run.errors if "quarantined" in error] == [
        f'quarantined indicators item ["d2", "stats"]: {REFUSED}'
    ]
    # And the refused item is kept whole, with the key and the error, in the workflow table
    [kept] = store.quarantined.values()
    assert (kept.table, json.loads(kept.key), kept.error, kept.complete) == (
        "indicators",
        ["d2", "stats"],
        REFUSED,
        True,
    )
    refused = DeliveryStatsModel.from_raw_data(json.loads(zlib.decompress(kept.item)))
    assert int(refused.total_opens) == 3
    # And every other item is written as in a run without the poison; the checkpoints moved
    assert only("d1", store.snapshot()) == only("d1", bystander_snapshot())
    assert store.pending is None
    assert len([log for log in store.logs.values() if log.delivery_id == "d2"]) == 3
    again = workflow(store, Clock(RUN_AT + timedelta(hours=1))).run("run-2", "schedule")
    assert again.status == "succeeded" and int(again.events_processed) == 0
    reliability.record(
        "Bad input",
        "an indicator item DynamoDB refuses (ValidationException) in a flush",
        1,
        "quarantined with its key and error, named in the run's errors; the run succeeded, checkpoints moved, "
        "every other delivery counted exactly",
        0,
        0,
    )


@pytest.mark.parametrize("operation", [*FAULT_POINTS, "quarantine"])
def test_a_crash_at_any_point_with_a_poison_item_then_a_rerun_quarantines_it_once_and_counts_the_rest_once(
    operation: str, reliability: Any
) -> None:
    expected_store = poisoned_store()
    workflow(expected_store, batch_size=2).run("clean", "schedule")
    expected = expected_store.snapshot()
    crashes = 0
    for nth in range(1, 60):
        # Given a run that dies at the nth call of an operation, DynamoDB refusing d2's stats item
        store = poisoned_store()
        clock = Clock(RUN_AT)
        store.fault = lambda op, count, nth=nth: op == operation and count == nth
        try:
            workflow(store, clock, batch_size=2).run("crashing", "schedule")
        except Crash:
            crashes += 1
        else:
            break
        # When a new process runs again once the dead run's lock has expired (a pending batch replayed)
        store.restart()
        clock.now += timedelta(hours=1)
        rerun = workflow(store, clock, batch_size=2).run("rerun", "schedule")
        # Then everything but the poison is as in a clean run, and the poison is quarantined
        assert rerun.status == "succeeded"
        assert store.snapshot() == expected, f"crash at {operation} call {nth}"
        assert set(store.quarantined) == set(expected_store.quarantined)
        assert store.pending is None
    assert crashes > 0
    reliability.record(
        "Bad input",
        f"a poison indicator item, the workflow killed at a {operation} call (every call in turn), then run again",
        crashes,
        "the pending batch holding the poison was replayed: poison quarantined again under the same key, "
        "everything else counted once",
        0,
        0,
    )


def test_a_tracking_log_dynamodb_refuses_is_quarantined_its_bare_log_put_and_counted_once() -> None:
    # Given DynamoDB refusing the full tracking log of the last open (the one a late-event check re-reads)
    store = seeded_store()
    campaign(store)
    hits = Hits(store)
    hits.open("d1", "r3", APPLE_MAIL, at_offset=3_500)
    last = max(key for key in ((e.delivery_id, e.sk) for shard in store.raw.values() for e in shard))

    puts: list[str] = []

    def refuse(data: dict[str, Any]) -> str | None:
        if (data["delivery_id"]["S"], data["sk"]["S"]) != last:
            return None
        puts.append("bare" if puts else "full")  # the workflow puts the bare log after the full one
        return REFUSED if puts[-1] == "full" else None

    store.refuse = refuse
    clock = Clock(RUN_AT)
    # When the workflow runs, and again
    run = workflow(store, clock).run("run-1", "schedule")
    clock.now += timedelta(minutes=5)
    workflow(store, clock).run("run-2", "schedule")
    # Then the bare log stands in for it, the full one is quarantined, and the open counts once
    assert run.status == "succeeded" and int(run.quarantined) == 1
    bare = store.log(*last)
    assert bare is not None
    assert (bare.type, bare.counted, bare.recipient_id) == ("open", True, "r3")
    # (keeping the client names a later honeypot hit takes the open off the human breakdowns under)
    assert (bare.browser, bare.os, bare.device) == ("Apple Mail", "Mac OS X", "desktop")
    [kept] = store.quarantined.values()
    assert (kept.table, kept.instead) == (
        "tracking-logs",
        "its bare tracking log (no url, label, amount)",
    )
    assert TrackingLogModel.from_raw_data(json.loads(zlib.decompress(kept.item))).browser == "Apple Mail"
    assert store.stats("d1")["total_opens"] == 3 + 1


def test_a_tracking_log_whose_bare_log_is_refused_too_is_quarantined_with_nothing_in_its_place() -> None:
    # Given DynamoDB refusing the tracking log of the last open, full or bare
    store = seeded_store()
    campaign(store)
    Hits(store).open("d1", "r3", APPLE_MAIL, at_offset=3_500)
    last = max(key for key in ((e.delivery_id, e.sk) for shard in store.raw.values() for e in shard))

    def refuse(data: dict[str, Any]) -> str | None:
        return REFUSED if (data["delivery_id"]["S"], data["sk"]["S"]) == last else None

    store.refuse = refuse
    # When the workflow runs
    run = workflow(store).run("run-1", "schedule")
    # Then the run succeeds, the log is quarantined once, and says nothing stands in for it
    assert run.status == "succeeded" and int(run.quarantined) == 1
    assert store.log(*last) is None
    [kept] = store.quarantined.values()
    assert (kept.table, json.loads(kept.key), kept.instead) == (
        "tracking-logs",
        [tracking_log_partition("d1", "r3"), last[1]],  # its key in the table
        None,
    )


def test_a_poison_indicator_item_refused_at_each_flush_is_kept_each_time_with_that_flushs_counts() -> None:
    # Given DynamoDB refusing d2's stats item, and a run that flushes after every batch
    store = poisoned_store()
    config = WorkflowConfig(batch_size=2, max_carried_items=1)
    # When it runs
    run = TrackingWorkflow(store, config, clock=Clock(RUN_AT)).run("run-1", "schedule")
    # Then each refused flush of the item is quarantined apart, holding the opens of its own flush only
    # (the item is read again after a refusal, not carried on as written), nothing in place of it
    assert run.status == "succeeded"
    kept = [item for item in store.quarantined.values() if json.loads(item.key) == ["d2", "stats"]]
    opens = sorted(
        int(DeliveryStatsModel.from_raw_data(json.loads(zlib.decompress(k.item))).total_opens) for k in kept
    )
    assert len(kept) > 1 and sum(opens) == 3 and opens == [1] * len(kept)
    assert {k.instead for k in kept} == {None}


def test_a_long_refusal_is_cut_to_200_characters_in_the_runs_errors() -> None:
    # Given DynamoDB refusing d2's stats item with a 300-character message
    store = poisoned_store()
    long_error = "ValidationException: " + "x" * 279
    store.refuse = lambda data: long_error if refuse_stats_of("d2")(data) else None
    # When the workflow runs
    run = workflow(store).run("run-1", "schedule")
    # Then the run's errors name the item with the message's first 200 characters; the quarantine keeps more
    assert [error for error in run.errors if "quarantined" in error] == [
        f'quarantined indicators item ["d2", "stats"]: {long_error[:200]}'
    ]
    [kept] = store.quarantined.values()
    assert kept.error == long_error


def test_a_fallback_event_dynamodb_refuses_is_quarantined_and_leaves_the_queue() -> None:
    # Given a fallback message holding a raw event too large for DynamoDB (as an older redirect made)
    store = seeded_store()
    campaign(store)
    hits = Hits(store)
    item = to_item(hits.event("d1", "r1", CHROME), 30)
    item["page_url"] = {"S": "https://shop.example/" + "€" * 150_000}
    store.fallback["m-poison"] = item
    # When the workflow runs
    run = workflow(store).run("run-1", "schedule")
    # Then the event is quarantined, the queue is empty and everything else counted
    assert run.status == "succeeded" and int(run.quarantined) == 1
    [kept] = store.quarantined.values()
    assert kept.table == "raw-events" and kept.complete is True  # 450 KB of euro signs compress well
    assert json.loads(zlib.decompress(kept.item)) == item
    assert store.fallback == {}
    assert store.stats("d1") == seeded_and_run().stats("d1")


def seeded_and_run() -> FakeWorkflowStore:
    store = seeded_store()
    campaign(store)
    workflow(store).run("clean", "schedule")
    return store


# --- deleted deliveries -----------------------------------------------------------------------


def test_a_deleted_delivery_without_links_counts_no_more_opens() -> None:
    # Given d3, a delivery without links whose opens were counted once
    store = FakeWorkflowStore()
    store.add_message(
        MessageModel(
            delivery_id="d3", sk="msg#r1", recipient_id="r1", email_domain="example.org", rendered_at="x"
        )
    )
    hits = Hits(store)
    hits.open("d3", "r1", CHROME)
    clock = Clock(RUN_AT)
    workflow(store, clock).run("run-1", "schedule")
    assert store.stats("d3")["total_opens"] == 1
    # When it is deleted and more opens come
    store.delete_delivery("d3")
    hits.open("d3", "r1", CHROME, at_offset=3_600 + 60)
    hits.open("d3", "r2", CHROME, at_offset=3_600 + 61)
    clock.now += timedelta(hours=1)
    workflow(store, clock).run("run-2", "schedule")
    # Then they are logged, not counted
    assert store.stats("d3") == {**store.stats("d3"), "opens": 1, "total_opens": 1}
    assert sorted(log.counted for log in store.logs.values() if log.delivery_id == "d3") == [
        False,
        False,
        True,
    ]
