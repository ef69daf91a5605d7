"""The AWS side of events out: the EventBridge bus, the held-events queue, the SQS delivery queue and its
dead letters, the honeypot hits of a message (one Query of its raw-events shard), and the tracked URLs a
LOG names (read from DynamoDB, cached per container)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from functions.events.log import LinkInfo
from functions.events.messages import Delivery
from functions.events.publish import Held
from functions.shared.raw_events import shard_of
from functions.shared.tables import RAW_EVENTS
from functions.shared.timeutil import iso, parse

BUS_ENV = "MSGTRACK_EVENT_BUS"
DELIVERY_QUEUE_ENV = "MSGTRACK_WEBHOOK_QUEUE_URL"
DEAD_LETTER_QUEUE_ENV = "MSGTRACK_WEBHOOK_DEAD_LETTER_QUEUE_URL"
HELD_QUEUE_ENV = "MSGTRACK_HELD_EVENTS_QUEUE_URL"
SOURCE = "msgtrack"
_PUT_TRIES = 3


class BusRefused(RuntimeError):
    """EventBridge kept refusing some entries: the stream retries the batch."""


class EventBridgeBus:
    def __init__(self, bus_name: str | None = None, client: Any = None) -> None:
        import boto3

        self._bus = bus_name or os.environ[BUS_ENV]
        self._client = client or boto3.client("events")

    def put(self, logs: Sequence[Mapping[str, Any]]) -> None:
        entries = [
            {
                "Source": SOURCE,
                "DetailType": str(log["type"]),
                "Detail": json.dumps(log, separators=(",", ":")),
                "Time": parse(str(log["at"])),
                "EventBusName": self._bus,
            }
            for log in logs
        ]
        for start in range(0, len(entries), 10):  # PutEvents takes 10 entries
            self._put(entries[start : start + 10])

    def _put(self, entries: list[dict[str, Any]]) -> None:
        for attempt in range(_PUT_TRIES):
            answer = self._client.put_events(Entries=entries)
            if not answer.get("FailedEntryCount"):
                return
            entries = [
                entry
                for entry, result in zip(entries, answer["Entries"], strict=True)
                if result.get("ErrorCode")
            ]
            time.sleep(0.1 * 2**attempt)
        raise BusRefused(f"EventBridge refused {len(entries)} events")


class SqsDeliveryQueue:
    def __init__(
        self, queue_url: str | None = None, dead_letter_url: str | None = None, client: Any = None
    ) -> None:
        import boto3

        self._url = queue_url or os.environ[DELIVERY_QUEUE_ENV]
        self._dead_letters = dead_letter_url  # only the deliverer dead-letters: read when it does
        self._client = client or boto3.client("sqs")

    def send(self, deliveries: Sequence[tuple[Delivery, int]]) -> None:
        for start in range(0, len(deliveries), 10):  # SendMessageBatch takes 10 messages
            chunk = deliveries[start : start + 10]
            answer = self._client.send_message_batch(
                QueueUrl=self._url,
                Entries=[
                    {"Id": str(n), "MessageBody": delivery.to_json(), "DelaySeconds": delay}
                    for n, (delivery, delay) in enumerate(chunk)
                ],
            )
            if answer.get("Failed"):
                raise RuntimeError(f"SQS refused {len(answer['Failed'])} webhook deliveries")

    def dead_letter(self, delivery: Delivery) -> None:
        url = self._dead_letters or os.environ[DEAD_LETTER_QUEUE_ENV]
        self._client.send_message(QueueUrl=url, MessageBody=delivery.to_json())


class SqsHoldQueue:
    def __init__(self, queue_url: str | None = None, client: Any = None) -> None:
        import boto3

        self._url = queue_url or os.environ[HELD_QUEUE_ENV]
        self._client = client or boto3.client("sqs")

    def hold(self, held: Sequence[Held], delay_seconds: int) -> None:
        for start in range(0, len(held), 10):  # SendMessageBatch takes 10 messages
            answer = self._client.send_message_batch(
                QueueUrl=self._url,
                Entries=[
                    {"Id": str(n), "MessageBody": message.to_json(), "DelaySeconds": delay_seconds}
                    for n, message in enumerate(held[start : start + 10])
                ],
            )
            if answer.get("Failed"):
                raise RuntimeError(f"SQS refused {len(answer['Failed'])} held events")


class DynamoHoneypotHits:
    """A message's honeypot hits in a time range: one Query of the raw-events shard of its recipient
    (every hit of one message is in it), filtered to the message's honeypot hits."""

    def __init__(self, client: Any = None) -> None:
        import boto3

        self._client = client or boto3.client("dynamodb")

    def honeypot_hits(
        self, delivery_id: str, recipient_id: str, start: datetime, end: datetime
    ) -> list[Mapping[str, Any]]:
        from boto3.dynamodb.types import TypeDeserializer

        deserializer = TypeDeserializer()
        query: dict[str, Any] = {
            "TableName": RAW_EVENTS.table_name,
            "KeyConditionExpression": "#shard = :shard AND #sk BETWEEN :start AND :end",
            "FilterExpression": "#d = :d AND #r = :r AND #h = :yes",
            "ExpressionAttributeNames": {
                "#shard": "shard",
                "#sk": "sk",
                "#d": "delivery_id",
                "#r": "recipient_id",
                "#h": "honeypot",
            },
            "ExpressionAttributeValues": {
                ":shard": {"S": shard_of(delivery_id, recipient_id)},
                ":start": {"S": iso(start)},
                ":end": {"S": iso(end) + "#\uffff"},  # sort keys are "<at>#<event id>"
                ":d": {"S": delivery_id},
                ":r": {"S": recipient_id},
                ":yes": {"BOOL": True},
            },
        }
        found: list[Mapping[str, Any]] = []
        while True:
            answer = self._client.query(**query)
            found.extend(
                {name: deserializer.deserialize(value) for name, value in item.items()}
                for item in answer.get("Items", ())
            )
            if not answer.get("LastEvaluatedKey"):
                return found
            query["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


class DynamoLinks:
    """Tracked URLs by (delivery, URL id), cached for five minutes: a campaign's hits share a few."""

    def __init__(self, ttl_seconds: float = 300.0, max_entries: int = 10_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._cache: dict[tuple[str, str], tuple[float, LinkInfo | None]] = {}

    def link(self, delivery_id: str, url_id: str) -> LinkInfo | None:
        key = (delivery_id, url_id)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = self._read(delivery_id, url_id)
        if len(self._cache) >= self._max:
            self._cache.clear()
        self._cache[key] = (now + self._ttl, found)
        return found

    @staticmethod
    def _read(delivery_id: str, url_id: str) -> LinkInfo | None:
        from functions.shared.models import TrackedUrlModel

        try:
            item = TrackedUrlModel.get(delivery_id, url_id)
        except TrackedUrlModel.DoesNotExist:
            return None
        return LinkInfo(url=item.url, label=item.label, category=item.category)
