"""Events out against moto: a hit recorded by the redirect's sink appears on the raw-events stream; the
events-out handler holds it on the held-events queue for the burst window of the stored settings; the
held-events handler then puts it on the ``msgtrack`` bus (seen through a rule to an SQS queue) and
queues one delivery per subscribed webhook; the deliverer handler POSTs it to a real loopback receiver."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook

from functions.events import clients, handler
from functions.events.handler import deliver_handler, publish_handler, publish_held_handler
from functions.events.publish import HOLD_MARGIN_SECONDS, Held
from functions.redirect.store import DynamoEventSink
from functions.shared import tables, timeutil, webhooks
from functions.shared.machine import BURST_REASON
from functions.shared.models import MachineDetectionSettingsModel, TrackedUrlModel
from functions.shared.raw_events import RawEvent
from local.aws import create_events_out, create_held_events_queue
from local.events import lambda_stream_record
from tests.apigw import FakeContext
from tests.webhook_receiver import receiver

BURST_SECONDS = 1  # the stored settings' window: events out holds each hit 1 s + the margin
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


@pytest.fixture
def events_out(aws_tables: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    bus, queue, dead_letters = create_events_out()
    monkeypatch.setenv(clients.BUS_ENV, bus)
    monkeypatch.setenv(clients.DELIVERY_QUEUE_ENV, queue)
    monkeypatch.setenv(clients.DEAD_LETTER_QUEUE_ENV, dead_letters)
    held = create_held_events_queue()
    monkeypatch.setenv(clients.HELD_QUEUE_ENV, held)
    MachineDetectionSettingsModel(
        document=json.dumps(
            {"ranges": [], "user_agents": [], "honeypot": True, "burst_seconds": BURST_SECONDS}
        )
    ).save()
    monkeypatch.setattr(handler, "_detection", None)  # a new container: reads the settings above
    monkeypatch.setenv(webhooks.WEBHOOK_KEY_ENV, "integration-webhook-key-0123456789")
    monkeypatch.setenv(webhooks.ALLOW_HTTP_ENV, "true")
    webhooks.webhook_key.cache_clear()
    # What is put on the bus, seen through a rule sending every msgtrack event to a queue
    sqs, events = boto3.client("sqs"), boto3.client("events")
    seen = sqs.create_queue(QueueName="bus-seen")["QueueUrl"]
    seen_arn = sqs.get_queue_attributes(QueueUrl=seen, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="all", EventBusName=bus, EventPattern=json.dumps({"source": ["msgtrack"]}))
    events.put_targets(Rule="all", EventBusName=bus, Targets=[{"Id": "seen", "Arn": seen_arn}])
    yield {"queue": queue, "dead_letters": dead_letters, "seen": seen, "held": held}
    webhooks.webhook_key.cache_clear()


def stream_records() -> list[dict[str, Any]]:
    dynamodb, streams = boto3.client("dynamodb"), boto3.client("dynamodbstreams")
    arn = dynamodb.describe_table(TableName=tables.RAW_EVENTS.table_name)["Table"]["LatestStreamArn"]
    records = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records += [
            lambda_stream_record(r, arn) for r in streams.get_records(ShardIterator=iterator)["Records"]
        ]
    return records


def receive(queue_url: str) -> list[dict[str, Any]]:
    return boto3.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])


def sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": [{"messageId": m["MessageId"], "body": m["Body"]} for m in messages]}


def publish_held(
    events_out: dict[str, str], records: list[dict[str, Any]], held: int, messages_held: int = 1
) -> dict[str, Any]:
    """The stream batch to the events-out handler; the ``messages_held`` held messages, once their delay
    has passed (not before), to the held-events handler."""
    assert publish_handler({"Records": records}, FakeContext()) == {"held": held}
    assert receive(events_out["held"]) == []  # held for the burst window
    deadline = time.monotonic() + BURST_SECONDS + HOLD_MARGIN_SECONDS + 10
    messages: list[dict[str, Any]] = []
    while len(messages) < messages_held and time.monotonic() < deadline:
        time.sleep(0.5)
        messages += receive(events_out["held"])
    assert len(messages) == messages_held, "the held events never became visible"
    return dict(publish_held_handler(sqs_event(messages), FakeContext()))


def test_a_recorded_click_goes_on_the_bus_and_to_its_webhook_signed(events_out: dict[str, str]) -> None:
    # Given a tracked URL and a webhook for clicks on a loopback receiver
    TrackedUrlModel(
        delivery_id="d1", url_id="u1", url="https://shop.example.com/", label="Shop", category="click"
    ).save()
    with receiver() as hook:
        repo = webhooks.DynamoWebhookRepository()
        hooked = webhooks.Webhook(
            "whintegration1", hook.url, ("click",), "salt", timeutil.iso(timeutil.now())
        )
        repo.add(hooked)
        # When the redirect's sink records a click, and the stream's batch goes to the events-out handler
        at = datetime.now(UTC)
        DynamoEventSink(30).record(
            RawEvent("evt1", "click", "d1", "r1", "u1", at, CHROME, "p1", "203.0.113.0", False)
        )
        records = stream_records()
        assert [r["eventName"] for r in records] == ["INSERT"]
        json.dumps({"Records": records})  # what Lambda hands over is JSON
        assert publish_held(events_out, records, 1) == {"batchItemFailures": []}
        # Then the bus has it, detail-type click, the LOG as detail
        [seen] = receive(events_out["seen"])
        on_bus = json.loads(seen["Body"])
        assert (on_bus["source"], on_bus["detail-type"]) == ("msgtrack", "click")
        assert (
            on_bus["detail"]["event_id"] == "evt1" and on_bus["detail"]["url"] == "https://shop.example.com/"
        )
        # And the deliverer POSTs the queued delivery, which the receiver verifies
        messages = receive(events_out["queue"])
        assert len(messages) == 1
        assert deliver_handler(sqs_event(messages), FakeContext()) == {"batchItemFailures": []}
        [request] = hook.requests
        secret = webhooks.secret_of(hooked.id, hooked.salt, webhooks.webhook_key())
        assert StandardWebhook(secret).verify(request.body, request.headers) == on_bus["detail"]


def test_a_failed_delivery_is_queued_again_and_recorded_on_the_webhook(events_out: dict[str, str]) -> None:
    with receiver(status=503) as hook:
        repo = webhooks.DynamoWebhookRepository()
        repo.add(
            webhooks.Webhook("whintegration2", hook.url, ("open",), "salt", timeutil.iso(timeutil.now()))
        )
        DynamoEventSink(30).record(
            RawEvent("evt2", "open", "d1", "r1", None, datetime.now(UTC), CHROME, None, None, False)
        )
        publish_held(events_out, stream_records(), 1)
        messages = receive(events_out["queue"])
        assert deliver_handler(sqs_event(messages), FakeContext()) == {"batchItemFailures": []}
        stored = repo.get("whintegration2")
        assert stored is not None
        assert stored.last_error == "answered 503" and stored.failing_since is not None
        # The retry is on the queue, delayed by the backoff; a deleted webhook is not brought back
        repo.delete("whintegration2")
        repo.record_failure("whintegration2", "late", "2026-12-06T00:00:00.000Z")
        assert repo.get("whintegration2") is None


def test_an_unreadable_delivery_message_is_dropped_not_retried(events_out: dict[str, str]) -> None:
    answer = deliver_handler({"Records": [{"messageId": "m1", "body": "not json"}]}, FakeContext())
    assert answer == {"batchItemFailures": []}


def test_a_honeypot_hit_recorded_after_a_click_makes_the_published_click_a_scanners(
    events_out: dict[str, str],
) -> None:
    # Given a click from client A, published by the stream in one batch
    at = datetime.now(UTC)
    sink = DynamoEventSink(30)
    sink.record(RawEvent("evt3", "click", "d1", "r1", "u1", at, CHROME, None, None, False, client_key="A"))
    first = stream_records()
    assert publish_handler({"Records": first}, FakeContext()) == {"held": 1}
    # When the same client's honeypot hit on the message is recorded a second later (the next batch)
    sink.record(
        RawEvent(
            "evt4",
            "click",
            "d1",
            "r1",
            None,
            at + timedelta(seconds=1),
            CHROME,
            None,
            None,
            False,
            machine="scanner",
            machine_reason="honeypot link",
            client_key="A",
            honeypot=True,
            burst_seconds=BURST_SECONDS,
        )
    )
    later = [r for r in stream_records() if r not in first]
    assert publish_held(events_out, later, 1, messages_held=2) == {"batchItemFailures": []}
    # Then the click, published after its hold, is the scanner's with the workflow's reason (the
    # held-events handler read the honeypot hit from the click's raw-events shard)
    deadline = time.monotonic() + 10
    on_bus: dict[str, Any] = {}
    while len(on_bus) < 2 and time.monotonic() < deadline:
        for message in receive(events_out["seen"]):
            detail = json.loads(message["Body"])["detail"]
            on_bus[detail["event_id"]] = (detail["machine"], detail["machine_reason"])
    assert on_bus == {"evt3": ("scanner", BURST_REASON), "evt4": ("scanner", "honeypot link")}


def test_an_unreadable_held_message_is_dropped_and_a_failing_one_retried_alone(
    events_out: dict[str, str], monkeypatch: pytest.MonkeyPatch, reliability: Any
) -> None:
    # Given a held-events batch: one unreadable message, one the bus refuses, one it takes
    good = Held(
        BURST_SECONDS,
        [
            {
                "event_id": "e1",
                "kind": "open",
                "delivery_id": "d1",
                "recipient_id": "r1",
                "at": timeutil.iso(datetime.now(UTC)),
                "proof": False,
            }
        ],
    )
    refused = Held(BURST_SECONDS, [{**good.events[0], "event_id": "e2", "recipient_id": "r2"}])
    put = clients.EventBridgeBus.put

    def refuse_e2(self: Any, logs: Any) -> None:
        if any(log["event_id"] == "e2" for log in logs):
            raise clients.BusRefused("refused")
        put(self, logs)

    monkeypatch.setattr(clients.EventBridgeBus, "put", refuse_e2)
    event = {
        "Records": [
            {"messageId": "m1", "body": "not json"},
            {"messageId": "m2", "body": refused.to_json()},
            {"messageId": "m3", "body": good.to_json()},
        ]
    }
    # Then only the refused message comes back; the readable good one is published
    assert publish_held_handler(event, FakeContext()) == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    [seen] = receive(events_out["seen"])
    assert json.loads(seen["Body"])["detail"]["event_id"] == "e1"
    reliability.record(
        "webhooks",
        "held-events batch: unreadable and bus-refused messages",
        3,
        "unreadable dropped, refused retried alone, the rest published",
    )
