"""The redirect's raw-event sink under DynamoDB throttling: retry briefly, then the fallback queue."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from functions.redirect.store import BACKOFF_BASE_SECONDS, PUT_ATTEMPTS, DynamoEventSink
from functions.shared.raw_events import RawEvent, to_item

EVENT = RawEvent(
    "e1", "click", "d1", "r1", "1", datetime(2026, 11, 23, 8, tzinfo=UTC), "UA", "p1", None, False
)
THROTTLED = ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "PutItem")


class FlakyDynamo:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.items: list[dict[str, Any]] = []
        self.calls = 0

    def put_item(self, TableName: str, Item: dict[str, Any]) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise THROTTLED
        self.items.append(Item)


class Queue:
    def __init__(self, broken: bool = False) -> None:
        self.sent: list[dict[str, Any]] = []
        self.broken = broken

    def send(self, item: dict[str, Any]) -> None:
        if self.broken:
            raise ConnectionError("SQS unreachable")
        self.sent.append(item)


def sink(dynamo: FlakyDynamo, queue: Queue, sleeps: list[float]) -> DynamoEventSink:
    return DynamoEventSink(30, client=dynamo, fallback_queue=queue, sleep=sleeps.append)  # type: ignore[arg-type]


def test_a_throttled_write_is_retried_with_jittered_backoff_and_lands_once() -> None:
    dynamo, queue, sleeps = FlakyDynamo(failures=2), Queue(), []
    sink(dynamo, queue, sleeps).record(EVENT)
    assert dynamo.items == [to_item(EVENT, 30)] and queue.sent == []
    assert len(sleeps) == 2
    assert all(0 <= pause <= BACKOFF_BASE_SECONDS * 2**n for n, pause in enumerate(sleeps, start=1))


def test_a_write_dynamodb_keeps_refusing_goes_to_the_fallback_queue_within_a_bounded_time(
    reliability: Any,
) -> None:
    dynamo, queue, sleeps = FlakyDynamo(failures=100), Queue(), []
    sink(dynamo, queue, sleeps).record(EVENT)
    reliability.record(
        "Faults",
        "redirect PutItem refused on every attempt (unit, stubbed client)",
        1,
        f"{dynamo.calls} attempts, {sum(sleeps) * 1000:.0f} ms of backoff, then the fallback queue",
        lost=1 - len(queue.sent),
        doubled=max(0, len(queue.sent) - 1),
    )
    assert dynamo.calls == PUT_ATTEMPTS
    assert queue.sent == [to_item(EVENT, 30)]  # the very item, so draining it is idempotent
    assert sum(sleeps) <= sum(BACKOFF_BASE_SECONDS * 2**n for n in range(1, PUT_ATTEMPTS))


def test_when_the_queue_fails_too_the_loss_is_logged_not_raised(capsys: pytest.CaptureFixture[str]) -> None:
    dynamo, queue, sleeps = FlakyDynamo(failures=100), Queue(broken=True), []
    sink(dynamo, queue, sleeps).record(EVENT)  # no exception: the recipient still gets the answer
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    lost = [line for line in lines if line["message"] == "raw event lost"]
    assert [(line["level"], line["error"], line["delivery_id"]) for line in lost] == [
        ("ERROR", "ProvisionedThroughputExceededException", "d1")
    ]
