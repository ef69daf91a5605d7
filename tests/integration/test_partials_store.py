"""The DynamoDB store writes a worker's partial items a few BatchWriteItem requests at once, retrying
what DynamoDB leaves unprocessed (moto)."""

from __future__ import annotations

import threading
from typing import Any

import boto3
import pytest

from functions.consolidate import store as store_module
from functions.consolidate.store import PARTIAL_SPREAD, WRITERS, DynamoWorkflowStore
from functions.shared.models import STATS_SK, DeliveryStatsModel


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
    monkeypatch.setattr(store_module.time, "sleep", slept.append)
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
