"""DynamoDB refusing raw events: the recipient is answered, the fallback queue keeps the event,
the tracking workflow drains it, and every accepted hit becomes exactly one tracking log."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from functions.consolidate import handler as consolidate_handler
from functions.redirect import handler as redirect_handler
from functions.shared import fallback
from functions.shared.models import (
    QUARANTINE_PK,
    DeliveryStatsModel,
    QuarantineModel,
    TrackedUrlModel,
)
from functions.shared.tokens import LinkClaims, signer
from local.aws import create_fallback_queue
from tests.apigw import FakeContext, http_event
from tests.stored_logs import delivery_logs


@pytest.fixture
def queue(aws_tables: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = create_fallback_queue()
    monkeypatch.setenv(fallback.QUEUE_URL_ENV, url)
    monkeypatch.setattr(redirect_handler, "_targets", None)
    monkeypatch.setattr(redirect_handler, "_sink", None)
    TrackedUrlModel(
        delivery_id="d1", url_id="1", url="https://shop.example/1", label="1", category="click"
    ).save()
    yield url


class ThrottleRawEvents:
    """Patch botocore so that PutItem on the raw-events table is throttled while `active`."""

    def __init__(self) -> None:
        self.active = True
        self.refused = 0

    def __call__(self, **kwargs: Any) -> None:
        if self.active and kwargs["params"].get("TableName", "").endswith("raw-events"):
            self.refused += 1
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "throttled"}},
                "PutItem",
            )


def hits(n: int) -> list[dict[str, Any]]:
    answers = []
    for i in range(n):
        kind = "c" if i % 2 else "o"
        claims = LinkClaims(kind, "d1", f"r{i}", "1" if kind == "c" else None)
        path = ("/r/" if kind == "c" else "/o/") + signer().sign(claims)
        answers.append(redirect_handler.lambda_handler(http_event("GET", path, token=None), FakeContext()))
    return answers


def test_throttled_hits_are_answered_queued_and_counted_exactly_once(queue: str, reliability: Any) -> None:
    # Given DynamoDB throttling every raw-event write of the redirect function
    throttle = ThrottleRawEvents()
    redirect_handler._collaborators()  # build the container's clients, then hook their puts
    assert redirect_handler._sink is not None
    redirect_handler._sink._client.meta.events.register("before-parameter-build.dynamodb.PutItem", throttle)  # type: ignore[attr-defined]
    # When 20 recipients open or click
    answers = hits(20)
    # Then each is answered as usual and each event waits in the fallback queue
    assert [a["statusCode"] for a in answers] == [200, 302] * 10
    sqs = boto3.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])
    assert throttle.refused == 20 * 3, throttle.refused
    assert int(attributes["Attributes"]["ApproximateNumberOfMessages"]) == 20
    assert throttle.refused == 20 * 3
    # And the tracking workflow drains the queue into exactly one tracking log per hit
    throttle.active = False
    first = consolidate_handler.lambda_handler({"run_id": "run-1"}, FakeContext())
    second = consolidate_handler.lambda_handler({"run_id": "run-2"}, FakeContext())
    logs = len(delivery_logs("d1"))
    reliability.record(
        "Faults",
        "DynamoDB throttling every raw-event write of the redirect (3 attempts each)",
        20,
        "every visitor got the 302 or GIF; events went to the fallback queue; the workflow drained them",
        max(0, 20 - logs),
        max(0, logs - 20),
    )
    assert (first["events_processed"], second["events_processed"]) == (20, 0)
    assert logs == 20
    stats = DeliveryStatsModel.get("d1", "stats")
    assert (stats.total_opens, stats.total_clicks, stats.opens) == (10, 10, 20)


def test_malformed_fallback_messages_are_quarantined_and_the_good_ones_counted(
    queue: str, reliability: Any
) -> None:
    # Given four hits in the fallback queue and, among them, a truncated body, JSON that names the keys
    # but holds no attribute values (boto3 refuses to send it), and an item whose time is a number
    throttle = ThrottleRawEvents()
    redirect_handler._collaborators()
    assert redirect_handler._sink is not None
    redirect_handler._sink._client.meta.events.register("before-parameter-build.dynamodb.PutItem", throttle)  # type: ignore[attr-defined]
    hits(4)
    throttle.active = False
    sqs = boto3.client("sqs")
    garbled = {
        "shard": {"S": "05"},
        "sk": {"S": "2026-01-01T00:00:00.000Z#g1"},
        "event_id": {"S": "g1"},
        "kind": {"S": "open"},
        "at": {"N": "1"},
    }
    bodies = [
        '{"shard":{"S":"05"},"sk":{"S":"2026-',
        '{"shard":"05","sk":"x","event_id":"y"}',
        fallback.encode(garbled),
    ]
    for body in bodies:
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    # When the tracking workflow runs, twice
    first = consolidate_handler.lambda_handler({"run_id": "run-1"}, FakeContext())
    second = consolidate_handler.lambda_handler({"run_id": "run-2"}, FakeContext())
    # Then the four hits count once, the three malformed messages are kept once, and the queue is empty
    assert (first["status"], second["status"]) == ("succeeded", "succeeded")
    assert (first["events_processed"], second["events_processed"]) == (4, 0)
    assert len(delivery_logs("d1")) == 4
    kept = list(QuarantineModel.query(QUARANTINE_PK))
    assert len(kept) == 3
    assert sorted(k.error.split(":")[0] for k in kept) == sorted(
        [
            "ParamValidationError",
            "AttributeDeserializationError",
            "the message body is not a raw-event item (JSON attribute values naming shard, sk and event_id)",
        ]
    )
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert attributes == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}
    reliability.record(
        "Bad input",
        "malformed fallback-queue messages on moto's SQS (a truncated body, keys without attribute values, "
        "a garbled event)",
        3,
        "each quarantined once and deleted from the queue; both runs succeeded, the four good hits counted once",
        0,
        0,
    )
