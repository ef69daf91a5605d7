"""The events-out functions: doors only.

``publish_handler`` takes the raw-events stream (each new hit to the bus and to its webhooks);
``deliver_handler`` takes the webhook delivery queue (one signed POST per message, retries re-queued).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from functions.events import delivery, publish
from functions.events.clients import DynamoLinks, EventBridgeBus, SqsDeliveryQueue
from functions.events.messages import Delivery
from functions.shared import egress, webhooks
from functions.shared.observability import MetricNames, logger, metrics

_links = DynamoLinks()  # one cache per container


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def publish_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    published = publish.publish(
        publish.new_raw_events(event.get("Records") or ()),
        links=_links,
        bus=EventBridgeBus(),
        queue=SqsDeliveryQueue(),
        webhooks=webhooks.repository(),
    )
    metrics.add_metric(name=MetricNames.EVENTS_PUBLISHED, unit=MetricUnit.Count, value=published.events)
    metrics.add_metric(
        name=MetricNames.WEBHOOK_DELIVERIES_QUEUED, unit=MetricUnit.Count, value=published.deliveries
    )
    return {"events": published.events, "deliveries": published.deliveries}


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def deliver_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    records = event.get("Records") or ()
    deliverer = delivery.Deliverer(
        webhooks=webhooks.repository(),
        queue=SqsDeliveryQueue(),
        key=webhooks.webhook_key(),
        policy=egress.EgressPolicy(allow_http=webhooks.allow_http()),
    )
    readable, deliveries = [], []
    for record in records:
        try:
            deliveries.append(Delivery.from_json(record["body"]))
            readable.append(record)
        except (ValueError, KeyError, TypeError):  # not ours: retrying it would never help
            logger.error("unreadable webhook delivery dropped", extra={"message_id": record.get("messageId")})
    outcomes = delivery.deliver_all(deliveries, deliverer)
    counted = {
        "delivered": MetricNames.WEBHOOK_DELIVERIES,
        "retrying": MetricNames.WEBHOOK_DELIVERY_FAILURES,
        "dead_lettered": MetricNames.WEBHOOK_DEAD_LETTERS,
    }
    for status, name in counted.items():
        value = sum(1 for outcome in outcomes if outcome.status == status)
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    failures = []
    for record, outcome in zip(readable, outcomes, strict=True):
        if outcome.status == "unprocessed":
            logger.warning("webhook delivery left on the queue", extra={"error": outcome.error})
            failures.append({"itemIdentifier": record["messageId"]})
        elif outcome.status == "dead_lettered":
            logger.error("webhook delivery dead-lettered", extra={"error": outcome.error})
    return {"batchItemFailures": failures}
