"""Redirect -> raw events -> tracking workflow -> indicator items, on moto's DynamoDB."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from functions.consolidate import handler as consolidate_handler
from functions.consolidate.store import DynamoWorkflowStore
from functions.redirect import handler as redirect_handler
from functions.shared import raw_events, recipient_log_pages, recipient_logs, timeutil
from functions.shared.models import (
    DeliveryStatsModel,
    MessageModel,
    RawEventModel,
    RecipientLogPageModel,
    RunModel,
    TrackedUrlModel,
    TrackingLogModel,
    UrlStatsModel,
    WorkflowStateModel,
)
from functions.shared.tokens import LinkClaims, signer
from tests.apigw import FakeContext, http_event
from tests.stored_logs import delivery_logs

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"


@pytest.fixture
def delivery(aws_tables: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(redirect_handler, "_targets", None)
    monkeypatch.setattr(redirect_handler, "_sink", None)
    seed_delivery("d1")
    yield "d1"


def seed_delivery(delivery_id: str) -> None:
    """Two click links and an opt-out link, and the messages of recipients r1 to r5."""
    for url_id, category in (("1", "click"), ("2", "click"), ("3", "opt_out")):
        TrackedUrlModel(
            delivery_id=delivery_id,
            url_id=url_id,
            url=f"https://shop.example/{url_id}",
            label=url_id,
            category=category,
        ).save()
    for n in range(1, 6):
        MessageModel(
            delivery_id=delivery_id,
            sk=f"msg#r{n}",
            recipient_id=f"r{n}",
            email_domain="example.org",
            rendered_at="x",
        ).save()


class Browser:
    """A recipient's browser: keeps the person cookie like a real one."""

    def __init__(self, user_agent: str = CHROME) -> None:
        self.cookies: list[str] = []
        self.user_agent = user_agent

    def get(self, path: str) -> dict[str, Any]:
        event = http_event("GET", path, token=None, cookies=self.cookies or None, user_agent=self.user_agent)
        response = redirect_handler.lambda_handler(event, FakeContext())
        for cookie in response.get("cookies", []):
            self.cookies = [cookie.split(";", 1)[0]]
        return response


def click(recipient: str, url_id: str, proof: bool = False) -> str:
    return "/r/" + signer().sign(LinkClaims("c", "d1", recipient, url_id, proof=proof))


def pixel(recipient: str) -> str:
    return "/o/" + signer().sign(LinkClaims("o", "d1", recipient))


def run_workflow(run_id: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"run_id": run_id, "trigger": "api"} if run_id else {"source": "aws.events"}
    return consolidate_handler.lambda_handler(event, FakeContext())


def stats() -> dict[str, int]:
    item = DeliveryStatsModel.get("d1", "stats")
    fields = ("opens", "total_opens", "clicks", "person_clicks", "total_clicks", "opt_outs")
    return {name: int(getattr(item, name)) for name in fields}


def traffic() -> None:
    alice, bob, friend = Browser(), Browser(FIREFOX), Browser()
    assert alice.get(pixel("r1"))["statusCode"] == 200
    assert alice.get(click("r1", "1"))["headers"]["Location"] == "https://shop.example/1"
    alice.get(click("r1", "2"))
    bob.get(click("r2", "1"))  # a click without an open still proves an open
    friend.get(click("r1", "1"))  # r1 forwarded the message: another person clicks
    Browser().get(click("r3", "3"))  # opt-out
    Browser().get(click("r4", "1", proof=True))  # a proof: logged, never counted


# How long a held put waits for the other run: far beyond a run on a loaded machine, and a failure
# (not a hang) when the order it waits for never comes.
HELD_PUT_TIMEOUT_SECONDS = 60.0
EXPECTED = {"opens": 3, "total_opens": 1, "clicks": 2, "person_clicks": 3, "total_clicks": 4, "opt_outs": 1}


def test_hits_become_logs_and_indicators(delivery: str) -> None:
    traffic()
    assert sum(RawEventModel.count(shard) for shard in raw_events.shards()) == 7
    result = run_workflow()
    assert result == {"run_id": result["run_id"], "status": "succeeded", "events_processed": 7}
    assert stats() == EXPECTED
    assert UrlStatsModel.get("d1", "url#1").clicks == 3
    assert UrlStatsModel.get("d1", "url#1").distinct_clicks == 2
    logs = delivery_logs("d1")
    assert len(logs) == 7
    assert [log.proof for log in logs].count(True) == 1
    by_recipient = [
        log
        for share in recipient_logs.log_keys("r1")
        for log in recipient_logs.load((share.partition, sk) for sk in share.sks).values()
    ]
    assert {log.type for log in by_recipient} == {"open", "click"}
    [run] = list(RunModel.query("runs"))
    assert run.status == "succeeded" and run.events_processed == 7 and run.finished_at


def test_a_second_run_adds_nothing_and_late_events_count_once(delivery: str) -> None:
    traffic()
    run_workflow("run-a")
    assert run_workflow("run-b")["events_processed"] == 0
    assert stats() == EXPECTED
    Browser().get(click("r5", "2"))
    assert run_workflow("run-c")["events_processed"] == 1
    assert stats()["clicks"] == 3
    assert [r.status for r in RunModel.query("runs", scan_index_forward=False)] == ["succeeded"] * 3


def spill_past_one_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """States list one log key at most: every further one spills to a page (``recipient_log_pages``)."""
    monkeypatch.setattr(recipient_log_pages, "MAX_RECIPIENT_LOGS", 1)


def assert_every_log_listed_once(delivery_id: str) -> None:
    """Each recipient's logs are listed exactly once: in their state or in one page, none twice."""
    logs = delivery_logs(delivery_id)
    spilled = 0
    for recipient in {str(log.recipient_id) for log in logs}:
        listed = [sk for share in recipient_logs.log_shares(recipient, delivery_id) for sk in share.sks]
        for key in recipient_logs.page_keys(recipient):
            listed += RecipientLogPageModel.get(*key).log_keys()
            spilled += 1
        assert sorted(listed) == sorted(str(log.sk) for log in logs if log.recipient_id == recipient)
    assert spilled > 0


@pytest.mark.parametrize(
    ("operation", "nth", "where"),
    [
        ("put_items", 1, "after a batch's tracking logs, before the flush"),
        ("put_items", 3, "after three batches' tracking logs, before the flush"),
        ("complete_worker_pending", 1, "after the flush's writes, before its checkpoints"),
    ],
)
def test_a_run_killed_mid_way_then_rerun_gives_exact_totals(
    delivery: str, monkeypatch: pytest.MonkeyPatch, operation: str, nth: int, where: str, reliability: Any
) -> None:
    # Given a run that dies at the nth call of a store operation (after its puts, before completing),
    # its recipients' states spilling their log keys to pages
    spill_past_one_key(monkeypatch)
    traffic()
    calls = {"n": 0}
    original = getattr(DynamoWorkflowStore, operation)

    def die(self: DynamoWorkflowStore, *arguments: Any, **keywords: Any) -> None:
        calls["n"] += 1
        if operation == "put_items":
            original(self, *arguments, **keywords)
        if calls["n"] == nth:
            raise RuntimeError(f"killed {where}")

    monkeypatch.setattr(DynamoWorkflowStore, operation, die)
    with pytest.raises(RuntimeError):
        run_workflow("crashing")
    assert RunModel.get("runs", "crashing").status == "failed"
    # When the next run goes
    monkeypatch.setattr(DynamoWorkflowStore, operation, original)
    run_workflow("recovery")
    # Then the totals are exact
    counted = stats()
    reliability.record(
        "Faults",
        f"tracking workflow killed {where} (moto)",
        1,
        "run recorded failed; the next run read the unflushed events again or replayed the pending batch",
        sum(max(0, EXPECTED[k] - counted[k]) for k in EXPECTED),
        sum(max(0, counted[k] - EXPECTED[k]) for k in EXPECTED),
    )
    assert counted == EXPECTED
    assert len(delivery_logs("d1")) == 7
    assert_every_log_listed_once("d1")
    assert WorkflowStateModel.get("state", "tracking").pending_at is None
    assert DynamoWorkflowStore().load_worker(0).pending is None  # the (lone) worker's slot


@pytest.mark.parametrize("written", [0, 1, 3], ids=["before-any", "after-one", "after-three"])
def test_a_run_killed_while_putting_its_flush_leaves_the_pending_batch_and_the_checkpoints_behind(
    delivery: str, monkeypatch: pytest.MonkeyPatch, written: int, reliability: Any
) -> None:
    # Given a run that dies while putting the indicator items of its flush, after `written` of them
    # (states and the pages of log keys they spill)
    spill_past_one_key(monkeypatch)
    traffic()
    original = DynamoWorkflowStore.put_items

    def die_in_the_flush(self: DynamoWorkflowStore, items: Any) -> None:
        items = list(items)
        if all(isinstance(item, TrackingLogModel) for item in items):
            original(self, items)  # a batch's tracking logs, put as soon as it is computed
            return
        original(self, [item for item in items if not isinstance(item, TrackingLogModel)][:written])
        raise RuntimeError("killed while putting the flush's indicator items")

    monkeypatch.setattr(DynamoWorkflowStore, "put_items", die_in_the_flush)
    with pytest.raises(RuntimeError):
        run_workflow("crashing")
    # Then in the real store the (lone) worker's pending batch is saved and no checkpoint has moved yet
    state = DynamoWorkflowStore().load_state()
    assert DynamoWorkflowStore().load_worker(0).pending is not None
    assert state.checkpoints == {}
    # When the next run goes
    monkeypatch.setattr(DynamoWorkflowStore, "put_items", original)
    recovery = run_workflow("recovery")
    # Then it replays the pending batch: the totals are exact, nothing is pending, every shard moved on
    counted = stats()
    reliability.record(
        "Faults",
        "tracking workflow killed while putting its flush's indicator items (moto)",
        1,
        "the pending batch was saved before any put and the checkpoints moved only after them: replayed",
        sum(max(0, EXPECTED[k] - counted[k]) for k in EXPECTED),
        sum(max(0, counted[k] - EXPECTED[k]) for k in EXPECTED),
    )
    assert recovery["status"] == "succeeded"
    assert counted == EXPECTED
    assert UrlStatsModel.get("d1", "url#1").clicks == 3
    assert len(delivery_logs("d1")) == 7
    assert_every_log_listed_once("d1")
    state = DynamoWorkflowStore().load_state()
    assert state.pending is None
    shards = {event.shard for shard in raw_events.shards() for event in RawEventModel.query(shard)}
    assert set(state.checkpoints) == shards


def test_events_recorded_while_a_run_works_wait_for_the_next_run(delivery: str) -> None:
    traffic()
    # an event stamped after the run's start is not part of that run
    future = timeutil.now() + timedelta(minutes=5)
    RawEventModel(
        shard=raw_events.shard_of("d1", "r5"),
        sk=raw_events.sort_key(timeutil.iso(future), "late1"),
        event_id="late1",
        kind="click",
        delivery_id="d1",
        recipient_id="r5",
        url_id="1",
        at=timeutil.iso(future),
        person_id="p-late",
        expires_at=int(future.timestamp()) + 86400,
    ).save()
    assert run_workflow("now")["events_processed"] == 7


def test_two_runs_started_at_once_one_works_the_other_is_skipped(
    delivery: str, monkeypatch: pytest.MonkeyPatch, reliability: Any
) -> None:
    import threading

    # Given a first run that, holding the lock, puts nothing until the second run has returned
    traffic()
    original = DynamoWorkflowStore.put_items
    first_is_writing = threading.Event()
    second_returned = threading.Event()
    waits: list[bool] = []

    def held_put(self: DynamoWorkflowStore, items: Any) -> Any:
        first_is_writing.set()
        waits.append(second_returned.wait(HELD_PUT_TIMEOUT_SECONDS))
        return original(self, items)

    monkeypatch.setattr(DynamoWorkflowStore, "put_items", held_put)
    results: dict[str, dict[str, Any]] = {}
    first = threading.Thread(target=lambda: results.setdefault("a", run_workflow("run-a")))
    first.start()
    assert first_is_writing.wait(HELD_PUT_TIMEOUT_SECONDS), "the first run never reached its first put"
    # When a second run starts while the first holds the lock
    try:
        results["b"] = run_workflow("run-b")
    finally:
        second_returned.set()
        first.join(HELD_PUT_TIMEOUT_SECONDS)
    # Then the first run's puts waited for the second run's end, none of them gave up waiting
    assert not first.is_alive(), "the first run did not finish"
    assert waits and all(waits), "a put of the first run gave up waiting for the second run"
    counted = stats()
    reliability.record(
        "Faults",
        "two tracking workflow runs started at once",
        1,
        "one ran; the other found the lock taken and was recorded skipped",
        sum(max(0, EXPECTED[k] - counted[k]) for k in EXPECTED),
        sum(max(0, counted[k] - EXPECTED[k]) for k in EXPECTED),
    )
    assert {results["a"]["status"], results["b"]["status"]} == {"succeeded", "skipped"}
    assert results["a"]["events_processed"] == 7 and results["b"]["events_processed"] == 0
    assert stats() == EXPECTED
    assert RunModel.get("runs", "run-b").status == "skipped"


def test_a_run_puts_each_indicator_item_once_and_moves_every_checkpoint_in_one_update(
    delivery: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given hits spread over several raw-event shards
    traffic()
    shards = {event.shard for shard in raw_events.shards() for event in RawEventModel.query(shard)}
    assert len(shards) > 1
    puts: dict[tuple[str, str], int] = {}
    original = DynamoWorkflowStore.put_items

    def counting_put(self: DynamoWorkflowStore, items: Any) -> None:
        items = list(items)
        for item in items:
            key = (str(item.delivery_id), str(item.sk))
            puts[key] = puts.get(key, 0) + 1
        original(self, items)

    monkeypatch.setattr(DynamoWorkflowStore, "put_items", counting_put)
    # When one run consolidates them
    assert run_workflow("run-a")["events_processed"] == 7
    # Then every item was put once, the delivery's stats item included, and every shard's checkpoint moved
    assert puts[("d1", "stats")] == 1
    assert set(puts.values()) == {1}
    state = WorkflowStateModel.get("state", "tracking")
    assert set(state.checkpoints.as_dict()) == shards and state.pending_at is None
    assert stats() == EXPECTED
