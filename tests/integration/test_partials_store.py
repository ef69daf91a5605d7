"""The DynamoDB store writes a worker's partial items a few BatchWriteItem requests at once, retrying
what DynamoDB leaves unprocessed, reads them at once with the stored items, and the merge's slices
delete them, each its own partitions (moto)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from functions.consolidate import store as store_module
from functions.consolidate.store import PARTIAL_SPREAD, WRITERS, DynamoWorkflowStore
from functions.consolidate.workflow import TrackingWorkflow, WorkflowConfig
from functions.shared import settings
from functions.shared.models import STATS_SK, DeliveryStatsModel
from functions.shared.tables import WORKFLOW


def partials(count: int) -> list[DeliveryStatsModel]:
    """Partial items of ``count`` deliveries: spread over the 16 partial partitions, more than one
    BatchWriteItem request in all."""
    return [DeliveryStatsModel(delivery_id=f"d{n:04d}", sk=STATS_SK, opens=n) for n in range(count)]


def stored_opens(store: DynamoWorkflowStore, run_id: str, worker: int) -> list[int]:
    """The opens of every partial item the worker's partitions hold, read slice by slice."""
    return sorted(
        int(item.opens)  # type: ignore[attr-defined]
        for spread in range(PARTIAL_SPREAD)
        for item in store.slice_partials(run_id, worker, spread)
    )


class GatheredWrites:
    """DynamoDB (moto) answering the first ``together`` BatchWriteItem requests only once that many
    wait at once, in as many threads: a store sending them one after another gets no answer, its first
    request fails after ``WAIT`` seconds (``threading.BrokenBarrierError``)."""

    WAIT = 5.0

    def __init__(self, together: int) -> None:
        self._client = boto3.client("dynamodb")
        self.together = together
        self.gate = threading.Barrier(together, timeout=self.WAIT)
        self.arrived = 0
        self.lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_write_item(self, **arguments: Any) -> Any:
        with self.lock:
            self.arrived += 1
            gated = self.arrived <= self.together
        if gated:
            self.gate.wait()
        return self._client.batch_write_item(**arguments)


class HalfProcessed:
    """DynamoDB (moto) writing only the first half of a BatchWriteItem request of several items and
    answering the rest as UnprocessedItems, as it does under throttling; a request of one item it writes."""

    def __init__(self) -> None:
        self._client = boto3.client("dynamodb")
        self.requests = 0
        self.lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_write_item(self, RequestItems: dict[str, list[Any]]) -> Any:
        with self.lock:
            self.requests += 1
        ((table, writes),) = RequestItems.items()
        if len(writes) == 1:
            return self._client.batch_write_item(RequestItems=RequestItems)
        done, left = writes[: len(writes) // 2], writes[len(writes) // 2 :]
        self._client.batch_write_item(RequestItems={table: done})
        return {"UnprocessedItems": {table: left}}


class StoreTime:
    """The time module as the store sees it, its waits recorded, not slept: only the store's own
    (patching ``time.sleep`` itself would record, and skip, every thread's)."""

    def __init__(self, slept: list[float]) -> None:
        self.sleep = slept.append

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def test_given_partials_of_many_requests_when_put_then_writers_requests_are_in_flight_at_once(
    aws_tables: None,
) -> None:
    # Given DynamoDB that answers none of the first WRITERS BatchWriteItem requests until they all wait
    client = GatheredWrites(together=WRITERS)
    store = DynamoWorkflowStore(client)
    items = partials(300)
    # When a worker puts its partial items (more than WRITERS requests of 25)
    store.put_partials("run-1", 0, items)
    # Then the requests went several at once (one after another, the first would never be answered),
    # and every partial item is stored once, in its partition
    assert client.arrived >= len(items) / 25 > WRITERS
    assert stored_opens(store, "run-1", 0) == list(range(300))


def test_given_dynamodb_leaving_writes_unprocessed_when_partials_are_put_then_they_are_retried_with_backoff_and_none_is_lost(
    aws_tables: None, monkeypatch: pytest.MonkeyPatch, reliability: Any
) -> None:
    # Given DynamoDB that writes half of each request and leaves the other half unprocessed
    client = HalfProcessed()
    store = DynamoWorkflowStore(client)
    slept: list[float] = []
    monkeypatch.setattr(store_module, "time", StoreTime(slept))
    items = partials(400)
    # When a worker puts its partial items
    store.put_partials("run-1", 2, items)
    # Then the unprocessed writes were sent again, each time after a longer wait
    opens = stored_opens(store, "run-1", 2)
    found = store.load_partials("run-1", 2, [(str(item.delivery_id), STATS_SK) for item in items])
    lost = len(set(range(400)) - set(opens))
    doubled = len(opens) - len(set(opens))
    reliability.record(
        "Faults",
        "DynamoDB leaves half of every BatchWriteItem request of a worker's partial items unprocessed (moto)",
        client.requests,
        "the unprocessed writes sent again with backoff, requests several at once",
        lost,
        doubled,
    )
    assert client.requests > len(items) / 25
    assert {0.05, 0.1, 0.2, 0.4} <= set(slept) and max(slept) <= 2.0
    # And none is lost: every partial item is stored once, and reads back by its key
    assert opens == list(range(400))
    assert sorted(int(model.opens) for model in found.values()) == list(range(400))  # type: ignore[attr-defined]


def expiries_after(written_at: float, prefix: str) -> list[bool]:
    """For each item of the workflow table whose key starts with ``prefix``: does its TTL attribute
    expire it about 7 days after ``written_at``?"""
    return [
        abs(int(item["expires_at"]["N"]) - (written_at + 7 * 86_400)) < 60
        for item in boto3.client("dynamodb").scan(TableName=WORKFLOW.table_name)["Items"]
        if item["pk"]["S"].startswith(prefix)
    ]


def test_given_a_workers_partial_items_when_put_then_each_stored_item_expires_a_week_ahead(
    aws_tables: None,
) -> None:
    # Given a worker's partial items, over several requests and every partial partition
    store = DynamoWorkflowStore()
    # When they are put
    written_at = time.time()
    store.put_partials("run-1", 1, partials(60))
    # Then each stored item carries the workflow table's TTL attribute, about 7 days ahead
    assert expiries_after(written_at, "partial#run-1#1#") == [True] * 60


def test_given_a_finishers_merge_and_slices_when_saved_then_each_stored_page_expires_a_week_ahead(
    aws_tables: None,
) -> None:
    # Given a finisher holding the lock
    store = DynamoWorkflowStore()
    assert store.acquire_lock("run-1", time.time(), 900)
    written_at = time.time()
    # When it saves its merge pages, a slice's pages and summary, and the slice's put mark
    store.save_merge("run-1", "run-1", [b"page-0", b"page-1"])
    store.save_slice("run-1", 3, [b"slice-page"], b"summary")
    store.slice_put("run-1", 3, b"outcome")
    # Then each stored item carries the workflow table's TTL attribute, about 7 days ahead: the pages an
    # interrupted run never deletes do not stay for good
    assert expiries_after(written_at, "merge#run-1") == [True] * 5


def test_given_partial_and_stored_items_when_a_worker_reads_both_then_the_two_reads_are_in_flight_at_once(
    aws_tables: None,
) -> None:
    # Given a worker's partial items of 150 deliveries and stored items of 150, 100 of them the same
    store = DynamoWorkflowStore()
    store.put_partials("run-1", 0, partials(150))
    assert (
        store.put_items(
            [
                DeliveryStatsModel(delivery_id=f"d{n:04d}", sk=STATS_SK, opens=1_000 + n)
                for n in range(50, 200)
            ]
        )
        == []
    )
    # And DynamoDB that answers neither read until both wait at once (one after another, the first
    # would never be answered: ``threading.BrokenBarrierError`` after 5 s)
    both = threading.Barrier(2, timeout=GatheredWrites.WAIT)

    def gated(read: Any) -> Any:
        def wait_then_read(*arguments: Any) -> Any:
            both.wait()
            return read(*arguments)

        return wait_then_read

    store.load_partials = gated(store.load_partials)  # type: ignore[method-assign]
    store.load_indicators = gated(store.load_indicators)  # type: ignore[method-assign]
    keys = [(f"d{n:04d}", STATS_SK) for n in range(250)]
    # When the worker reads them
    found, stored = store.load_partials_and_indicators("run-1", 0, keys, keys)
    # Then each read answers what DynamoDB holds: the partial items and the stored ones, every one once
    assert sorted(int(model.opens) for model in found.values()) == list(range(150))  # type: ignore[attr-defined]
    assert sorted(int(model.opens) for model in stored.values()) == [1_000 + n for n in range(50, 200)]  # type: ignore[attr-defined]
    assert set(found) == set(keys[:150]) and set(stored) == set(keys[50:200])


class CountedQueries:
    """DynamoDB (moto), counting the Query requests by partition key."""

    def __init__(self) -> None:
        self._client = boto3.client("dynamodb")
        self.queries: dict[str, int] = {}
        self.lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def query(self, **arguments: Any) -> Any:
        pk = arguments["ExpressionAttributeValues"][":pk"]["S"]
        with self.lock:
            self.queries[pk] = self.queries.get(pk, 0) + 1
        return self._client.query(**arguments)


def test_given_two_workers_partials_when_every_slice_deletes_its_own_then_none_is_left_and_each_partition_is_queried_once(
    aws_tables: None,
) -> None:
    # Given two workers' partial items over every partial partition, and a partial item of another run
    client = CountedQueries()
    store = DynamoWorkflowStore(client)
    store.put_partials("run-1", 0, partials(120))
    store.put_partials("run-1", 1, partials(90))
    store.put_partials("run-0", 0, partials(1))
    # When each slice of the merge deletes its partition of both workers' partial items
    for spread in range(PARTIAL_SPREAD):
        store.delete_slice_partials("run-1", 2, spread)
    # Then none of the run's is left, the other run's is, and each partition was queried once
    assert stored_opens(store, "run-1", 0) == stored_opens(store, "run-1", 1) == []
    assert stored_opens(store, "run-0", 0) == [0]
    deleting = {pk: n for pk, n in client.queries.items() if pk.startswith("partial#run-1#")}
    assert len(deleting) == 2 * PARTIAL_SPREAD and set(deleting.values()) == {2}  # deleted, then read above


@pytest.fixture
def eight_shards(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Few raw-event shards: a quick run."""
    monkeypatch.setenv("MSGTRACK_RAW_EVENT_SHARDS", "8")
    settings.reset_caches()
    yield
    monkeypatch.delenv("MSGTRACK_RAW_EVENT_SHARDS")
    settings.reset_caches()


class DeletesFailingOnce(DynamoWorkflowStore):
    """DynamoDB failing the first deletion of a slice's partial items (a throttled request), after the
    slice saved its merge."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def delete_slice_partials(self, run_id: str, workers: int, spread: int) -> None:
        if not self.failed:
            self.failed = True
            raise RuntimeError("ProvisionedThroughputExceededException")
        super().delete_slice_partials(run_id, workers, spread)


def test_given_a_slice_failing_to_delete_its_partials_when_retried_then_the_run_leaves_none_and_counts_each_event_once(
    aws_tables: None, reliability: Any, eight_shards: None
) -> None:
    from tests.integration.test_workflow_workers import _copy_into_dynamodb
    from tests.unit.test_workflow import RUN_AT, seeded_store
    from tests.unit.test_workflow_workers import first_run_events

    # Given the counts of one worker, and four workers on DynamoDB that consolidated the same events
    alone, seeded = seeded_store(), seeded_store()
    for events in (alone, seeded):
        first_run_events(events)
    TrackingWorkflow(alone, WorkflowConfig(workers=1), clock=lambda: RUN_AT).run("alone", "schedule")
    _copy_into_dynamodb(seeded)
    flow = TrackingWorkflow(
        DeletesFailingOnce(), WorkflowConfig(workers=4, batch_size=2), clock=lambda: RUN_AT
    )
    results = [flow.work("run-1", n, group) for n, group in enumerate(flow.plan("run-1", "schedule").groups)]
    # When the first slice fails deleting its partial items once its merge is saved, and is retried
    slices = flow.close("run-1")
    with pytest.raises(RuntimeError):
        flow.merge_slice("run-1", slices[0])
    for spread in slices:
        flow.merge_slice("run-1", spread)
    run = flow.finish("run-1", [r.as_dict() for r in results])
    # Then no partial item is left (the finisher deleted none: the retried slice did) ...
    left = boto3.client("dynamodb").scan(
        TableName=WORKFLOW.table_name,
        FilterExpression="begins_with(pk, :p)",
        ExpressionAttributeValues={":p": {"S": "partial#"}},
    )["Items"]
    # ... and the statistics are one worker's
    counts = DeliveryStatsModel.get("d1", STATS_SK)
    expected = alone.stats("d1")
    got = {name: int(getattr(counts, name)) for name in expected}
    lost = sum(max(0, expected[name] - got[name]) for name in expected)
    doubled = sum(max(0, got[name] - expected[name]) for name in expected)
    reliability.record(
        "Faults",
        "a slice of the merge fails deleting its partial items after saving its merge, retried (moto)",
        1,
        "the retry deleted them before marking the slice put; the finisher deletes no partial partition",
        lost,
        doubled,
    )
    assert run.status == "succeeded" and left == []
    assert got == expected and expected["total_opens"] > 0
