"""Events out in the template: the raw-events stream into the events-out function, the held-events queue
into the held-events publisher, the msgtrack bus, the webhook delivery queue into the deliverer, the dead
letters, least privilege and the alarms."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Match

from functions.events.publish import BATCHING_WINDOW_SECONDS
from functions.shared.models import SETTINGS_PK, WEBHOOKS_PK
from functions.shared.tables import DELIVERIES, RAW_EVENTS, TRACKED_URLS
from infra.constants import STREAM_BATCH_SIZE, STREAM_RETRY_ATTEMPTS, WEBHOOK_MAX_RECEIVES
from tests.infrastructure.synth import Synthesized, actions_on, environment, permissions
from tests.infrastructure.test_permissions import _workflow_statements


def _mapping(synthesized: Synthesized, function: Any) -> dict[str, Any]:
    function_id = synthesized.logical_id(function)
    [found] = [
        m["Properties"]
        for m in synthesized.of_type("AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": function_id}
    ]
    return dict(found)


def test_the_raw_events_table_streams_new_images(synthesized: Synthesized) -> None:
    table = synthesized.resources[synthesized.logical_id(synthesized.stack.storage.table(RAW_EVENTS))]
    assert table["Properties"]["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}


def test_the_stream_triggers_the_events_out_function_with_bisection_and_a_failure_queue(
    synthesized: Synthesized,
) -> None:
    events_out = synthesized.stack.events_out
    mapping = _mapping(synthesized, events_out.publisher.function)
    raw_events = synthesized.logical_id(synthesized.stack.storage.table(RAW_EVENTS))
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [raw_events, "StreamArn"]}
    assert mapping["StartingPosition"] == "LATEST"
    assert mapping["BatchSize"] == STREAM_BATCH_SIZE
    # the batching window lets the honeypot rule see a scanner's burst whole
    assert mapping["MaximumBatchingWindowInSeconds"] == BATCHING_WINDOW_SECONDS
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["MaximumRetryAttempts"] == STREAM_RETRY_ATTEMPTS
    failure = mapping["DestinationConfig"]["OnFailure"]["Destination"]
    assert failure == {"Fn::GetAtt": [synthesized.logical_id(events_out.stream_failures), "Arn"]}


def test_a_custom_msgtrack_bus_receives_the_events(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties("AWS::Events::EventBus", {"Name": "msgtrack"})
    events_out = synthesized.stack.events_out
    allowed = permissions(synthesized, events_out.held_publisher.role)
    assert actions_on(allowed, synthesized.logical_id(events_out.bus)) == {"events:PutEvents"}
    assert environment(synthesized, events_out.held_publisher.function)["MSGTRACK_EVENT_BUS"] == {
        "Ref": synthesized.logical_id(events_out.bus)
    }


def test_the_held_events_queue_feeds_the_held_publisher_and_dead_letters_after_repeated_failures(
    synthesized: Synthesized,
) -> None:
    # Given the held-events queue the stream function holds each hit on for its burst window
    events_out = synthesized.stack.events_out
    queue = synthesized.resources[synthesized.logical_id(events_out.held)]["Properties"]
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [synthesized.logical_id(events_out.held_dead_letters), "Arn"]},
        "maxReceiveCount": WEBHOOK_MAX_RECEIVES,
    }
    assert queue["SqsManagedSseEnabled"] is True
    assert environment(synthesized, events_out.publisher.function)["MSGTRACK_HELD_EVENTS_QUEUE_URL"] == {
        "Ref": synthesized.logical_id(events_out.held)
    }
    # Then it triggers the held publisher, which reports the messages it failed one by one
    mapping = _mapping(synthesized, events_out.held_publisher.function)
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [synthesized.logical_id(events_out.held), "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    function = synthesized.resources[synthesized.logical_id(events_out.held_publisher.function)]["Properties"]
    assert queue["VisibilityTimeout"] >= 6 * function["Timeout"]


def test_the_delivery_queue_feeds_the_deliverer_and_dead_letters_after_repeated_failures(
    synthesized: Synthesized,
) -> None:
    events_out = synthesized.stack.events_out
    queue = synthesized.resources[synthesized.logical_id(events_out.deliveries)]["Properties"]
    dead_letters = synthesized.logical_id(events_out.dead_letters)
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dead_letters, "Arn"]},
        "maxReceiveCount": WEBHOOK_MAX_RECEIVES,
    }
    assert queue["SqsManagedSseEnabled"] is True
    mapping = _mapping(synthesized, events_out.deliverer.function)
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [synthesized.logical_id(events_out.deliveries), "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # The visibility timeout outlasts the deliverer's: a message is not handed out twice at once
    deliverer = synthesized.resources[synthesized.logical_id(events_out.deliverer.function)]["Properties"]
    assert queue["VisibilityTimeout"] >= 6 * deliverer["Timeout"]


def test_each_function_may_do_only_what_its_code_does(synthesized: Synthesized) -> None:
    stack = synthesized.stack
    events_out = stack.events_out
    tracked_urls = synthesized.logical_id(stack.storage.table(TRACKED_URLS))
    deliveries = synthesized.logical_id(events_out.deliveries)
    dead_letters = synthesized.logical_id(events_out.dead_letters)
    key = synthesized.logical_id(events_out.webhook_key)
    raw_events_id = synthesized.logical_id(stack.storage.table(RAW_EVENTS))
    held = synthesized.logical_id(events_out.held)
    # The stream function: reads the stream and the machine-detection settings, holds hits; nothing else
    publisher = permissions(synthesized, events_out.publisher.role)
    assert actions_on(publisher, held) == {"sqs:SendMessage"}
    assert _workflow_statements(synthesized, events_out.publisher.role, DELIVERIES) == [
        ({"dynamodb:GetItem"}, {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [SETTINGS_PK]}})
    ]
    assert not actions_on(publisher, tracked_urls) and not actions_on(publisher, deliveries)
    assert not _workflow_statements(synthesized, events_out.publisher.role)
    assert not {action for action, _ in publisher if action.startswith("events:")}
    assert not actions_on(publisher, key) and not actions_on(publisher, dead_letters)
    assert "dynamodb:Query" not in actions_on(publisher, raw_events_id)
    # The held publisher: queries the raw-events table (a message's honeypot hits), reads tracked URLs,
    # lists webhooks, puts on the bus, sends deliveries; no secret
    held_publisher = permissions(synthesized, events_out.held_publisher.role)
    assert actions_on(held_publisher, raw_events_id) == {"dynamodb:Query"}
    assert actions_on(held_publisher, tracked_urls) == {"dynamodb:GetItem"}
    assert _workflow_statements(synthesized, events_out.held_publisher.role) == [
        ({"dynamodb:Query"}, {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [WEBHOOKS_PK]}})
    ]
    assert actions_on(held_publisher, deliveries) == {"sqs:SendMessage"}
    assert not actions_on(held_publisher, key) and not actions_on(held_publisher, dead_letters)
    # The deliverer: reads and updates webhooks, reads the key, re-queues and dead-letters
    deliverer = permissions(synthesized, events_out.deliverer.role)
    assert _workflow_statements(synthesized, events_out.deliverer.role) == [
        (
            {"dynamodb:GetItem", "dynamodb:UpdateItem"},
            {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [WEBHOOKS_PK]}},
        )
    ]
    assert actions_on(deliverer, key) == {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}
    assert "sqs:SendMessage" in actions_on(deliverer, deliveries)
    assert actions_on(deliverer, dead_letters) == {"sqs:SendMessage"}
    assert not {action for action, _ in deliverer if action.startswith("events:")}
    # Neither scans, deletes or uses wildcards
    assert "dynamodb:Query" not in actions_on(deliverer, raw_events_id)
    for allowed in (publisher, held_publisher, deliverer):
        assert not {action for action, _ in allowed} & {"dynamodb:Scan", "dynamodb:DeleteItem", "*"}
        wildcards = {action for action, target in allowed if "*" in target}
        assert wildcards <= {"dynamodb:ListStreams"}  # which has no resource-level permission
    # And the stream is read on its own ARN
    stream = {action for action, target in publisher if target == raw_events_id}
    assert {"dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:DescribeStream"} <= stream


def test_the_api_function_manages_webhooks_in_their_partition_and_reads_the_webhook_key(
    synthesized: Synthesized,
) -> None:
    stack = synthesized.stack
    statements = _workflow_statements(synthesized, stack.reports.handler.role)
    webhooks = [
        (actions, c)
        for actions, c in statements
        if c["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"] == [WEBHOOKS_PK]
    ]
    assert webhooks == [
        (
            {"dynamodb:Query", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:BatchWriteItem"},
            {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [WEBHOOKS_PK]}},
        )
    ]
    allowed = permissions(synthesized, stack.reports.handler.role)
    assert actions_on(allowed, synthesized.logical_id(stack.events_out.webhook_key)) == {
        "secretsmanager:GetSecretValue",
        "secretsmanager:DescribeSecret",
    }
    assert "MSGTRACK_WEBHOOK_KEY_SECRET_ARN" in environment(synthesized, stack.reports.function)


def test_nothing_allows_http_webhooks_in_aws(synthesized: Synthesized) -> None:
    for function in (synthesized.stack.events_out.deliverer.function, synthesized.stack.reports.function):
        assert "MSGTRACK_ALLOW_HTTP_WEBHOOKS" not in environment(synthesized, function)


def test_dead_letters_and_a_lagging_stream_raise_alarms_to_the_operators(synthesized: Synthesized) -> None:
    stack = synthesized.stack
    topic = {"Ref": synthesized.logical_id(stack.monitoring.topic)}
    for name in (
        "WebhookDeliveriesDeadLettered",
        "WebhookDeadLetterQueueNotEmpty",
        "EventsOutBatchGivenUp",
        "EventsOutHeldGivenUp",
        "EventsOutFallingBehind",
    ):
        synthesized.template.has_resource_properties(
            "AWS::CloudWatch::Alarm",
            {"AlarmName": Match.string_like_regexp(f"-{name}$"), "AlarmActions": [topic]},
        )
    synthesized.template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {"MetricName": "WebhookDeadLetters", "Namespace": "msgtrack", "Threshold": 1},
    )
