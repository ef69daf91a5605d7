"""The events-out functions: doors only.

``publish_handler`` takes the raw-events stream (each new hit held on the held-events queue for its
burst window); ``publish_held_handler`` takes the held-events queue (each held hit, judged against its
message's honeypot hits, to the bus and to its webhooks);
``deliver_handler`` takes the webhook delivery queue (one signed POST per message, retries re-queued).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from functions.events import delivery, publish
from functions.events.clients import (
    DynamoHoneypotHits,
    DynamoLinks,
    EventBridgeBus,
    SqsDeliveryQueue,
    SqsHoldQueue,
)
from functions.events.messages import Delivery
from functions.redirect.detection import CachedDetection
from functions.redirect.store import DynamoMachineSettings
from functions.shared import egress, webhooks
from functions.shared.observability import MetricNames, logger, metrics

_links = DynamoLinks()  # one cache per container
_detection: CachedDetection | None = None  # the burst window in force, read once a minute at most


def _burst_seconds() -> int:
    global _detection
    if _detection is None:
        _detection = CachedDetection(DynamoMachineSettings())
    return _detection.current().burst_seconds


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def publish_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    held = publish.hold(
        publish.new_raw_events(event.get("Records") or ()),
        queue=SqsHoldQueue(),
        burst_seconds=_burst_seconds(),
    )
    return {"held": held}


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def publish_held_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    bus, queue, honeypots, hooks = (
        EventBridgeBus(),
        SqsDeliveryQueue(),
        DynamoHoneypotHits(),
        webhooks.repository(),
    )
    events = deliveries = 0
    failures = []
    for record in event.get("Records") or ():
        try:
            held = publish.Held.from_json(record["body"])
        except (ValueError, KeyError, TypeError):  # not ours: retrying it would never help
            logger.error("unreadable held events dropped", extra={"message_id": record.get("messageId")})
            continue
        try:
            published = publish.publish_held(
                held, honeypots=honeypots, links=_links, bus=bus, queue=queue, webhooks=hooks
            )
        except Exception:  # this message comes back after its visibility timeout; the others are done
            logger.exception("held events left on the queue")
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        events += published.events
        deliveries += published.deliveries
    metrics.add_metric(name=MetricNames.EVENTS_PUBLISHED, unit=MetricUnit.Count, value=events)
    metrics.add_metric(name=MetricNames.WEBHOOK_DELIVERIES_QUEUED, unit=MetricUnit.Count, value=deliveries)
    return {"batchItemFailures": failures}


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
