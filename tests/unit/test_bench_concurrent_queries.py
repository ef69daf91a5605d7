"""Figure 5's logs pages send a round's Queries at once from several threads (functions/api/log_pages.py):
bench/moto_speedups.py's partition shim must answer each Query from its own partition, and the request
ledger (bench/ledger.py, and figure 5's item-keeping ledger) must count each answer as its own.

Each test holds every Query inside moto until all of them are there (a barrier), so the requests overlap
on every run, not by chance."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.dynamodb.models.table import Table

from bench.fig5_report_cost import _ItemLedger
from bench.ledger import RequestLedger
from bench.moto_speedups import faster_moto

TABLE = "bench-concurrent-queries"
PARTITIONS = 16
LOGS_PER_PARTITION = 40


def _size(partition: int) -> int:
    """A different known size per partition, so a Query answered from the wrong one shows."""
    return 3 + partition


def _query(client: Any, partition: int, **extra: Any) -> dict[str, Any]:
    answer: dict[str, Any] = client.query(
        TableName=TABLE,
        KeyConditionExpression="p = :p",
        ExpressionAttributeValues={":p": {"S": f"p{partition}"}},
        Limit=_size(partition),
        **extra,
    )
    return answer


def _client() -> Any:
    return boto3.client("dynamodb", region_name="us-east-1")


def _create_table() -> Any:
    client = _client()
    client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "p", "KeyType": "HASH"}, {"AttributeName": "s", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "p", "AttributeType": "S"},
            {"AttributeName": "s", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for partition in range(PARTITIONS):
        for number in range(LOGS_PER_PARTITION):
            client.put_item(
                TableName=TABLE,
                Item={"p": {"S": f"p{partition}"}, "s": {"S": f"{number:04d}"}, "type": {"S": "open"}},
            )
    return client


def _held_in_moto(monkeypatch: pytest.MonkeyPatch, parties: int) -> None:
    """moto's Query waits until ``parties`` Queries are inside it (installed before the shim, so the
    shim's narrowing is in place in every one of them while they wait)."""
    gate = threading.Barrier(parties, timeout=20)
    real = Table.query

    @functools.wraps(real)  # the shim reads moto's arguments through its signature
    def held(self: Table, *args: Any, **kwargs: Any) -> Any:
        gate.wait()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Table, "query", held)


def _at_once(parties: int, call: Callable[[int], Any]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=parties) as pool:
        return list(pool.map(call, range(parties)))


@pytest.fixture
def moto() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.mark.usefixtures("moto")
def test_queries_on_different_partitions_inside_moto_at_once_each_read_their_own_partition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given 16 partitions of 40 items, and moto's Query (behind the shims) holding each call until all
    # 16 are inside it
    client = _create_table()
    _held_in_moto(monkeypatch, PARTITIONS)
    with faster_moto():
        # When each partition is queried from its own thread at once, with its own Limit
        answers = _at_once(PARTITIONS, lambda partition: _query(client, partition))
    # Then each answer holds the first items of its own partition, as many as its Limit
    for partition, answer in enumerate(answers):
        assert [item["p"]["S"] for item in answer["Items"]] == [f"p{partition}"] * _size(partition)
        assert [item["s"]["S"] for item in answer["Items"]] == [f"{n:04d}" for n in range(_size(partition))]
    # ...and the table still holds every item afterwards
    monkeypatch.undo()
    for partition in range(PARTITIONS):
        whole = client.query(
            TableName=TABLE,
            KeyConditionExpression="p = :p",
            ExpressionAttributeValues={":p": {"S": f"p{partition}"}},
        )
        assert whole["Count"] == LOGS_PER_PARTITION


@pytest.mark.usefixtures("moto")
def test_the_ledger_counts_exactly_the_items_each_of_concurrent_queries_returned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the request ledger recording, and 16 Queries of known sizes held in moto until all are there
    _create_table()
    ledger = RequestLedger()
    _held_in_moto(monkeypatch, PARTITIONS)
    with faster_moto(), ledger.recording():
        client = _client()  # made while recording: it carries the ledger's hooks
        mark = ledger.mark()
        # When they are sent from 16 threads at once
        answers = _at_once(PARTITIONS, lambda partition: _query(client, partition))
    # Then the ledger holds one Query per call, each counting the items its answer returned
    queries = ledger.since(mark)
    assert [request.operation for request in queries] == ["Query"] * PARTITIONS
    assert sorted(request.items_read for request in queries) == sorted(
        len(answer["Items"]) for answer in answers
    )
    assert sorted(request.items_read for request in queries) == sorted(map(_size, range(PARTITIONS)))


@pytest.mark.usefixtures("moto")
def test_figure_5s_ledger_keeps_each_concurrent_querys_items_under_that_querys_own_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given figure 5's ledger, and two projected Queries (their whole items are read again by the
    # ledger) whose ledger hooks run side by side: each waits for the other before and after it is kept
    ledger = _ItemLedger()
    gate = threading.Barrier(2, timeout=20)
    evaluated = _ItemLedger._evaluated

    def side_by_side(self: _ItemLedger, operation: str, parameters: dict[str, Any]) -> list[Any]:
        gate.wait()
        return evaluated(self, operation, parameters)

    monkeypatch.setattr(_ItemLedger, "_evaluated", side_by_side)
    _create_table()
    with faster_moto(), ledger.recording():
        client = _client()
        mark = ledger.mark()
        # When the two Queries are sent at once from two threads
        _at_once(2, lambda partition: _query(client, partition, ProjectionExpression="s"))
    # Then each request has its own items: as many as it counted, from its own partition
    indexes = range(mark, ledger.mark())
    assert sorted(ledger.items_read) == [index for index in indexes if ledger.requests[index].is_read]
    for index in indexes:
        request = ledger.requests[index]
        if request.operation != "Query":
            continue
        items = ledger.items_read[index].items
        assert len(items) == request.items_read
        assert len({item["p"]["S"] for item in items}) == 1
