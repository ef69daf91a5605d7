"""Events out: each new raw event, as its LOG, onto the ``msgtrack`` EventBridge bus and into one
webhook delivery per subscribed webhook.

Fed by the raw-events table's DynamoDB stream (in AWS an event source mapping, locally the local
stack's stream poller), so a hit is out within seconds of being recorded, without waiting for a run of
the tracking workflow. At least once: a batch that fails is retried whole by the stream, so a
consumer may see an event twice (``event_id`` tells them apart).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from functions.events.log import LinkInfo, Links, log_of
from functions.events.messages import Delivery
from functions.shared import timeutil
from functions.shared.webhooks import WebhookRepository


class EventBus(Protocol):
    def put(self, logs: Sequence[Mapping[str, Any]]) -> None:
        """Put each LOG on the bus (``detail-type`` = its type); raises unless every one was put."""
        ...


class DeliveryQueue(Protocol):
    def send(self, deliveries: Sequence[tuple[Delivery, int]]) -> None:
        """Queue each delivery, visible after its delay in seconds (at most 900); raises on failure."""
        ...

    def dead_letter(self, delivery: Delivery) -> None:
        """Keep a delivery given up on, for an operator to inspect or replay."""
        ...


@dataclass(frozen=True)
class Published:
    events: int
    deliveries: int


def new_raw_events(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The raw-event items a DynamoDB stream batch inserted, as plain values (TTL removals, erasures
    and rewrites are not new hits)."""
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    found = []
    for record in records:
        image = record.get("dynamodb", {}).get("NewImage")
        if record.get("eventName") != "INSERT" or not image:
            continue
        found.append({name: deserializer.deserialize(value) for name, value in image.items()})
    return found


def publish(
    raw_events: Sequence[Mapping[str, Any]],
    *,
    links: Links,
    bus: EventBus,
    queue: DeliveryQueue,
    webhooks: WebhookRepository,
    now: datetime | None = None,
) -> Published:
    """Put every raw event on the bus and queue its webhook deliveries; raises if either failed."""
    if not raw_events:
        return Published(0, 0)
    logs = [log_of(raw, _link(raw, links)) for raw in raw_events]
    bus.put(logs)
    queued_at = timeutil.iso(now or timeutil.now())
    deliveries = [
        (Delivery(hook.id, log, queued_at), 0)
        for hook in webhooks.all()
        for log in logs
        if log["type"] in hook.events
    ]
    if deliveries:
        queue.send(deliveries)
    return Published(len(logs), len(deliveries))


def _link(raw: Mapping[str, Any], links: Links) -> LinkInfo | None:
    url_id = raw.get("url_id")
    if raw.get("kind") != "click" or not url_id:
        return None
    return links.link(str(raw["delivery_id"]), str(url_id))
