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
from functions.shared.machine import BurstHit, honeypot_burst
from functions.shared.webhooks import WebhookRepository

# The stream's batching window (the event source mapping's, and the local stack's): a scanner follows
# every link of a message, the honeypot's included, within a second or two, so waiting this long
# before publishing lets the honeypot rule see most bursts whole (``with_honeypot_bursts``).
BATCHING_WINDOW_SECONDS = 3


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
    logs = with_honeypot_bursts(raw_events, [log_of(raw, _link(raw, links)) for raw in raw_events])
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


def with_honeypot_bursts(
    raw_events: Sequence[Mapping[str, Any]], logs: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The LOGs with the honeypot rule applied within the batch: a hit from the same client as a
    honeypot hit on the same message, within that honeypot hit's burst window, is a ``scanner`` hit
    (``functions/shared/machine.py``, as the tracking workflow applies it over all hits). A burst
    spread over two batches is published as recorded; the workflow still corrects the Tracking tabs."""
    by_message: dict[tuple[str, str], list[int]] = {}
    for position, raw in enumerate(raw_events):
        by_message.setdefault((str(raw["delivery_id"]), str(raw["recipient_id"])), []).append(position)
    for positions in by_message.values():
        windows = [
            int(raw_events[p].get("burst_seconds") or 0) for p in positions if raw_events[p].get("honeypot")
        ]
        if not windows:
            continue
        hits = [
            BurstHit(
                timeutil.parse(str(raw_events[p]["at"])).timestamp(),
                raw_events[p].get("client_key"),
                bool(raw_events[p].get("honeypot")),
            )
            for p in positions
        ]
        for position, verdict in zip(positions, honeypot_burst(hits, max(windows)), strict=True):
            if verdict is not None and not raw_events[position].get("honeypot"):
                logs[position] = {**logs[position], "machine": verdict[0], "machine_reason": verdict[1]}
    return logs
